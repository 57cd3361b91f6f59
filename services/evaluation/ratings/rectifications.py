"""Organisations owing a rectification (整改), school → college → branch, now or
as of a moment: both kinds in ``eval_problems`` — a major problem (重大问题,
``major_problem``) and a result at ★3 or below (三星及以下, ``low_stars``) — from
their recording until 组织部 verifies them (整改验收).

As of a moment: the organisations in being then (``dir_org_periods``: one
dissolved or merged since still counts, one created since does not, a branch
moved since counts under the college it had then; names are today's), each
with the rectifications recorded by then and not verified by then, at the stage
each had reached then (``recorded_at``, ``planned_at``, ``completed_at``,
``verified_at``), as ``get_rating(as_of)`` reads them. Read models only: two
statements in one round trip, grouped here."""
from __future__ import annotations

import datetime as dt

from shared.identity import AUDITOR, COLLEGE_SECRETARY, ORG_ADMIN, Caller
from services.evaluation.audit.application import DistributionQuery
from services.evaluation.ratings.trend import as_of_moment

KINDS = {"major_problem": "重大问题", "low_stars": "三星及以下"}
STAGES = {"open": "待整改 (未报整改计划)", "planned": "整改中 (已报整改计划)",
          "completed": "已完成待验收"}

# Colleges and branches in being: now (active in the directory) or at %(at)s.
ORGS_NOW = ("SELECT id, name, level, parent_id FROM dir_orgs "
            "WHERE status = 'active' AND level IN (2, 3)")
ORGS_THEN = ("SELECT p.org_id AS id, o.name, p.level, p.parent_id FROM dir_org_periods p "
             "JOIN dir_orgs o ON o.id = p.org_id WHERE p.level IN (2, 3) "
             "AND p.valid_from <= %(at)s AND (p.valid_to IS NULL OR p.valid_to > %(at)s)")
# Rectifications not yet verified: now, or at %(at)s at the stage reached then.
PROBLEMS_NOW = ("SELECT org_id, problem_id, kind, description, status AS stage, "
                "rectification_due, plan_due, recorded_at FROM eval_problems "
                "WHERE status <> 'verified'")
PROBLEMS_THEN = (
    "SELECT org_id, problem_id, kind, description, "
    "CASE WHEN completed_at <= %(at)s THEN 'completed' "
    "WHEN planned_at <= %(at)s THEN 'planned' ELSE 'open' END AS stage, rectification_due, "
    "CASE WHEN planned_at <= %(at)s THEN plan_due END AS plan_due, recorded_at "
    "FROM eval_problems WHERE recorded_at <= %(at)s "
    "AND (verified_at IS NULL OR verified_at > %(at)s)")


class RectificationsOwing:
    """Mixed into the evaluation application (with ``StarRatings``)."""

    def rectifications_owing(self, caller: Caller, college_id: str | None = None,
                             as_of: str | None = None) -> dict:
        """Per college and school-wide, the organisations owing a rectification
        (整改) not yet verified, each number with the organisations behind it;
        ``as_of`` (a timestamp, or a date meaning the end of that day, UTC) over
        the organisations in being then, with their rectifications then."""
        caller.require_role(ORG_ADMIN, AUDITOR, COLLEGE_SECRETARY)
        q = DistributionQuery.of(college_id=college_id, as_of=as_of)
        college_id = caller.college_scope(q.college_id, "rectifications")
        moment = as_of_moment(q.as_of) if q.as_of else None
        return self.rectifications_of(college_id, moment)

    def rectifications_of(self, college_id=None, moment: dt.datetime | None = None,
                          listed: bool = True) -> dict:
        """School → college → branch (see ``rectifications_owing``); without
        ``listed`` the numbers only (no ``org_ids``, ``organizations: None``), as
        the school's programme dashboard of today carries them."""
        params: dict = {"college": str(college_id) if college_id is not None else None}
        if moment is not None:
            params["at"] = moment
        orgs_sql, problems_sql = (ORGS_THEN, PROBLEMS_THEN) if moment else (ORGS_NOW,
                                                                            PROBLEMS_NOW)
        scope = (" WHERE (o.id = %(college)s OR o.parent_id = %(college)s)"
                 if college_id is not None else "")
        orgs, problems = self.queries(
            (f"SELECT o.id, o.name, o.level, o.parent_id, c.name AS parent_name "
             f"FROM ({orgs_sql}) o LEFT JOIN dir_orgs c ON c.id = o.parent_id{scope} "
             f"ORDER BY o.name, o.id", params),
            (f"SELECT p.* FROM ({problems_sql}) p JOIN ({orgs_sql}) o ON o.id = p.org_id"
             f"{scope} ORDER BY p.recorded_at, p.problem_id", params))
        day = (moment or self.clock()).date()
        owed: dict[str, list[dict]] = {}
        for p in problems:
            due = p["rectification_due"]
            owed.setdefault(str(p["org_id"]), []).append({
                "problem_id": p["problem_id"], "kind": p["kind"], "kind_zh": KINDS.get(p["kind"]),
                "description": p["description"], "stage": p["stage"],
                "stage_zh": STAGES[p["stage"]],
                "rectification_due": due.isoformat() if due else None,
                "plan_due": p["plan_due"].isoformat() if p["plan_due"] else None,
                # the due day passed with the rectification not yet completed (a
                # completed one waits on 组织部's verification, not on the organisation)
                "overdue": bool(due and due < day and p["stage"] in ("open", "planned")),
                "recorded_at": p["recorded_at"].isoformat()})
        colleges = [o for o in orgs if o["level"] == 2]
        names = {str(c["id"]): c["name"] for c in colleges}
        per_college: dict[str, list[dict]] = {str(c["id"]): [] for c in colleges}
        branches = [o for o in orgs if o["level"] == 3]
        for b in branches:
            key = str(b["parent_id"])
            per_college.setdefault(key, []).append(b)
            names.setdefault(key, b["parent_name"])

        def figures(rows: list[dict]) -> dict:
            return _figures(rows, owed, listed)

        result = {
            "college_id": params["college"],
            "as_of": moment.isoformat() if moment else None,
            "overdue_on": day.isoformat(),
            "branches": {"school": figures(branches),
                         "colleges": sorted(({"college_id": k, "college_name": names[k],
                                              **figures(v)} for k, v in per_college.items()),
                                             key=lambda c: (c["college_name"] or "",
                                                            c["college_id"]))},
            "colleges": figures(colleges),
            "organizations": None}
        if listed:
            result["organizations"] = [
                {"org_id": str(o["id"]), "org_name": o["name"], "level": o["level"],
                 "college_id": str(o["id"] if o["level"] == 2 else o["parent_id"]),
                 "college_name": o["name"] if o["level"] == 2 else names.get(str(o["parent_id"])),
                 "rectifications": owed[str(o["id"])]}
                for o in sorted(orgs, key=lambda o: (o["level"], o["name"], str(o["id"])))
                if str(o["id"]) in owed]
        return result


def _figures(rows: list[dict], owed: dict[str, list[dict]], listed: bool) -> dict:
    """Over organisations ``rows``: how many there are and, each with its
    organisations' ids when ``listed``, those owing a rectification, per kind, per
    stage and overdue (an organisation owing two counts once in ``owing`` and
    under each kind and stage it owes at); ``rectifications``: how many are owed."""
    owing = [str(r["id"]) for r in rows if str(r["id"]) in owed]

    def number(ids: list[str]) -> dict:
        return {"count": len(ids), "org_ids": ids} if listed else {"count": len(ids)}

    def having(test) -> dict:
        return number([o for o in owing if any(test(p) for p in owed[o])])

    return {"organizations": len(rows), "owing": number(owing),
            "rectifications": sum(len(owed[o]) for o in owing),
            "by_kind": {k: having(lambda p, k=k: p["kind"] == k) for k in KINDS},
            "by_stage": {s: having(lambda p, s=s: p["stage"] == s) for s in STAGES},
            "overdue": having(lambda p: p["overdue"])}
