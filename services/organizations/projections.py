"""Read models of the organisations store (rebuildable from zero).

``org_view``/``member_view``/``org_roles`` hold the present; ``org_history``
holds every state of every organisation with its validity period, so the tree
can be read as of any date, and ``org_role_history`` every holding of a role
(任职) with its period.

Member registrations and simple changes, and the roster touches on an
organisation, are folded (``shared.projection.folds``): a page of a
30,000-member import becomes a COPY of the members and their first moves, one
update of the touched organisations and one of the head counts up each line.
Events that read what is there before (transfers, leaving, the tree's own
changes) keep their per-event handlers; a page's folds are written before any
of them runs.
"""
from __future__ import annotations

from collections import Counter

from psycopg import sql

from shared.projection import Batch, Projection, bulk, folds, handles, stage
from services.organizations.domain import Member, Organization

# A member's changes of its own row (``member_view``'s columns: 预备党员转正,
# 党员类别, 双带头人), as each event sets them; ``member_history`` opens a period
# with the same (``asof/projections.py``).
MEMBER_ROW_CHANGES = {
    Member.ConvertedToFull: lambda e: {"status": "full", "full_on": e.effective_on},
    Member.CategoryChanged: lambda e: {"category": e.category},
    Member.DoubleLeaderSet: lambda e: {"double_leader": e.double_leader},
}

DDL = (
    """CREATE TABLE IF NOT EXISTS org_view (
        id uuid PRIMARY KEY, name text NOT NULL, kind text NOT NULL, level int NOT NULL,
        parent_id uuid, basis text, status text NOT NULL, merged_into uuid,
        created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL, version int NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS org_view_parent ON org_view (parent_id)",
    # Head count (人数): active members in the organisation's subtree, kept here
    # by the member and move handlers rather than computed per read.
    "ALTER TABLE org_view ADD COLUMN IF NOT EXISTS head_count int NOT NULL DEFAULT 0",
    """CREATE TABLE IF NOT EXISTS org_history (
        org_id uuid NOT NULL, version int NOT NULL, name text NOT NULL, kind text NOT NULL,
        level int NOT NULL, parent_id uuid, basis text, status text NOT NULL,
        valid_from timestamptz NOT NULL, valid_to timestamptz,
        PRIMARY KEY (org_id, version))""",
    "CREATE INDEX IF NOT EXISTS org_history_period ON org_history (valid_from, valid_to)",
    "CREATE INDEX IF NOT EXISTS org_history_open ON org_history (org_id) WHERE valid_to IS NULL",
    """CREATE TABLE IF NOT EXISTS member_view (
        id uuid PRIMARY KEY, name text NOT NULL, branch_id uuid, category text NOT NULL,
        status text NOT NULL, joined_on date NOT NULL, full_on date, double_leader bool NOT NULL,
        staff_no text, active bool NOT NULL, left_on date,
        registered_at timestamptz NOT NULL, updated_at timestamptz NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS member_view_branch ON member_view (branch_id) WHERE active",
    # Recounted at start-up (cheap for one university): a read model filled
    # before head_count existed is right at once, and a drift cannot last.
    """WITH RECURSIVE sub AS (
         SELECT id AS root, id FROM org_view
         UNION ALL
         SELECT sub.root, o.id FROM org_view o JOIN sub ON o.parent_id = sub.id),
       counted AS (
         SELECT sub.root, count(m.id) AS n FROM sub
         LEFT JOIN member_view m ON m.branch_id = sub.id AND m.active GROUP BY sub.root)
       UPDATE org_view SET head_count = counted.n FROM counted
       WHERE org_view.id = counted.root AND org_view.head_count <> counted.n""",
    """CREATE TABLE IF NOT EXISTS member_moves (
        member_id uuid NOT NULL, version int NOT NULL, from_branch_id uuid, to_branch_id uuid,
        effective_on date, recorded_at timestamptz NOT NULL, kind text NOT NULL,
        PRIMARY KEY (member_id, version))""",
    """CREATE TABLE IF NOT EXISTS org_roles (
        org_id uuid NOT NULL, member_id uuid NOT NULL, role text NOT NULL,
        assigned_at timestamptz NOT NULL, PRIMARY KEY (org_id, member_id, role))""",
    # Who held which role when (任职期间): one row per holding, from its assignment
    # to its revocation or the organisation's closing (valid_to NULL: held now), so
    # officers can be read as of a moment (双带头人 coverage then). A read model
    # made before this table existed gets the holdings of today from org_roles
    # (from their assignment) at start-up; rebuild_read_models fills the past.
    """CREATE TABLE IF NOT EXISTS org_role_history (
        org_id uuid NOT NULL, member_id uuid NOT NULL, role text NOT NULL,
        valid_from timestamptz NOT NULL, valid_to timestamptz,
        PRIMARY KEY (org_id, member_id, role, valid_from))""",
    "CREATE INDEX IF NOT EXISTS org_role_history_role ON org_role_history (role, org_id)",
    """INSERT INTO org_role_history (org_id, member_id, role, valid_from)
       SELECT r.org_id, r.member_id, r.role, r.assigned_at FROM org_roles r
       WHERE NOT EXISTS (SELECT 1 FROM org_role_history h WHERE h.org_id = r.org_id
                         AND h.member_id = r.member_id AND h.role = r.role
                         AND h.valid_to IS NULL)
       ON CONFLICT DO NOTHING""",
)


_ADD_TO_HEAD_COUNTS = """
    WITH RECURSIVE up AS (
      SELECT id, parent_id FROM org_view WHERE id = %(org)s
      UNION ALL
      SELECT o.id, o.parent_id FROM org_view o JOIN up ON o.id = up.parent_id)
    UPDATE org_view SET head_count = head_count + %(n)s
    WHERE id IN (SELECT id FROM up)"""


def _add_to_head_counts(curs, org_id, n: int) -> None:
    """Add ``n`` to the head count of ``org_id`` and each organisation above it."""
    if org_id is not None and n:
        curs.execute(_ADD_TO_HEAD_COUNTS, {"org": org_id, "n": n})


_ADD_STAGED_TO_HEAD_COUNTS = """
    WITH RECURSIVE up AS (
      SELECT o.id, o.parent_id, d.n FROM org_view o JOIN {staged} d ON o.id = d.org_id
      UNION ALL
      SELECT o.id, o.parent_id, up.n FROM org_view o JOIN up ON o.id = up.parent_id),
    summed AS (SELECT id, sum(n) AS n FROM up GROUP BY id)
    UPDATE org_view SET head_count = org_view.head_count + summed.n FROM summed
    WHERE org_view.id = summed.id AND summed.n <> 0"""


def add_many_to_head_counts(curs, deltas: dict) -> None:
    """``add_to_head_counts`` for many organisations at once (``{org: n}``): one
    statement walking every line up, each organisation updated once."""
    rows = [(org, n) for org, n in deltas.items() if n]
    if not rows:
        return
    if not bulk(curs, rows):
        for org, n in rows:
            _add_to_head_counts(curs, org, n)
        return
    staged = stage(curs, [("org_id", "uuid"), ("n", "int")], rows)
    curs.execute(sql.SQL(_ADD_STAGED_TO_HEAD_COUNTS).format(staged=staged))


class OrganizationsBatch(Batch):
    """A page of organisation and member events folded: ``member_view`` by
    member, ``member_moves`` by (member, version), ``org_view``'s version by
    organisation, and the head counts to add per branch (up its line when
    written)."""

    def __init__(self):
        super().__init__()
        self.members = self.table("member_view", "id")
        self.moves = self.table("member_moves", "member_id", "version")
        self.orgs = self.table("org_view", "id")
        self.head_counts: Counter = Counter()


class OrganizationsReadModel(Projection):
    ddl = DDL
    tables = ("org_view", "org_history", "member_view", "member_moves", "org_roles",
              "org_role_history")

    def new_batch(self) -> OrganizationsBatch:
        return OrganizationsBatch()

    def write_batch(self, curs, batch: OrganizationsBatch) -> None:
        batch.write(curs)
        add_many_to_head_counts(curs, batch.head_counts)
        batch.head_counts.clear()

    # -- organisations ---------------------------------------------------
    def _snapshot_history(self, curs, org_id, version, ts):
        curs.execute("UPDATE org_history SET valid_to = %s WHERE org_id = %s AND valid_to IS NULL",
                     (ts, org_id))
        curs.execute(
            "INSERT INTO org_history (org_id, version, name, kind, level, parent_id, basis, "
            "status, valid_from) SELECT id, %s, name, kind, level, parent_id, basis, status, %s "
            "FROM org_view WHERE id = %s", (version, ts, org_id))

    def _update_org(self, curs, e, sets: str, params: tuple):
        curs.execute(f"UPDATE org_view SET {sets}, updated_at = %s, version = %s WHERE id = %s",
                     params + (e.timestamp, e.originator_version, e.originator_id))
        self._snapshot_history(curs, e.originator_id, e.originator_version, e.timestamp)

    @handles(Organization.Created)
    def org_created(self, curs, e):
        curs.execute(
            "INSERT INTO org_view (id, name, kind, level, parent_id, basis, status, created_at, "
            "updated_at, version) VALUES (%s,%s,%s,%s,%s,%s,'active',%s,%s,%s)",
            (e.originator_id, e.name, e.kind, e.level, e.parent_id, e.basis, e.timestamp,
             e.timestamp, e.originator_version))
        self._snapshot_history(curs, e.originator_id, e.originator_version, e.timestamp)

    @handles(Organization.Renamed)
    def org_renamed(self, curs, e):
        self._update_org(curs, e, "name = %s", (e.name,))

    @handles(Organization.Moved)
    def org_moved(self, curs, e):
        curs.execute("SELECT parent_id, head_count FROM org_view WHERE id = %s",
                     (e.originator_id,))
        before = curs.fetchone()
        if before is not None:  # its members leave the old line and join the new one
            _add_to_head_counts(curs, before["parent_id"], -before["head_count"])
            _add_to_head_counts(curs, e.parent_id, before["head_count"])
        self._update_org(curs, e, "parent_id = %s", (e.parent_id,))

    @staticmethod
    def _end_roles(curs, e):
        """A closed organisation's officers hold their roles no longer."""
        curs.execute("DELETE FROM org_roles WHERE org_id = %s", (e.originator_id,))
        curs.execute("UPDATE org_role_history SET valid_to = %s WHERE org_id = %s "
                     "AND valid_to IS NULL", (e.timestamp, e.originator_id))

    @handles(Organization.Dissolved)
    def org_dissolved(self, curs, e):
        self._update_org(curs, e, "status = 'dissolved'", ())
        self._end_roles(curs, e)

    @handles(Organization.Merged)
    def org_merged(self, curs, e):
        self._update_org(curs, e, "status = 'merged', merged_into = %s", (e.target_id,))
        self._end_roles(curs, e)

    def _touch_org(self, curs, e):
        """Events that change no column shown in history still move the version."""
        curs.execute("UPDATE org_view SET version = %s, updated_at = %s WHERE id = %s",
                     (e.originator_version, e.timestamp, e.originator_id))

    @folds(Organization.MemberAdmitted, Organization.MemberReleased)
    def roster_changed(self, batch, e):
        batch.orgs.update(e.originator_id, version=e.originator_version, updated_at=e.timestamp)

    @handles(Organization.RoleAssigned)
    def role_assigned(self, curs, e):
        self._touch_org(curs, e)
        curs.execute("INSERT INTO org_roles (org_id, member_id, role, assigned_at) "
                     "VALUES (%s,%s,%s,%s) ON CONFLICT DO NOTHING",
                     (e.originator_id, e.member_id, e.role, e.timestamp))
        curs.execute("INSERT INTO org_role_history (org_id, member_id, role, valid_from) "
                     "VALUES (%s,%s,%s,%s) ON CONFLICT DO NOTHING",
                     (e.originator_id, e.member_id, e.role, e.timestamp))

    @handles(Organization.RoleRevoked)
    def role_revoked(self, curs, e):
        self._touch_org(curs, e)
        curs.execute("DELETE FROM org_roles WHERE org_id = %s AND member_id = %s AND role = %s",
                     (e.originator_id, e.member_id, e.role))
        curs.execute("UPDATE org_role_history SET valid_to = %s WHERE org_id = %s "
                     "AND member_id = %s AND role = %s AND valid_to IS NULL",
                     (e.timestamp, e.originator_id, e.member_id, e.role))

    # -- members ---------------------------------------------------------
    def _move(self, curs, e, kind, from_branch, to_branch, effective_on):
        curs.execute(
            "INSERT INTO member_moves (member_id, version, from_branch_id, to_branch_id, "
            "effective_on, recorded_at, kind) VALUES (%s,%s,%s,%s,%s,%s,%s)",
            (e.originator_id, e.originator_version, from_branch, to_branch, effective_on,
             e.timestamp, kind))

    def _update_member(self, curs, e, sets: str, params: tuple):
        curs.execute(f"UPDATE member_view SET {sets}, updated_at = %s WHERE id = %s",
                     params + (e.timestamp, e.originator_id))

    @folds(Member.Registered)
    def member_registered(self, batch, e):
        batch.members.insert(
            e.originator_id, name=e.name, branch_id=e.branch_id, category=e.category,
            status=e.status, joined_on=e.joined_on, full_on=e.full_on,
            double_leader=e.double_leader, staff_no=e.staff_no, active=True,
            registered_at=e.timestamp, updated_at=e.timestamp)
        batch.moves.insert((e.originator_id, e.originator_version), from_branch_id=None,
                           to_branch_id=e.branch_id, effective_on=e.joined_on,
                           recorded_at=e.timestamp, kind="registered")
        if e.branch_id is not None:
            batch.head_counts[str(e.branch_id)] += 1

    @handles(Member.Transferred)
    def member_transferred(self, curs, e):
        curs.execute("SELECT branch_id, active FROM member_view WHERE id = %s",
                     (e.originator_id,))
        before = curs.fetchone()
        if before is not None and before["active"]:
            _add_to_head_counts(curs, before["branch_id"], -1)
            _add_to_head_counts(curs, e.to_branch_id, 1)
        self._update_member(curs, e, "branch_id = %s", (e.to_branch_id,))
        self._move(curs, e, "transferred", e.from_branch_id, e.to_branch_id, e.effective_on)

    @folds(*MEMBER_ROW_CHANGES)
    def member_row_changed(self, batch, e):
        batch.members.update(e.originator_id, **MEMBER_ROW_CHANGES[type(e)](e),
                             updated_at=e.timestamp)

    @handles(Member.Left)
    def member_left(self, curs, e):
        curs.execute("SELECT branch_id, active FROM member_view WHERE id = %s",
                     (e.originator_id,))
        before = curs.fetchone()
        if before is not None and before["active"]:
            _add_to_head_counts(curs, before["branch_id"], -1)
        self._update_member(curs, e, "active = false, left_on = %s", (e.effective_on,))
        self._move(curs, e, "left", e.branch_id, None, e.effective_on)
