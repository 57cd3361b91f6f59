"""The ``lianchuang`` console command: mint tokens, load demo data, wait for health,
set up the databases (``db``) and audit the stores (``audit``)."""
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
