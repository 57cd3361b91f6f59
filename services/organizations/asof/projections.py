"""``member_history``: every state of every member with its validity period
(``valid_from`` = the event's time, ``valid_to`` = the next one's), so a
branch's roster and a member can be read as of any moment. Rebuildable."""
from __future__ import annotations

from shared.projection import Batch, Projection, TableFold, folds, handles
from services.organizations.domain import Member
from services.organizations.projections import MEMBER_ROW_CHANGES

DDL = (
    """CREATE TABLE IF NOT EXISTS member_history (
        member_id uuid NOT NULL, version int NOT NULL, name text NOT NULL, branch_id uuid,
        category text NOT NULL, status text NOT NULL, joined_on date NOT NULL, full_on date,
        double_leader bool NOT NULL, staff_no text, active bool NOT NULL, left_on date,
        valid_from timestamptz NOT NULL, valid_to timestamptz,
        PRIMARY KEY (member_id, version))""",
    "CREATE INDEX IF NOT EXISTS member_history_branch ON member_history (branch_id, valid_from)",
)

_COLUMNS = ("name", "branch_id", "category", "status", "joined_on", "full_on",
            "double_leader", "staff_no", "active", "left_on")



class _HistoryBatch(Batch):
    """A page's registrations (first periods) and, per member, its row changes
    in version order: ``(version, at, columns)``."""

    def __init__(self):
        super().__init__()
        self.changes: dict[str, list[tuple]] = {}


class MemberHistoryReadModel(Projection):
    """Runs after ``OrganizationsReadModel`` in the same transaction: copies the
    member's present row (``member_view``) as a new period. A registration,
    the first period, is folded from the event itself (a 30,000-member import:
    one COPY a page)."""

    ddl = DDL
    tables = ("member_history",)

    def new_batch(self) -> _HistoryBatch:
        return _HistoryBatch()

    @folds(Member.Registered)
    def member_registered(self, batch, e):
        batch.table("member_history", "member_id", "version").insert(
            (e.originator_id, e.originator_version), name=e.name, branch_id=e.branch_id,
            category=e.category, status=e.status, joined_on=e.joined_on, full_on=e.full_on,
            double_leader=e.double_leader, staff_no=e.staff_no, active=True, left_on=None,
            valid_from=e.timestamp, valid_to=None)

    @folds(*MEMBER_ROW_CHANGES)  # each opens a period from the one open before it
    def member_row_changed(self, batch, e):
        batch.changes.setdefault(str(e.originator_id), []).append(
            (e.originator_version, e.timestamp, MEMBER_ROW_CHANGES[type(e)](e)))

    def write_batch(self, curs, batch: _HistoryBatch) -> None:
        """Registrations first (their periods are then the open ones); then each
        member's changes, from its open period: that period closed at the first
        change, one period per change, the last left open. The same periods
        the per-event copy of ``member_view`` made (the open period always
        mirrors it), in a few statements a page instead of one per event."""
        batch.write(curs)
        if not batch.changes:
            return
        members = list(batch.changes)
        cols = ", ".join(_COLUMNS)
        curs.execute(f"SELECT member_id::text AS member_id, version, {cols} FROM member_history "
                     "WHERE member_id = ANY(%s::uuid[]) AND valid_to IS NULL", (members,))
        open_periods = {r["member_id"]: r for r in curs.fetchall()}
        missing = [m for m in members if m not in open_periods]
        if missing:  # a read model older than its history: from the present row
            curs.execute(f"SELECT id::text AS member_id, NULL::int AS version, {cols} "
                         "FROM member_view WHERE id = ANY(%s::uuid[])", (missing,))
            open_periods.update((r["member_id"], r) for r in curs.fetchall())
        periods = TableFold("member_history", ("member_id", "version"))
        for member, changes in batch.changes.items():
            base = open_periods.get(member)
            if base is None:
                continue  # no such member: nothing to copy (as the per-event copy)
            if base["version"] is not None:
                periods.update((member, base["version"]), valid_to=changes[0][1])
            state = {c: base[c] for c in _COLUMNS}
            for i, (version, at, change) in enumerate(changes):
                state = {**state, **change}
                until = changes[i + 1][1] if i + 1 < len(changes) else None
                periods.insert((member, version), **state, valid_from=at, valid_to=until)
        batch.changes = {}
        periods.write(curs)

    @handles(Member.Transferred, Member.Left)
    def member_changed(self, curs, e):
        # the open period closed and the new one opened in one statement (one round
        # trip; they are different rows)
        cols = ", ".join(_COLUMNS)
        curs.execute(
            f"""WITH closed AS (UPDATE member_history SET valid_to = %(at)s
                                WHERE member_id = %(id)s AND valid_to IS NULL)
                INSERT INTO member_history (member_id, version, {cols}, valid_from)
                SELECT id, %(version)s, {cols}, %(at)s FROM member_view WHERE id = %(id)s""",
            {"at": e.timestamp, "id": e.originator_id, "version": e.originator_version})
