"""Members as of a moment, for auditors (纪委办) and whoever may read the members:
``list_members(as_of=…)`` and ``get_member(as_of=…)`` from ``member_history``
and ``org_history``; ``get_member(as_of=…, replay=True)`` replays the member's
own events up to that moment instead (both give the same answer)."""
from __future__ import annotations

import datetime as dt

from shared.domain import parse_moment
from shared.errors import NotFound
from services.organizations.domain import MEMBER_CATEGORIES, MEMBER_STATUSES, Member

_PERIOD = "valid_from <= %(at)s AND (valid_to IS NULL OR valid_to > %(at)s)"


def member_as_of_out(r: dict, moment: dt.datetime) -> dict:
    return {"id": str(r["member_id"]), "name": r["name"],
            "branch_id": str(r["branch_id"]) if r["branch_id"] else None,
            "branch_name": r.get("branch_name"), "category": r["category"],
            "category_zh": MEMBER_CATEGORIES[r["category"]], "status": r["status"],
            "status_zh": MEMBER_STATUSES[r["status"]],
            "joined_on": _d(r["joined_on"]), "full_on": _d(r["full_on"]),
            "double_leader": r["double_leader"], "staff_no": r["staff_no"],
            "active": r["active"], "left_on": _d(r["left_on"]), "as_of": moment.isoformat()}


def _d(value) -> str | None:
    return value.isoformat() if isinstance(value, dt.date) else value


class MembersAsOf:
    """Mixed into the organisations application (with ``shared.history.AuditedHistory``)."""

    def list_members_as_of(self, org_id, as_of: str, cmd) -> dict:
        """The members of an organisation's subtree (as the tree was then) at a moment."""
        moment = parse_moment(as_of, "as_of")
        at = {"at": moment, "org": str(org_id)}
        if not self.query(f"SELECT 1 FROM org_history WHERE org_id = %(org)s AND {_PERIOD}", at):
            raise NotFound(f"organisation {org_id} did not exist at {as_of}")
        where = ["m.branch_id IN (SELECT org_id FROM sub)", _PERIOD.replace("valid", "m.valid")]
        if not cmd.include_left:
            where.append("m.active")
        if cmd.category:
            where.append("m.category = %(category)s")
        if cmd.status:
            where.append("m.status = %(status)s")
        if cmd.name_contains:
            where.append("m.name ILIKE %(name)s")
        rows = self.query(
            f"""WITH RECURSIVE tree AS (SELECT * FROM org_history WHERE {_PERIOD}),
                  sub AS (SELECT org_id FROM tree WHERE org_id = %(org)s
                          UNION ALL SELECT t.org_id FROM tree t JOIN sub ON t.parent_id = sub.org_id)
                SELECT m.*, b.name AS branch_name, count(*) OVER () AS total
                FROM member_history m JOIN tree b ON b.org_id = m.branch_id
                WHERE {' AND '.join(where)}
                ORDER BY b.name, m.name, m.member_id LIMIT %(limit)s OFFSET %(offset)s""",
            {**at, "category": cmd.category, "status": cmd.status,
             "name": f"%{cmd.name_contains}%", "limit": cmd.page_size,
             "offset": (cmd.page - 1) * cmd.page_size})
        return {"org_id": str(org_id), "as_of": moment.isoformat(), "page": cmd.page,
                "page_size": cmd.page_size, "total": int(rows[0]["total"]) if rows else 0,
                "members": [member_as_of_out(r, moment) for r in rows]}

    def member_as_of(self, member_id, as_of: str, replay: bool = False) -> dict:
        """One member at a moment: from ``member_history``, or replayed from the store."""
        moment = parse_moment(as_of, "as_of")
        row = (self._member_replayed(member_id, moment) if replay else self.query_one(
            f"SELECT * FROM member_history WHERE member_id = %(id)s AND {_PERIOD}",
            {"id": str(member_id), "at": moment}))
        if row is None:
            raise NotFound(f"member {member_id} did not exist at {as_of}")
        branch = self.query_one(
            f"SELECT name FROM org_history WHERE org_id = %(id)s AND {_PERIOD}",
            {"id": str(row["branch_id"]), "at": moment}) if row["branch_id"] else None
        out = member_as_of_out({**row, "branch_name": branch["name"] if branch else None},
                               moment)
        out["answered_by"] = "replay" if replay else "read_model"
        return out

    def _member_replayed(self, member_id, moment: dt.datetime) -> dict | None:
        member = self.state_as_of(member_id, moment, "member")
        if not isinstance(member, Member):
            return None
        return {"member_id": member.id, "name": member.name, "branch_id": member.branch_id,
                "category": member.category, "status": member.status,
                "joined_on": member.joined_on, "full_on": member.full_on,
                "double_leader": member.double_leader, "staff_no": member.staff_no,
                "active": member.active, "left_on": member.left_on}
