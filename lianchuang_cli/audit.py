"""``lianchuang audit …``: the auditor's (纪委办) and ops' checks on the stores."""
from __future__ import annotations

import json
import sys

import click

from lianchuang_cli.services import SERVICES, chosen, database


@click.group("audit")
def audit():
    """Audit (审计): tamper evidence and read-model rebuilds."""


@audit.command("verify")
@click.option("--service", type=click.Choice(SERVICES), default=None,
              help="one service (default: all three)")
@click.option("--independent", is_flag=True,
              help="read every event and hash it here instead of in PostgreSQL")
@click.option("--as-json", "as_json", is_flag=True, help="print the reports as JSON")
def verify(service, independent, as_json):
    """Recompute each store's hash chain (哈希链校验) and name every broken link
    (altered, missing, moved or swapped events) by position and event id.
    Exits 1 when any link is broken."""
    import psycopg

    import shared  # noqa: F401
    from shared.chain import verify as verify_chain

    reports, broken = {}, False
    for name in chosen(service):
        conninfo = database(name).conninfo()
        with psycopg.connect(conninfo) as conn:
            report = verify_chain(conn, f"{name}_events", independent=independent,
                                  connect=lambda: psycopg.connect(conninfo))
        reports[name] = report
        broken |= not report["ok"]
        if as_json:
            continue
        head = report["head"]
        verdict = ("intact (完整)" if report["ok"]
                   else f"{len(report['problems'])} broken link(s) (已被篡改)")
        click.echo(f"{name}: {report['checked']} links checked in {report['seconds']}s, "
                   f"head {head['position']} {head['hash'][:16]}…: {verdict}")
        for p in report["problems"]:
            click.echo(f"  position {p['position']}  {p['kind']:<9}  "
                       f"event {p['event_id'] or '-'}  {p['detail']}")
    if as_json:
        click.echo(json.dumps(reports, ensure_ascii=False, indent=2))
    sys.exit(1 if broken else 0)


@audit.command("rebuild")
@click.option("--service", type=click.Choice(SERVICES), required=True)
@click.option("--dry-run", is_flag=True, help="report the differences, keep the live models")
@click.option("--as-json", "as_json", is_flag=True, help="print the report as JSON")
def rebuild(service, dry_run, as_json):
    """Rebuild SERVICE's read models from its event store (重建读模型) and report
    every difference from the live ones before swapping them in; readers see
    the live ones until the new ones are complete. Exits 1 when they differed."""
    import shared  # noqa: F401
    from lianchuang_cli.services import application
    from shared.rebuild import rebuild_compared

    app = application(service)
    try:
        report = rebuild_compared(app.projector, apply=not dry_run)
    finally:
        app.close()
    if as_json:
        click.echo(json.dumps(report, ensure_ascii=False, indent=2, default=str))
    else:
        click.echo(f"{service}: {report['replayed_events']} events replayed; read models "
                   + ("identical to the live ones (一致)" if report["identical"]
                      else "DIFFER from the live ones (不一致)")
                   + ("; swapped in" if report["swapped"] else "; dry run, live ones kept"))
        for table, c in report["tables"].items():
            if c["only_live"] or c["only_rebuilt"]:
                click.echo(f"  {table}: {c['live_rows']} live rows, {c['rebuilt_rows']} rebuilt; "
                           f"{c['only_live']} only live, {c['only_rebuilt']} only rebuilt")
                for side in ("only_live", "only_rebuilt"):
                    for row in c["samples"][side]:
                        click.echo(f"    {side}: {json.dumps(row, ensure_ascii=False)}")
    sys.exit(0 if report["identical"] else 1)


@audit.command("history")
@click.argument("record_id")
@click.option("--service", type=click.Choice(["organizations", "evaluation"]),
              default="organizations", show_default=True,
              help="organizations: an organisation or member; evaluation: an organisation's rating")
@click.option("--sub", required=True, help="who is reading (recorded as an audit read)")
@click.option("--since", default=None, help="ISO date or timestamp (inclusive)")
@click.option("--until", default=None, help="ISO date or timestamp (exclusive)")
@click.option("--kind", "kinds", multiple=True, help="event type; repeat for several")
@click.option("--csv", "csv_path", default=None, type=click.Path(dir_okay=False),
              help="write the history as CSV to this file")
@click.option("--xlsx", "xlsx_path", default=None, type=click.Path(dir_okay=False),
              help="write the history as an .xlsx workbook to this file")
@click.option("--amqp-uri", envvar="AMQP_URI", default=None)
@click.option("--secret", envvar="AUTH_SECRET", default=None)
def history(record_id, service, sub, since, until, kinds, csv_path, xlsx_path, amqp_uri,
            secret):
    """The history (履历) of RECORD_ID as the auditor (纪委办) reads it over RPC:
    time, event (Chinese label), actor and role, reason, evidence; or written
    to a CSV or .xlsx file."""
    import base64

    import eventlet

    eventlet.monkey_patch()
    import shared  # noqa: F401
    from nameko.standalone.rpc import ClusterRpcProxy

    from lianchuang_cli.main import DEFAULT_AMQP, token_secret
    from shared.identity import AUDITOR, mint_token

    token = mint_token(token_secret(secret), sub=sub, role=AUDITOR, ttl=600)
    filters = {"since": since, "until": until, "kinds": list(kinds) or None,
               "format": "xlsx" if xlsx_path else "csv" if csv_path else "json"}
    if csv_path and xlsx_path:
        raise click.UsageError("--csv or --xlsx, not both")
    key = "aggregate_id" if service == "organizations" else "org_id"
    with ClusterRpcProxy({"AMQP_URI": amqp_uri or DEFAULT_AMQP},
                         context_data={"auth_token": token}, timeout=60) as rpc:
        result = getattr(rpc, service).get_history(
            **{key: record_id}, **{k: v for k, v in filters.items() if v})
    if csv_path:
        with open(csv_path, "w", encoding="utf-8", newline="") as f:
            f.write(result["content"])
        click.echo(f"written {csv_path}")
        return
    if xlsx_path:
        with open(xlsx_path, "wb") as f:
            f.write(base64.b64decode(result["content"]))
        click.echo(f"written {xlsx_path} ({result['bytes']} bytes)")
        return
    for e in result:
        actor = e.get("actor") or {}
        click.echo(f"{e['occurred_at']}  {e['label']}  {actor.get('sub', '-')} "
                   f"({actor.get('role', '-')})  {e.get('reason') or ''}"
                   + (f"  依据 {json.dumps(e['evidence'], ensure_ascii=False)}"
                      if e.get("evidence") else ""))
