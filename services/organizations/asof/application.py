"""Members as of a moment, for auditors (纪委办) and whoever may read the members:
``list_members(as_of=…)`` and ``get_member(as_of=…)`` from ``member_history``
and ``org_history``; ``get_member(as_of=…, replay=True)`` replays the member's
own events up to that moment instead (both give the same answer). 双带头人
coverage (R5) as of a moment, from ``org_history``, ``org_role_history`` and
``member_history``."""
from __future__ import annotations

import datetime as dt

from shared.domain import end_of_day_moment, parse_moment
from shared.errors import NotFound
from services.organizations.domain import MEMBER_CATEGORIES, MEMBER_STATUSES, Member
from services.organizations.views import _ratio, _s

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


# The teacher branches in being at %(at)s under the college (in being) they had
# then, with the secretary (书记) each had then and whether that member was a
# 双带头人 then; names as they were then.
COVERAGE_AS_OF = f"""
WITH orgs AS (SELECT * FROM org_history WHERE {_PERIOD})
SELECT c.org_id AS college_id, c.name AS college_name, b.org_id AS branch_id,
       b.name AS branch_name, s.member_id AS secretary_id, m.name AS secretary_name,
       coalesce(m.double_leader, false) AS covered
FROM orgs b JOIN orgs c ON c.org_id = b.parent_id
LEFT JOIN org_role_history s ON s.org_id = b.org_id AND s.role = 'secretary'
     AND s.valid_from <= %(at)s AND (s.valid_to IS NULL OR s.valid_to > %(at)s)
LEFT JOIN member_history m ON m.member_id = s.member_id
     AND m.valid_from <= %(at)s AND (m.valid_to IS NULL OR m.valid_to > %(at)s)
WHERE b.kind = 'teacher_branch' AND b.status = 'active' AND c.status = 'active'
ORDER BY c.name, b.name"""


def coverage_of(rows: list[dict], college_id=None) -> dict:
    """双带头人 coverage over teacher-branch rows (college, branch, secretary,
    covered): per college (``college_id``: that one only) and school-wide, with the
    branches lacking a 双带头人 secretary and why."""
    colleges: dict[str, dict] = {}
    for r in rows:
        key = str(r["college_id"])
        if college_id and key != str(college_id):
            continue
        c = colleges.setdefault(key, {"college_id": key, "college_name": r["college_name"],
                                      "teacher_branches": 0, "covered": 0, "lacking": []})
        c["teacher_branches"] += 1
        if r["covered"]:
            c["covered"] += 1
        else:
            c["lacking"].append({
                "branch_id": str(r["branch_id"]), "branch_name": r["branch_name"],
                "secretary_id": _s(r["secretary_id"]), "secretary_name": r["secretary_name"],
                "why": "没有书记 no secretary" if r["secretary_id"] is None
                else "书记不是双带头人 secretary is not a 双带头人"})
    for c in colleges.values():
        c["coverage"] = _ratio(c["covered"], c["teacher_branches"])
    total = sum(c["teacher_branches"] for c in colleges.values())
    covered = sum(c["covered"] for c in colleges.values())
    return {"school": {"teacher_branches": total, "covered": covered,
                       "coverage": _ratio(covered, total)},
            "colleges": list(colleges.values())}


class CoverageAsOf:
    """Mixed into the organisations application."""

    def double_leader_coverage_as_of(self, college_id, as_of: str) -> dict:
        """``double_leader_coverage`` as it stood at a moment (a date: the end of
        that day, UTC), with ``as_of`` in the answer."""
        moment = end_of_day_moment(as_of, "as_of")
        rows = self.query(COVERAGE_AS_OF, {"at": moment})
        return {**coverage_of(rows, college_id), "as_of": moment.isoformat()}
