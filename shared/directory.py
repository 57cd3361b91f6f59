"""The org directory: a consuming service's own copy of the organisation tree,
members, roles and functional departments (职能部门, by code), kept from the
organizations service's events.

Evaluation needs it to scope cycles and check who may review what;
notifications needs it to find recipients. Neither reads another service's
tables: each keeps these in its own database, applied through an ``Inbox``
(exactly once, in order per aggregate).
"""
from __future__ import annotations

from typing import Callable

from psycopg import sql

from shared.consumer import BatchEffect, Inbox
from shared.identity import OPS, ORG_ADMIN
from shared.office import Office, read_office

DIRECTORY_DDL = (
    """CREATE TABLE IF NOT EXISTS dir_orgs (
        id uuid PRIMARY KEY, name text NOT NULL, kind text NOT NULL, level int NOT NULL,
        parent_id uuid, basis text, status text NOT NULL, updated_at timestamptz NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS dir_members (
        id uuid PRIMARY KEY, name text NOT NULL, branch_id uuid, category text NOT NULL,
        status text NOT NULL, double_leader bool NOT NULL DEFAULT false, active bool NOT NULL,
        updated_at timestamptz NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS dir_members_branch ON dir_members (branch_id)",
    """CREATE TABLE IF NOT EXISTS dir_roles (
        org_id uuid NOT NULL, member_id uuid NOT NULL, role text NOT NULL,
        PRIMARY KEY (org_id, member_id, role))""",
    # One row per applied transfer: the branch history a consumer knows.
    """CREATE TABLE IF NOT EXISTS dir_member_moves (
        id bigserial PRIMARY KEY, event_id text NOT NULL, member_id uuid NOT NULL,
        from_branch_id uuid, to_branch_id uuid, effective_on date,
        applied_at timestamptz NOT NULL DEFAULT now())""",
    # Validity (as of a moment): when an organisation was created and closed
    # (dissolved or merged); NULL created_at: from before these were kept.
    "ALTER TABLE dir_orgs ADD COLUMN IF NOT EXISTS created_at timestamptz",
    "ALTER TABLE dir_orgs ADD COLUMN IF NOT EXISTS closed_at timestamptz",
    # Who held a role when: one row per holding (until_at NULL: held now; from_at
    # NULL: held since before these were kept, filled from dir_roles once).
    """CREATE TABLE IF NOT EXISTS dir_role_periods (
        org_id uuid NOT NULL, member_id uuid NOT NULL, role text NOT NULL,
        from_at timestamptz, until_at timestamptz)""",
    "CREATE INDEX IF NOT EXISTS dir_role_periods_role ON dir_role_periods (role, org_id)",
    """INSERT INTO dir_role_periods (org_id, member_id, role)
        SELECT r.org_id, r.member_id, r.role FROM dir_roles r WHERE NOT EXISTS (
            SELECT 1 FROM dir_role_periods p WHERE p.org_id = r.org_id
            AND p.member_id = r.member_id AND p.role = r.role AND p.until_at IS NULL)""",
    # Functional departments, keyed by the code other records hold; a rename
    # changes the name only, a retired one stays with its period.
    """CREATE TABLE IF NOT EXISTS dir_departments (
        id uuid PRIMARY KEY, code text NOT NULL UNIQUE, name text NOT NULL,
        status text NOT NULL, added_at timestamptz NOT NULL, retired_at timestamptz,
        updated_at timestamptz NOT NULL)""",
    # Each organisation's periods (存续期间): from its creation or a move to its
    # dissolution, merger or next move, under the parent it had then, so that
    # the organisations of a past moment are known (as-of answers, 审计).
    """CREATE TABLE IF NOT EXISTS dir_org_periods (
        org_id uuid NOT NULL, level int NOT NULL, parent_id uuid,
        valid_from timestamptz NOT NULL, valid_to timestamptz,
        PRIMARY KEY (org_id, valid_from))""",
    "CREATE INDEX IF NOT EXISTS dir_org_periods_parent ON dir_org_periods "
    "(parent_id, level, valid_from)",
    "CREATE INDEX IF NOT EXISTS dir_org_periods_level ON dir_org_periods (level, valid_from)",
    # Organisations this copy knew before it kept periods: one period from their
    # creation (or the beginning, '-infinity', where this copy does not know it)
    # to their closing, under today's parent (earlier moves are not in this copy).
    """INSERT INTO dir_org_periods (org_id, level, parent_id, valid_from, valid_to)
       SELECT o.id, o.level, o.parent_id, coalesce(o.created_at, '-infinity'),
              CASE WHEN o.status = 'active' THEN NULL ELSE coalesce(o.closed_at, o.updated_at) END
       FROM dir_orgs o WHERE NOT EXISTS (SELECT 1 FROM dir_org_periods p WHERE p.org_id = o.id)""",
)

# The organisations in being at %(at)s (``dir_org_periods``), of one level, with
# the parent each had then; names are today's.
ORGS_AS_OF = """
SELECT p.org_id AS id, o.name, p.level, p.parent_id FROM dir_org_periods p
JOIN dir_orgs o ON o.id = p.org_id
WHERE p.level = %(level)s AND p.valid_from <= %(at)s AND (p.valid_to IS NULL OR p.valid_to > %(at)s)"""


class OrgDirectory:
    def __init__(self, app, service: str):
        self.app = app
        with app.transaction() as curs:
            curs.execute("SELECT pg_advisory_xact_lock(hashtext('directory_ddl'))")
            for statement in DIRECTORY_DDL:
                curs.execute(statement)
        self.inbox = Inbox(app, consumer=f"{service}.org_directory", service=service)
        self.inbox.effect = self.apply  # what ops' retry of a parked event applies
        self._effects = {
            "organization_created": self._org_created,
            "organization_renamed": self._org_renamed,
            "organization_moved": self._org_moved,
            "organization_dissolved": self._org_closed,
            "organization_merged": self._org_closed,
            "organization_role_assigned": self._role_assigned,
            "organization_role_revoked": self._role_revoked,
            "member_registered": self._member_registered,
            "member_transferred": self._member_transferred,
            "member_converted_to_full": self._member_changed,
            "member_category_changed": self._member_changed,
            "member_double_leader_set": self._member_changed,
            "member_left": self._member_changed,
            "department_added": self._department_added,
            "department_renamed": self._department_renamed,
            "department_retired": self._department_retired,
        }
        # Callables (curs, envelope) run in the transaction applying an event,
        # with the event types each wants (None: every event); see ``listen``.
        self.listeners: list[tuple[Callable, frozenset | None]] = []

    def handle(self, envelope: dict, fill_gap=None) -> str:
        return self.inbox.handle(envelope, self.apply, fill_gap)

    def handle_batch(self, envelopes: list[dict], fill_gap=None) -> list[str]:
        """A batch of deliveries in one transaction (``Inbox.handle_batch``),
        members' registrations and simple changes folded into a few set-based
        writes (``MemberRowsBatch``)."""
        return self.inbox.handle_batch(envelopes, self.apply, fill_gap,
                                       batched=lambda: MemberRowsBatch(self))

    def listen(self, listener: Callable, types=None) -> None:
        """Run ``listener(curs, envelope)`` in the transaction that applies each
        event of ``types`` (every event where None). Declaring the types lets
        the other events of a batch be folded (a listener might read the rows
        a fold has not written yet)."""
        self.listeners.append((listener, frozenset(types) if types is not None else None))

    def is_listened_to(self, kind: str) -> bool:
        return any(types is None or kind in types for _, types in self.listeners)

    def apply(self, curs, envelope: dict) -> None:
        kind = envelope["type"]
        effect = self._effects.get(kind)
        if effect is not None:
            effect(curs, envelope["originator_id"], envelope["data"], envelope["occurred_at"],
                   envelope)
        for listener, types in self.listeners:
            if types is None or kind in types:
                listener(curs, envelope)

    # -- organisations ---------------------------------------------------------
    def _org_created(self, curs, oid, d, at, env):
        curs.execute(
            "INSERT INTO dir_orgs (id, name, kind, level, parent_id, basis, status, updated_at, "
            "created_at) VALUES (%s,%s,%s,%s,%s,%s,'active',%s,%s) ON CONFLICT (id) DO NOTHING",
            (oid, d["name"], d["kind"], d["level"], d["parent_id"], d["basis"], at, at))
        curs.execute(
            "INSERT INTO dir_org_periods (org_id, level, parent_id, valid_from) "
            "VALUES (%s,%s,%s,%s) ON CONFLICT DO NOTHING", (oid, d["level"], d["parent_id"], at))

    def _org_renamed(self, curs, oid, d, at, env):
        curs.execute("UPDATE dir_orgs SET name = %s, updated_at = %s WHERE id = %s",
                     (d["name"], at, oid))

    def _org_moved(self, curs, oid, d, at, env):
        curs.execute("UPDATE dir_orgs SET parent_id = %s, updated_at = %s WHERE id = %s",
                     (d["parent_id"], at, oid))
        self._end_period(curs, oid, at)
        curs.execute(
            "INSERT INTO dir_org_periods (org_id, level, parent_id, valid_from) "
            "SELECT id, level, parent_id, %s FROM dir_orgs WHERE id = %s "
            "ON CONFLICT (org_id, valid_from) DO UPDATE SET parent_id = excluded.parent_id, "
            "valid_to = NULL", (at, oid))

    @staticmethod
    def _end_period(curs, oid, at):
        curs.execute("UPDATE dir_org_periods SET valid_to = %s "
                     "WHERE org_id = %s AND valid_to IS NULL", (at, oid))

    def _org_closed(self, curs, oid, d, at, env):
        status = "merged" if env["type"] == "organization_merged" else "dissolved"
        curs.execute("UPDATE dir_orgs SET status = %s, updated_at = %s, closed_at = %s "
                     "WHERE id = %s", (status, at, at, oid))
        self._end_period(curs, oid, at)
        curs.execute("DELETE FROM dir_roles WHERE org_id = %s", (oid,))
        curs.execute("UPDATE dir_role_periods SET until_at = %s WHERE org_id = %s "
                     "AND until_at IS NULL", (at, oid))

    def _role_assigned(self, curs, oid, d, at, env):
        curs.execute("INSERT INTO dir_roles (org_id, member_id, role) VALUES (%s,%s,%s) "
                     "ON CONFLICT DO NOTHING RETURNING role", (oid, d["member_id"], d["role"]))
        if curs.fetchone() is not None:  # a new holding (a redelivery changes nothing)
            curs.execute("INSERT INTO dir_role_periods (org_id, member_id, role, from_at) "
                         "VALUES (%s,%s,%s,%s)", (oid, d["member_id"], d["role"], at))

    def _role_revoked(self, curs, oid, d, at, env):
        curs.execute("DELETE FROM dir_roles WHERE org_id = %s AND member_id = %s AND role = %s",
                     (oid, d["member_id"], d["role"]))
        curs.execute("UPDATE dir_role_periods SET until_at = %s WHERE org_id = %s "
                     "AND member_id = %s AND role = %s AND until_at IS NULL",
                     (at, oid, d["member_id"], d["role"]))

    # -- members -------------------------------------------------------------
    def _member_registered(self, curs, mid, d, at, env):
        curs.execute(
            "INSERT INTO dir_members (id, name, branch_id, category, status, double_leader, "
            "active, updated_at) VALUES (%s,%s,%s,%s,%s,%s,true,%s) ON CONFLICT (id) DO NOTHING",
            (mid, d["name"], d["branch_id"], d["category"], d["status"], d["double_leader"], at))

    def _member_transferred(self, curs, mid, d, at, env):
        curs.execute("UPDATE dir_members SET branch_id = %s, updated_at = %s WHERE id = %s",
                     (d["to_branch_id"], at, mid))
        curs.execute(
            "INSERT INTO dir_member_moves (event_id, member_id, from_branch_id, to_branch_id, "
            "effective_on) VALUES (%s,%s,%s,%s,%s)",
            (env["event_id"], mid, d["from_branch_id"], d["to_branch_id"], d["effective_on"]))

    def _member_changed(self, curs, mid, d, at, env):
        """Converted to full, category, 双带头人, left: the member's row only."""
        change = self.member_row_change(env["type"], d, at)
        columns = list(change)
        curs.execute(sql.SQL("UPDATE dir_members SET {} WHERE id = %s").format(
            sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(c)) for c in columns)),
            [change[c] for c in columns] + [mid])

    # Member events whose effect is a change of the member's own row: folded
    # per member in a batch (``MemberRowsBatch``), as the columns they set.
    @staticmethod
    def member_row_change(kind: str, d: dict, at) -> dict | None:
        if kind == "member_double_leader_set":
            return {"double_leader": d["double_leader"], "updated_at": at}
        if kind == "member_category_changed":
            return {"category": d["category"], "updated_at": at}
        if kind == "member_converted_to_full":
            return {"status": "full", "updated_at": at}
        if kind == "member_left":
            return {"active": False, "updated_at": at}
        return None

    # -- functional departments ------------------------------------------------
    def _department_added(self, curs, did, d, at, env):
        curs.execute(
            "INSERT INTO dir_departments (id, code, name, status, added_at, updated_at) "
            "VALUES (%s,%s,%s,'active',%s,%s) ON CONFLICT (id) DO NOTHING",
            (did, d["code"], d["name"], at, at))

    def _department_renamed(self, curs, did, d, at, env):
        curs.execute("UPDATE dir_departments SET name = %s, updated_at = %s WHERE id = %s",
                     (d["name"], at, did))

    def _department_retired(self, curs, did, d, at, env):
        curs.execute("UPDATE dir_departments SET status = 'retired', retired_at = %s, "
                     "updated_at = %s WHERE id = %s", (at, at, did))

    def backfill(self, read_page, page_size: int = 500) -> dict:
        """Apply whatever this directory missed, reading the organizations log
        from the start (``read_page(after_position, limit)``, e.g. its
        ``read_events`` RPC). Events already applied are skipped, so this is
        safe while live events keep arriving: it is how a consumer that joined
        late, or lost its queue, catches up."""
        counts = {"applied": 0, "duplicate": 0, "parked": 0, "held": 0}
        after = 0
        while True:
            page = read_page(after, page_size)
            if not page:
                return counts
            for envelope in page:
                with self.inbox.locks.hold(str(envelope["originator_id"])):
                    counts[self.inbox.process_or_park(envelope, self.apply)] += 1
            after = page[-1]["position"]

    # -- queries ---------------------------------------------------------------
    def org(self, org_id) -> dict | None:
        return self.app.query_one("SELECT * FROM dir_orgs WHERE id = %s", (str(org_id),))

    def college_of(self, org_id) -> str | None:
        row = self.org(org_id)
        if row is None:
            return None
        if row["level"] == 2:
            return str(row["id"])
        if row["level"] == 3:
            return str(row["parent_id"])
        return None

    def departments(self) -> dict[str, dict]:
        """Every functional department this copy knows, retired ones too, by code."""
        return {r["code"]: r for r in self.app.query(
            "SELECT code, name, status, added_at, retired_at FROM dir_departments "
            "ORDER BY added_at, code")}

    def holders(self, org_id, role: str) -> list[dict]:
        return self.app.query(
            "SELECT m.* FROM dir_roles r JOIN dir_members m ON m.id = r.member_id "
            "WHERE r.org_id = %s AND r.role = %s AND m.active", (str(org_id), role))

    def office(self, org_id: str, roles: tuple) -> Office | None:
        """Who holds ``roles`` in an organisation now, as this copy knows it
        (what a secretary's token is checked against, ``shared.office``)."""
        return read_office(self.app, org_id, roles, orgs="dir_orgs", role_table="dir_roles")

    def status(self) -> dict:
        counts = self.app.query_one(
            "SELECT (SELECT count(*) FROM dir_orgs) AS organizations, "
            "(SELECT count(*) FROM dir_members WHERE active) AS members, "
            "(SELECT count(*) FROM dir_roles) AS roles, "
            "(SELECT count(*) FROM dir_member_moves) AS transfers_applied, "
            "(SELECT count(*) FROM dir_departments) AS departments, "
            "(SELECT coalesce(max(last_event_position), 0) FROM inbox_positions "
            " WHERE consumer = %s) AS last_position", (self.inbox.consumer,))
        return {**{k: int(v) for k, v in counts.items()},
                "failures": [{**f, "first_failed_at": f["first_failed_at"].isoformat(),
                              "last_failed_at": f["last_failed_at"].isoformat()}
                             for f in self.inbox.failures()],
                "parked": self.inbox.status()}


class DirectoryOperations:
    """Operations every application that keeps an ``OrgDirectory`` (as
    ``self.directory``) offers to ops."""

    def backfill_directory(self, caller, read_page) -> dict:
        """Apply organizations' events this service missed (started late, lost its
        queue), paging their log; already-applied events are skipped."""
        caller.require_role(ORG_ADMIN, OPS)
        return self.directory.backfill(read_page)

    def office(self, org_id: str, roles: tuple) -> Office | None:
        """Secretaries' tokens are checked against the directory copy."""
        return self.directory.office(org_id, roles)


# The types of dir_members' columns a fold writes (arrays passed as parameters).
_MEMBER_COLUMNS = {"id": "uuid", "name": "text", "branch_id": "uuid", "category": "text",
                   "status": "text", "double_leader": "bool", "active": "bool",
                   "updated_at": "timestamptz"}


class MemberRowsBatch(BatchEffect):
    """A batch's directory effects with members' rows folded: registrations
    (inserted) and the changes of a member's own row (``member_row_change``)
    are gathered per member, a later change overriding an earlier one, and
    written as one INSERT and one UPDATE per set of columns, from arrays
    (pipeline mode, where COPY cannot run). Any other event, or one a listener
    wants, writes what is pending first and is applied as ``OrgDirectory.apply``
    does, so every effect sees the rows of the events before it."""

    def __init__(self, directory: OrgDirectory):
        self.directory = directory
        self.inserts: dict[str, dict] = {}  # member id -> the row to insert
        self.updates: dict[str, dict] = {}  # member id -> columns to set

    def __call__(self, curs, envelope: dict) -> None:
        kind, directory = envelope["type"], self.directory
        if not directory.is_listened_to(kind):
            mid, d, at = envelope["originator_id"], envelope["data"], envelope["occurred_at"]
            if kind == "member_registered":
                if mid not in self.inserts and mid not in self.updates:
                    self.inserts[mid] = {
                        "id": mid, "name": d["name"], "branch_id": d["branch_id"],
                        "category": d["category"], "status": d["status"],
                        "double_leader": d["double_leader"], "active": True, "updated_at": at}
                    return
            else:
                change = directory.member_row_change(kind, d, at)
                if change is not None:
                    (self.inserts.get(mid) or self.updates.setdefault(mid, {})).update(change)
                    return
        self.flush(curs)
        directory.apply(curs, envelope)

    def flush(self, curs) -> None:
        if self.inserts:
            rows = list(self.inserts.values())
            self._write(curs, "INSERT INTO dir_members ({columns}) SELECT * FROM unnest({arrays}) "
                        "ON CONFLICT (id) DO NOTHING", list(rows[0]), rows)
            self.inserts = {}
        if self.updates:
            shapes: dict[tuple, list[dict]] = {}
            for mid, change in self.updates.items():
                shapes.setdefault(tuple(change), []).append({"id": mid, **change})
            for columns, rows in shapes.items():
                self._write(curs, "UPDATE dir_members AS m SET {sets} FROM unnest({arrays}) "
                            "AS v({columns}) WHERE m.id = v.id", ["id", *columns], rows)
            self.updates = {}

    @staticmethod
    def _write(curs, statement: str, columns: list[str], rows: list[dict]) -> None:
        curs.execute(sql.SQL(statement).format(
            columns=sql.SQL(", ").join(map(sql.Identifier, columns)),
            arrays=sql.SQL(", ").join(
                sql.SQL("%s::{}[]").format(sql.SQL(_MEMBER_COLUMNS[c])) for c in columns),
            sets=sql.SQL(", ").join(
                sql.SQL("{0} = v.{0}").format(sql.Identifier(c)) for c in columns if c != "id")),
            [[row[c] for row in rows] for c in columns])
