"""Database setup: each service's own role, append-only stored events, the hash chain.

Run by an administrator (``lianchuang db setup``; ``make run``, the test suite,
docker compose and the Kubernetes job run it) before a service starts:

* the service's database and the library's tables (``<app>_events``,
  ``<app>_snapshots``) are created by the administrator, who owns them;
* the service's role (``lianchuang_<service>_svc``, LOGIN) may SELECT and
  INSERT stored events and snapshots, use the notification sequence and create
  and write its read models (it owns those). It has no DELETE or TRUNCATE on
  stored events. PostgreSQL (≤ 15) lets only a role with UPDATE, DELETE or
  TRUNCATE take the library's ``LOCK TABLE … IN EXCLUSIVE MODE`` (which keeps
  notification ids in commit order), so it holds UPDATE — and row-level
  security gives it no UPDATE policy (an UPDATE reaches no row) while a
  statement trigger refuses the UPDATE outright;
* the trigger ``lianchuang_append_only`` refuses UPDATE, DELETE and TRUNCATE
  of stored events, snapshots and the chain to everyone — superusers and the
  tables' owner included — except the maintenance role
  ``lianchuang_maintenance`` (NOLOGIN): a superuser or a member of it runs
  ``SET ROLE lianchuang_maintenance`` first, which is the documented and only
  way to repair (or, in tests, to empty) a store;
* the trigger ``lianchuang_chain`` adds a row to ``event_chain`` for every
  stored event inserted: SHA-256 over the previous link's hash and the event's
  position, id, topic and stored bytes (see ``docs/events.md``).

``shared`` knows no service: the caller passes the service's name, its
application name (the table prefix) and its settings.
"""
from __future__ import annotations

import contextlib

import psycopg
from eventsourcing.persistence import Environment
from eventsourcing.postgres import PostgresFactory
from psycopg import sql

from shared.config import DatabaseSettings

MAINTENANCE_ROLE = "lianchuang_maintenance"
CHAIN_TABLE = "event_chain"
GENESIS = b"\x00" * 32

_CHAIN_DDL = f"""
CREATE TABLE IF NOT EXISTS {CHAIN_TABLE} (
    notification_id bigint PRIMARY KEY,
    previous_id bigint NOT NULL,
    originator_id uuid NOT NULL,
    originator_version bigint NOT NULL,
    hash bytea NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
)"""

# The link: sha256(previous hash ‖ int8 position ‖ uuid ‖ int8 version
#                  ‖ int4 len(topic) ‖ topic (UTF-8) ‖ stored state bytes).
_LINK_SQL = """sha256({prev} || int8send({pos}) || uuid_send({oid}) || int8send({ver})
        || int4send(octet_length(convert_to(coalesce({topic}, ''), 'UTF8')))
        || convert_to(coalesce({topic}, ''), 'UTF8') || coalesce({state}, ''::bytea))"""



def link_sql(**columns: str) -> str:
    """The link expression over the given SQL expressions (prev, pos, oid, ver,
    topic, state): the trigger and the in-database verify use the same one."""
    return _LINK_SQL.format(**columns)


_CHAIN_FUNCTION = f"""
CREATE OR REPLACE FUNCTION lianchuang_chain_event() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $body$
DECLARE
    prev_id bigint;
    prev_hash bytea;
BEGIN
    SELECT notification_id, hash INTO prev_id, prev_hash
      FROM {CHAIN_TABLE} ORDER BY notification_id DESC LIMIT 1;
    IF prev_id IS NULL THEN
        prev_id := 0;
        prev_hash := '\\x{GENESIS.hex()}'::bytea;
    END IF;
    INSERT INTO {CHAIN_TABLE} (notification_id, previous_id, originator_id,
                               originator_version, hash)
    VALUES (NEW.notification_id, prev_id, NEW.originator_id, NEW.originator_version,
            {_LINK_SQL.format(prev="prev_hash", pos="NEW.notification_id",
                              oid="NEW.originator_id", ver="NEW.originator_version",
                              topic="NEW.topic", state="NEW.state")});
    RETURN NULL;
END
$body$"""

_REFUSE_FUNCTION = f"""
CREATE OR REPLACE FUNCTION lianchuang_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $body$
BEGIN
    IF current_user = '{MAINTENANCE_ROLE}' THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'stored events are append-only: % on % refused for %',
        TG_OP, TG_TABLE_NAME, current_user
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'maintenance runs SET ROLE {MAINTENANCE_ROLE} first';
END
$body$"""


def service_role(service: str) -> str:
    """The default PostgreSQL role a service connects as."""
    return f"lianchuang_{service}_svc"


def _create_role(conn, name: str, login: bool, password: str | None) -> None:
    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
    options = sql.SQL("LOGIN" if login else "NOLOGIN")
    if password:
        options += sql.SQL(" PASSWORD {}").format(sql.Literal(password))
    if exists:
        if login and password:
            conn.execute(sql.SQL("ALTER ROLE {} ").format(sql.Identifier(name)) + options)
        return
    try:
        conn.execute(sql.SQL("CREATE ROLE {} ").format(sql.Identifier(name)) + options)
    except (psycopg.errors.DuplicateObject, psycopg.errors.UniqueViolation):
        pass  # created by a concurrent setup


def ensure_roles(admin: DatabaseSettings, role: str) -> None:
    """Create the maintenance role and the service's role (cluster-wide, idempotent).

    Setups running at once (several test runs, replicas' init jobs) take turns
    under an advisory lock in the ``postgres`` database."""
    with psycopg.connect(admin.conninfo("postgres"), autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(hashtext('lianchuang:roles'))")
        try:
            _create_role(conn, MAINTENANCE_ROLE, login=False, password=None)
            _create_role(conn, role, login=True, password=admin.password or None)
        finally:
            conn.execute("SELECT pg_advisory_unlock(hashtext('lianchuang:roles'))")


def ensure_database(settings: DatabaseSettings) -> None:
    """Create the database if it does not exist yet (idempotent), as ``settings.user``."""
    with psycopg.connect(settings.admin().conninfo("postgres"), autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (settings.dbname,)
        ).fetchone()
        if exists:
            return
        try:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(settings.dbname)))
        except (psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
            pass  # another instance created it at the same moment


def _create_library_tables(admin: DatabaseSettings, app_name: str) -> tuple[str, str]:
    env = Environment(name=app_name, env={**admin.eventsourcing_env(), "POSTGRES_POOL_SIZE": "1",
                                          "POSTGRES_MAX_OVERFLOW": "0", "CREATE_TABLE": "y"})
    factory = PostgresFactory(env)
    try:
        events = factory.application_recorder()
        snapshots = factory.aggregate_recorder("snapshots")
        return events.events_table_name, snapshots.events_table_name
    finally:
        factory.close()


def setup_service_database(settings: DatabaseSettings, app_name: str) -> dict:
    """Everything a service's database needs before the service connects as its
    own role. ``settings`` carry the administrator (``user``) and the service's
    ``role``. Idempotent; returns what it set up."""
    admin = settings.admin()
    role = settings.role or settings.user
    ensure_database(admin)
    if settings.role:
        ensure_roles(admin, role)
    with psycopg.connect(admin.conninfo(), autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (f"{app_name}:schema",))
        try:
            events, snapshots = _create_library_tables(admin, app_name)
            with conn.transaction():
                _protect(conn, events, snapshots, role if settings.role else None)
        finally:
            conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (f"{app_name}:schema",))
    return {"database": settings.dbname, "role": role, "events_table": events}


def _protect(conn, events: str, snapshots: str, role: str | None) -> None:
    ident = sql.Identifier
    conn.execute(_CHAIN_DDL)
    conn.execute(_CHAIN_FUNCTION)
    conn.execute(_REFUSE_FUNCTION)
    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s",
                          (MAINTENANCE_ROLE,)).fetchone()
    if not exists:
        _create_role(conn, MAINTENANCE_ROLE, login=False, password=None)
    protected = (events, snapshots, CHAIN_TABLE)
    for table in protected:
        conn.execute(sql.SQL("DROP TRIGGER IF EXISTS lianchuang_append_only ON {}")
                     .format(ident(table)))
        conn.execute(sql.SQL(
            "CREATE TRIGGER lianchuang_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON {} "
            "FOR EACH STATEMENT EXECUTE FUNCTION lianchuang_refuse_change()").format(ident(table)))
        conn.execute(sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON {} TO {}")
                     .format(ident(table), ident(MAINTENANCE_ROLE)))
        # Row-level security: everyone reads and appends; only maintenance
        # changes rows (owner and superusers bypass it; the trigger stops them).
        conn.execute(sql.SQL("ALTER TABLE {} ENABLE ROW LEVEL SECURITY").format(ident(table)))
        for policy, clause in (
                ("lianchuang_read", "FOR SELECT USING (true)"),
                ("lianchuang_append", "FOR INSERT WITH CHECK (true)"),
                ("lianchuang_maintenance", f"FOR ALL TO {MAINTENANCE_ROLE} "
                                           "USING (true) WITH CHECK (true)")):
            conn.execute(sql.SQL("DROP POLICY IF EXISTS {} ON {}").format(ident(policy),
                                                                         ident(table)))
            conn.execute(sql.SQL("CREATE POLICY {} ON {} ").format(ident(policy), ident(table))
                         + sql.SQL(clause))
    _link_existing_events(conn, events)
    conn.execute(sql.SQL("DROP TRIGGER IF EXISTS lianchuang_chain ON {}").format(ident(events)))
    conn.execute(sql.SQL("CREATE TRIGGER lianchuang_chain AFTER INSERT ON {} FOR EACH ROW "
                         "EXECUTE FUNCTION lianchuang_chain_event()").format(ident(events)))
    sequence = conn.execute("SELECT pg_get_serial_sequence(%s, 'notification_id')",
                            (events,)).fetchone()[0]
    conn.execute(sql.SQL("GRANT USAGE, SELECT, UPDATE ON SEQUENCE {} TO {}")
                 .format(sql.SQL(sequence), ident(MAINTENANCE_ROLE)))
    if role is None:
        return
    conn.execute(sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}").format(
        ident(conn.info.dbname), ident(role)))
    conn.execute(sql.SQL("GRANT USAGE, CREATE ON SCHEMA public TO {}").format(ident(role)))
    for table in (events, snapshots):
        conn.execute(sql.SQL("REVOKE ALL ON {} FROM {}").format(ident(table), ident(role)))
        # UPDATE only so that LOCK TABLE … IN EXCLUSIVE MODE is allowed (see above).
        conn.execute(sql.SQL("GRANT SELECT, INSERT, UPDATE ON {} TO {}")
                     .format(ident(table), ident(role)))
    conn.execute(sql.SQL("REVOKE ALL ON {} FROM {}").format(ident(CHAIN_TABLE), ident(role)))
    conn.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(ident(CHAIN_TABLE), ident(role)))
    conn.execute(sql.SQL("GRANT USAGE, SELECT ON SEQUENCE {} TO {}")
                 .format(sql.SQL(sequence), ident(role)))
    # Read models made before the service had its own role become the role's.
    for (table,) in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename <> ALL(%s) AND tableowner <> %s",
            (list(protected), role)).fetchall():
        conn.execute(sql.SQL("ALTER TABLE {} OWNER TO {}").format(ident(table), ident(role)))


def _link_existing_events(conn, events: str) -> None:
    """A store that had events before it had a chain (set up by an older
    version): link them all, in order, once — only while the chain is empty,
    so an event slipped in later past the trigger stays unlinked (and named)."""
    ident = sql.Identifier
    conn.execute(sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(ident(events)))
    if conn.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(
            ident(CHAIN_TABLE))).fetchone()[0]:
        return
    link = link_sql(prev="prev_hash", pos="r.notification_id", oid="r.originator_id",
                    ver="r.originator_version", topic="r.topic", state="r.state")
    conn.execute(sql.SQL(f"""
        DO $do$
        DECLARE
            r record;
            prev_id bigint := 0;
            prev_hash bytea := '\\x{GENESIS.hex()}'::bytea;
        BEGIN
            FOR r IN SELECT * FROM {{events}} ORDER BY notification_id LOOP
                prev_hash := {link};
                INSERT INTO {CHAIN_TABLE} (notification_id, previous_id, originator_id,
                                           originator_version, hash)
                VALUES (r.notification_id, prev_id, r.originator_id, r.originator_version,
                        prev_hash);
                prev_id := r.notification_id;
            END LOOP;
        END
        $do$""").format(events=ident(events)))


def protected_tables(conn) -> list[str]:
    """The tables the append-only trigger guards in the connected database."""
    return [r[0] for r in conn.execute(
        "SELECT DISTINCT tgrelid::regclass::text FROM pg_trigger "
        "WHERE tgname = 'lianchuang_append_only'").fetchall()]


@contextlib.contextmanager
def maintenance(conn):
    """``SET ROLE lianchuang_maintenance`` for one transaction on an autocommit
    connection of a superuser or member of the role: the one way past the
    append-only trigger (repairs, and the test suite emptying stores)."""
    with conn.transaction():
        conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(MAINTENANCE_ROLE)))
        yield conn


def empty_stored_events(conn) -> list[str]:
    """Empty the guarded tables and restart their notification ids, as the
    maintenance role (the test suite's way back to an empty store)."""
    tables = protected_tables(conn)
    if tables:
        with maintenance(conn):
            conn.execute(sql.SQL("TRUNCATE ") + sql.SQL(", ").join(
                sql.Identifier(t) for t in tables))
            for (sequence,) in conn.execute(
                    "SELECT pg_get_serial_sequence(c.table_name, c.column_name) "
                    "FROM information_schema.columns c WHERE c.table_schema = 'public' "
                    "AND c.table_name = ANY(%s) AND c.column_default LIKE 'nextval%%'",
                    (tables,)).fetchall():
                conn.execute("SELECT setval(%s, 1, false)", (sequence,))
    return tables
