"""Read models of the organisations store (rebuildable from zero).

``org_view``/``member_view``/``org_roles`` hold the present; ``org_history``
holds every state of every organisation with its validity period, so the tree
can be read as of any date.
"""
from __future__ import annotations

from shared.projection import Projection, handles
from services.organizations.domain import Member, Organization

DDL = (
    """CREATE TABLE IF NOT EXISTS org_view (
        id uuid PRIMARY KEY, name text NOT NULL, kind text NOT NULL, level int NOT NULL,
        parent_id uuid, basis text, status text NOT NULL, merged_into uuid,
        created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL, version int NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS org_view_parent ON org_view (parent_id)",
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
    """CREATE TABLE IF NOT EXISTS member_moves (
        member_id uuid NOT NULL, version int NOT NULL, from_branch_id uuid, to_branch_id uuid,
        effective_on date, recorded_at timestamptz NOT NULL, kind text NOT NULL,
        PRIMARY KEY (member_id, version))""",
    """CREATE TABLE IF NOT EXISTS org_roles (
        org_id uuid NOT NULL, member_id uuid NOT NULL, role text NOT NULL,
        assigned_at timestamptz NOT NULL, PRIMARY KEY (org_id, member_id, role))""",
)


class OrganizationsReadModel(Projection):
    ddl = DDL
    tables = ("org_view", "org_history", "member_view", "member_moves", "org_roles")

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
        self._update_org(curs, e, "parent_id = %s", (e.parent_id,))

    @handles(Organization.Dissolved)
    def org_dissolved(self, curs, e):
        self._update_org(curs, e, "status = 'dissolved'", ())
        curs.execute("DELETE FROM org_roles WHERE org_id = %s", (e.originator_id,))

    @handles(Organization.Merged)
    def org_merged(self, curs, e):
        self._update_org(curs, e, "status = 'merged', merged_into = %s", (e.target_id,))
        curs.execute("DELETE FROM org_roles WHERE org_id = %s", (e.originator_id,))

    def _touch_org(self, curs, e):
        """Events that change no column shown in history still move the version."""
        curs.execute("UPDATE org_view SET version = %s, updated_at = %s WHERE id = %s",
                     (e.originator_version, e.timestamp, e.originator_id))

    @handles(Organization.MemberAdmitted, Organization.MemberReleased)
    def roster_changed(self, curs, e):
        self._touch_org(curs, e)

    @handles(Organization.RoleAssigned)
    def role_assigned(self, curs, e):
        self._touch_org(curs, e)
        curs.execute("INSERT INTO org_roles (org_id, member_id, role, assigned_at) "
                     "VALUES (%s,%s,%s,%s) ON CONFLICT DO NOTHING",
                     (e.originator_id, e.member_id, e.role, e.timestamp))

    @handles(Organization.RoleRevoked)
    def role_revoked(self, curs, e):
        self._touch_org(curs, e)
        curs.execute("DELETE FROM org_roles WHERE org_id = %s AND member_id = %s AND role = %s",
                     (e.originator_id, e.member_id, e.role))

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

    @handles(Member.Registered)
    def member_registered(self, curs, e):
        curs.execute(
            "INSERT INTO member_view (id, name, branch_id, category, status, joined_on, full_on, "
            "double_leader, staff_no, active, registered_at, updated_at) "
            "VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,true,%s,%s)",
            (e.originator_id, e.name, e.branch_id, e.category, e.status, e.joined_on, e.full_on,
             e.double_leader, e.staff_no, e.timestamp, e.timestamp))
        self._move(curs, e, "registered", None, e.branch_id, e.joined_on)

    @handles(Member.Transferred)
    def member_transferred(self, curs, e):
        self._update_member(curs, e, "branch_id = %s", (e.to_branch_id,))
        self._move(curs, e, "transferred", e.from_branch_id, e.to_branch_id, e.effective_on)

    @handles(Member.ConvertedToFull)
    def member_converted(self, curs, e):
        self._update_member(curs, e, "status = 'full', full_on = %s", (e.effective_on,))

    @handles(Member.CategoryChanged)
    def member_category(self, curs, e):
        self._update_member(curs, e, "category = %s", (e.category,))

    @handles(Member.DoubleLeaderSet)
    def member_double_leader(self, curs, e):
        self._update_member(curs, e, "double_leader = %s", (e.double_leader,))

    @handles(Member.Left)
    def member_left(self, curs, e):
        self._update_member(curs, e, "active = false, left_on = %s", (e.effective_on,))
        self._move(curs, e, "left", e.branch_id, None, e.effective_on)
