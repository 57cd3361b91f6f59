"""``lianchuang db setup``: each service's database, role and append-only store."""
from __future__ import annotations

import click

from lianchuang_cli.services import SERVICES, chosen, database


@click.group("db")
def db():
    """Databases (数据库): set up before the services start."""


@db.command("setup")
@click.option("--service", type=click.Choice(SERVICES), default=None,
              help="one service (default: all three)")
def setup(service):
    """Create each service's database, its own role (lianchuang_<service>_svc),
    the maintenance role, the store's tables owned by the administrator
    (POSTGRES_USER), the append-only trigger and the hash chain. Idempotent."""
    import shared  # noqa: F401  (psycopg wait function)
    from shared.dbsetup import setup_service_database

    for name in chosen(service):
        done = setup_service_database(database(name), name)
        click.echo(f"{name}: database {done['database']}, role {done['role']}, "
                   f"{done['events_table']} append-only and chained")
