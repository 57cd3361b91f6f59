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
