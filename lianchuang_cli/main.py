"""The ``lianchuang`` console command: mint tokens, load demo data, wait for health,
set up the databases (``db``), audit the stores (``audit``) and
import spreadsheets (``lianchuang import preview|apply FILE --kind members …``)."""
from __future__ import annotations

import os
import sys
import time

import click

from lianchuang_cli.audit import audit
from lianchuang_cli.db import db

DEFAULT_AMQP = "pyamqp://guest:guest@127.0.0.1:5672/"


def token_secret(secret: str | None) -> str:
    """The secret to sign with: --secret / AUTH_SECRET, else AUTH_SECRET_FILE, else
    (nothing configured) the development secret, with a note on stderr: such a
    token is accepted only by services running with LIANCHUANG_DEV_MODE=1
    (``make run``)."""
    from shared.secrets import AUTH_SECRET, DEV_MODE_VAR, MissingSecret, dev_secret, load_secret

    try:
        return load_secret(AUTH_SECRET, {AUTH_SECRET: secret} if secret else None)
    except MissingSecret as exc:
        if secret or os.environ.get(f"{AUTH_SECRET}_FILE"):
            raise click.UsageError(str(exc))
    click.echo(f"note: no {AUTH_SECRET} configured; signed with the development secret, "
               f"accepted only by services running with {DEV_MODE_VAR}=1 (make run)", err=True)
    return dev_secret(AUTH_SECRET)


@click.group()
def main():
    """Lianchuang (联创) command line."""


@main.command()
@click.option("--role", required=True,
              type=click.Choice(["org_admin", "college_secretary", "branch_secretary", "member",
                                 "auditor", "ops", "department_staff"]))
@click.option("--sub", required=True,
              help="who the token speaks for; for member and secretary roles the member id "
                   "(a secretary's token is honoured only while the records show that "
                   "member as secretary of --org)")
@click.option("--org", "org", default=None, help="organisation scope (id); for department_staff the department code")
@click.option("--ttl", default=3600, show_default=True, type=int, help="seconds")
@click.option("--secret", envvar="AUTH_SECRET", default=None, show_default=False,
              help="HMAC secret (env AUTH_SECRET or AUTH_SECRET_FILE; at least 32 bytes)")
def token(role, sub, org, ttl, secret):
    """Print a signed token for ROLE, acting as SUB, scoped to ORG."""
    from shared.identity import mint_token

    secret = token_secret(secret)
    try:
        click.echo(mint_token(secret, sub=sub, role=role, org=org, ttl=ttl))
    except ValueError as exc:
        raise click.UsageError(str(exc))


@main.command()
@click.option("--amqp-uri", envvar="AMQP_URI", default=DEFAULT_AMQP)
@click.option("--secret", envvar="AUTH_SECRET", default=None,
              help="HMAC secret (env AUTH_SECRET or AUTH_SECRET_FILE)")
def demo(amqp_uri, secret):
    """Load the demo university through the organizations RPC (idempotent)."""
    secret = token_secret(secret)
    import eventlet

    eventlet.monkey_patch()
    import shared  # noqa: F401
    from nameko.standalone.rpc import ClusterRpcProxy

    from contextlib import ExitStack

    from services.evaluation import demo as evaluation_demo
    from services.notifications import demo as notifications_demo
    from services.organizations import demo as organizations_demo
    from shared.identity import mint_token

    config = {"AMQP_URI": amqp_uri}
    tok = mint_token(secret, sub="demo-loader", role="org_admin", ttl=3600)
    with ExitStack() as stack:
        rpc = stack.enter_context(ClusterRpcProxy(config, context_data={"auth_token": tok},
                                                  timeout=60))
        started = time.time()
        created = organizations_demo.load(rpc)
        click.echo(f"demo organisations: created {created} in {time.time() - started:.1f}s "
                   "(nothing created means it was already loaded)")

        def as_secretary(branch_id):
            # A secretary's token names the member the records show in office (书记).
            officers = rpc.organizations.get_organization(branch_id)["officers"]
            sub = next((o["member_id"] for o in officers if o["role"] == "secretary"), None)
            if sub is None:
                raise click.ClickException(f"branch {branch_id} has no secretary (书记) on record")
            token = mint_token(secret, sub=sub, role="branch_secretary", org=branch_id, ttl=600)
            return stack.enter_context(ClusterRpcProxy(
                config, context_data={"auth_token": token}, timeout=60))

        click.echo(f"demo contacts: created {notifications_demo.load(rpc)}")
        started = time.time()
        orgs, _, roles = organizations_demo.plan()
        created = evaluation_demo.load(rpc, as_secretary, len(orgs), len(roles))
        click.echo(f"demo evaluation: created {created} in {time.time() - started:.1f}s")
        # After the evaluation demo: its self-assessments were entered before any record.
        from services.organizations.records import demo as records_demo
        started = time.time()
        created = records_demo.load(rpc, orgs, *organizations_demo.plan()[1:])
        click.echo(f"demo records: created {created} in {time.time() - started:.1f}s")


# Which service owns which import (each service imports its own data).
IMPORT_SERVICES = {"org_tree": "organizations", "members": "organizations",
                   "roles": "organizations", "meetings": "organizations",
                   "appraisals": "organizations", "ratings": "evaluation",
                   "task_milestones": "evaluation"}


def _rpc_as(amqp_uri: str, secret: str, sub: str, role: str, org: str | None, timeout: int):
    import eventlet

    eventlet.monkey_patch()
    import shared  # noqa: F401
    from nameko.standalone.rpc import ClusterRpcProxy

    from shared.identity import mint_token

    tok = mint_token(token_secret(secret), sub=sub, role=role, org=org, ttl=3600)
    return ClusterRpcProxy({"AMQP_URI": amqp_uri}, context_data={"auth_token": tok},
                           timeout=timeout)


def _import_options(func):
    for option in reversed([
        click.option("--kind", required=True, type=click.Choice(sorted(IMPORT_SERVICES))),
        click.option("--sub", required=True, help="who imports (recorded on every event)"),
        click.option("--role", default="org_admin", show_default=True,
                     type=click.Choice(["org_admin", "college_secretary"])),
        click.option("--org", default=None, help="a college secretary's college (id)"),
        click.option("--reason", default=None, help="recorded with the import"),
        click.option("--timeout", default=600, show_default=True, help="seconds"),
        click.option("--amqp-uri", envvar="AMQP_URI", default=DEFAULT_AMQP),
        click.option("--secret", envvar="AUTH_SECRET", default=None,
                     help="HMAC secret (env AUTH_SECRET or AUTH_SECRET_FILE)"),
    ]):
        func = option(func)
    return func


@main.group("import")
def import_group():
    """Spreadsheet imports (批量导入): preview, then apply; a template for each kind."""


def _run_import(method: str, path, kind, sub, role, org, reason, timeout, amqp_uri, secret):
    from pathlib import Path

    from shared.errors import LianchuangError
    from shared.spreadsheets import encode_file

    payload = {"kind": kind, "file_name": Path(path).name,
               "content": encode_file(Path(path).read_bytes())}
    if reason:
        payload["reason"] = reason
    with _rpc_as(amqp_uri, secret, sub, role, org, timeout) as rpc:
        try:
            result = getattr(getattr(rpc, IMPORT_SERVICES[kind]), method)(**payload)
        except LianchuangError as exc:
            click.echo(f"{type(exc).__name__}: {exc}", err=True)
            sys.exit(1)
    errors = result.get("errors", [])  # a file applied before answers with its record
    for e in errors:
        click.echo(f"{e['sheet']}!{e['row']}\t{e['column'] or ''}\t{e['value'] or ''}\t{e['why']}")
    click.echo(f"rows {result['rows']}; errors {len(errors)}; "
               f"created {result['created']}; changed {result['changed']}; "
               f"unchanged {result['unchanged']}")
    if result.get("already_applied"):
        click.echo(f"this file was applied before: import {result['already_applied']['import_id']} "
                   f"at {result['already_applied']['applied_at']}")
    if result["applied"]:
        click.echo(f"applied: import {result['import_id']} (sha256 {result['sha256']})")
    sys.exit(1 if errors else 0)


@import_group.command("preview")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@_import_options
def import_preview(path, **options):
    """Every row error at once and what would be created or changed; nothing written."""
    _run_import("preview_import", path, **options)


@import_group.command("apply")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@_import_options
def import_apply(path, **options):
    """Apply all-or-nothing as one recorded import (the same file twice writes nothing)."""
    _run_import("apply_import", path, **options)


@import_group.command("template")
@click.argument("path", type=click.Path(dir_okay=False))
@_import_options
def import_template(path, kind, sub, role, org, reason, timeout, amqp_uri, secret):
    """Write the blank template of KIND (Chinese headers, one example row) to PATH."""
    import base64
    from pathlib import Path

    with _rpc_as(amqp_uri, secret, sub, role, org, timeout) as rpc:
        result = getattr(rpc, IMPORT_SERVICES[kind]).import_template(kind=kind)
    Path(path).write_bytes(base64.b64decode(result["content"]))
    click.echo(f"wrote {path} ({result['bytes']} bytes)")


@main.command("wait-healthy")
@click.argument("urls", nargs=-1, required=True)
@click.option("--timeout", default=60, show_default=True)
def wait_healthy(urls, timeout):
    """Wait until every URL answers 200 (a service's /health)."""
    import requests

    deadline = time.time() + timeout
    pending = list(urls)
    while pending and time.time() < deadline:
        for url in list(pending):
            try:
                if requests.get(url, timeout=2).status_code == 200:
                    pending.remove(url)
            except requests.RequestException:
                pass
        if pending:
            time.sleep(0.5)
    if pending:
        click.echo(f"not healthy after {timeout}s: {', '.join(pending)}", err=True)
        sys.exit(1)


main.add_command(db)
main.add_command(audit)

if __name__ == "__main__":
    main()
