"""``member_history``: every state of every member with its validity period
(``valid_from`` = the event's time, ``valid_to`` = the next one's), so a
branch's roster and a member can be read as of any moment. Rebuildable."""
from __future__ import annotations

from shared.projection import Projection, folds, handles
from services.organizations.domain import Member

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


class MemberHistoryReadModel(Projection):
    """Runs after ``OrganizationsReadModel`` in the same transaction: copies the
    member's present row (``member_view``) as a new period. A registration,
    the first period, is folded from the event itself (a 30,000-member import:
    one COPY a page)."""

    ddl = DDL
    tables = ("member_history",)

    @folds(Member.Registered)
    def member_registered(self, batch, e):
        batch.table("member_history", "member_id", "version").insert(
            (e.originator_id, e.originator_version), name=e.name, branch_id=e.branch_id,
            category=e.category, status=e.status, joined_on=e.joined_on, full_on=e.full_on,
            double_leader=e.double_leader, staff_no=e.staff_no, active=True, left_on=None,
            valid_from=e.timestamp, valid_to=None)

    @handles(Member.Transferred, Member.ConvertedToFull,
             Member.CategoryChanged, Member.DoubleLeaderSet, Member.Left)
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
