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
@click.option("--as-json", "as_json", is_flag=True, help="print the reports as JSON")
def verify(service, as_json):
    """Recompute each store's hash chain (哈希链校验) and name every broken link
    (altered, missing, moved or swapped events) by position and event id.
    Exits 1 when any link is broken."""
    import psycopg

    import shared  # noqa: F401
    from shared.chain import verify as verify_chain

    reports, broken = {}, False
    for name in chosen(service):
        with psycopg.connect(database(name).conninfo()) as conn:
            report = verify_chain(conn, f"{name}_events")
        reports[name] = report
        broken |= not report["ok"]
        if as_json:
            continue
        head = report["head"]
        verdict = "intact (完整)" if report["ok"] else f"{len(report['problems'])} broken link(s) (已被篡改)"
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
