"""Star ratings (星级) over time: major problems (重大问题), rectifications (整改),
the rating as of a moment, its history and the star distribution; the
business gauges on /metrics."""
from __future__ import annotations

import datetime as dt
from uuid import uuid4

from shared.commands import OrgRef
from shared.directory import ORGS_AS_OF
from shared.domain import parse_moment
from shared.errors import Forbidden, NotFound, ValidationError
from shared.identity import AUDITOR, BRANCH_SECRETARY, COLLEGE_SECRETARY, ORG_ADMIN, ROLES, Caller
from services.evaluation.audit.application import DistributionQuery
from services.evaluation.ratings.domain import Rating, stage_due
from services.evaluation.ratings.commands import (RecordMajorProblem, PlanRectification,
                                                  CompleteRectification, VerifyRectification,
                                                  RatingQuery)


class StarRatings:
    """Ratings and rectifications, mixed into the evaluation application."""

    # -- ratings -----------------------------------------------------------------
    def _definition_for_rating(self, rating: Rating) -> dict:
        scheme = self._scheme_for(rating.scheme_id, rating.level)
        return scheme.definition(rating.scheme_version if rating.scheme_id else None)

    def record_major_problem(self, caller: Caller, payload: dict) -> dict:
        """重大问题: downgrade at once to the level the scheme sets."""
        caller.require_role(ORG_ADMIN)  # 纪委办 (auditor) reports; 组织部 records
        cmd = RecordMajorProblem.parse(payload)
        org = self._org(cmd.org_id)
        if org["level"] not in (2, 3):
            raise ValidationError.single("org_id", "star ratings are for colleges and branches")
        rating = self._rating(org["id"], org["name"], org["level"])
        definition = self._definition_for_rating(rating)
        mp = definition["major_problem"]
        rating.record_major_problem(cmd.problem_id or uuid4().hex[:12], cmd.description,
                                    mp["downgrade_to"], mp["rectification_days"],
                                    self.clock().date(), caller.as_actor(), cmd.reason,
                                    list(cmd.evidence))
        return self.commit(rating, result=lambda: self.get_rating(caller, org["id"]))

    def _rating_for_change(self, caller: Caller, org_id, secretary_may: bool) -> Rating:
        org = self._org(org_id)
        allowed = caller.role == ORG_ADMIN or (secretary_may and (
            (caller.role == BRANCH_SECRETARY and caller.org == str(org["id"])) or
            (caller.role == COLLEGE_SECRETARY and caller.org in
             (str(org["id"]), self.directory.college_of(org["id"])))))
        if not allowed:
            raise Forbidden("the organisation's secretary (or 组织部) plans and completes a "
                            "rectification; 组织部 (org_admin) verifies it")
        rating_id = Rating.id_for(org["id"])
        if not self.exists(rating_id):
            raise NotFound(f"{org['name']} has no rating and no major problem on record")
        return self.load(rating_id, Rating, "rating")

    def plan_rectification(self, caller: Caller, payload: dict) -> dict:
        cmd = PlanRectification.parse(payload)
        rating = self._rating_for_change(caller, cmd.org_id, True)
        rating.plan_rectification(cmd.problem_id, cmd.plan, cmd.due.isoformat(),
                                  caller.as_actor())
        return self.commit(rating, result=lambda: self.get_rating(caller, cmd.org_id))

    def complete_rectification(self, caller: Caller, payload: dict) -> dict:
        cmd = CompleteRectification.parse(payload)
        rating = self._rating_for_change(caller, cmd.org_id, True)
        rating.complete_rectification(cmd.problem_id, caller.as_actor(), cmd.reason,
                                      list(cmd.evidence))
        return self.commit(rating, result=lambda: self.get_rating(caller, cmd.org_id))

    def verify_rectification(self, caller: Caller, payload: dict) -> dict:
        cmd = VerifyRectification.parse(payload)
        rating = self._rating_for_change(caller, cmd.org_id, False)
        definition = self._definition_for_rating(rating)
        rating.verify_rectification(cmd.problem_id, self.clock().date(),
                                    definition["major_problem"]["rectification_days"],
                                    caller.as_actor(), cmd.reason,
                                    list(cmd.evidence) if cmd.evidence else None)
        return self.commit(rating, result=lambda: self.get_rating(caller, cmd.org_id))

    def get_rating(self, caller: Caller, org_id, as_of: str | None = None,
                   replay: bool = False) -> dict:
        """Current rating with its breakdown, or the rating as of a timestamp.

        Ratings are published results (公示): every role may read them.
        ``replay`` (org_admin, auditor) rebuilds the as-of state from the
        event store itself (snapshot + later events) and reports whether it
        matches the read model."""
        caller.require_role(*ROLES)
        query = RatingQuery.of(org_id=org_id, as_of=as_of, replay=replay)
        org_uuid, as_of, replay = query.org_id, query.as_of, query.replay
        if as_of is None:
            r = self.query_one("SELECT * FROM eval_ratings WHERE org_id = %s", (str(org_uuid),))
            if r is None:
                self._org(org_uuid)  # NotFound for an unknown organisation
                return {"org_id": str(org_uuid), "stars": None, "score": None,
                        "rated": False, "problems": []}
            problems = self.query("SELECT * FROM eval_problems WHERE org_id = %s "
                                  "ORDER BY recorded_at", (str(org_uuid),))
            return {"org_id": str(r["org_id"]), "org_name": r["org_name"], "level": r["level"],
                    "rated": r["stars"] is not None, "stars": r["stars"],
                    "underlying_stars": r["underlying"], "score": r["score"],
                    "cause": r["cause"], "scheme_id": r["scheme_id"],
                    "scheme_version": r["scheme_version"],
                    "cycle_id": str(r["cycle_id"]) if r["cycle_id"] else None,
                    "breakdown": r["breakdown"], "updated_at": r["updated_at"].isoformat(),
                    "version": r["version"],
                    "problems": [{"problem_id": p["problem_id"], "kind": p["kind"],
                                  "description": p["description"],
                                  "downgrade_to": p["downgrade_to"], "status": p["status"],
                                  "rectification_due": p["rectification_due"].isoformat()
                                  if p["rectification_due"] else None, "plan": p["plan"]}
                                 for p in problems]}
        moment = parse_moment(as_of, "as_of")
        # One indexed lookup: the period in force, with the problems then in force.
        h = self.query_one(AS_OF_SQL, {"org": str(org_uuid), "at": moment})
        out = {"org_id": str(org_uuid), "as_of": moment.isoformat(),
               "rated": h is not None and h["stars_after"] is not None,
               "stars": h["stars_after"] if h else None, "score": h["score"] if h else None,
               "cause": h["cause"] if h else None,
               "scheme_id": h["scheme_id"] if h else None,
               "scheme_version": h["scheme_version"] if h else None,
               "cycle_id": str(h["cycle_id"]) if h and h["cycle_id"] else None,
               "breakdown": h["breakdown"] if h else None,
               "problems": h["problems"] if h else [],
               "since": h["valid_from"].isoformat() if h else None,  # in effect from
               "recorded_at": _iso(h["recorded_at"] or h["valid_from"]) if h else None,
               "version": h["version"] if h else None}
        if replay:
            caller.require_role(ORG_ADMIN, AUDITOR)
            if h is not None:
                out["replayed"] = self._rating_replayed(org_uuid, h, moment, out)
        return out

    def _rating_replayed(self, org_uuid, h: dict, moment: dt.datetime, read: dict) -> dict:
        """The as-of rating rebuilt from the rating's own events in the store: the
        stars of the version the read model names, the breakdown of the last cycle
        result or direct grading up to that version (a backfilled past result has
        none), the problems in force at the moment; whether each matches."""
        rating_id = Rating.id_for(org_uuid)
        state = self.repository.get(rating_id, version=h["version"])
        stars = state.stars if h["cause"] != "backfill" else \
            state.backfills[h["valid_from"].date().isoformat()]["stars"]
        breakdown, aggregate = None, None
        for e in self.events.get(rating_id):
            if e.originator_version <= h["version"] and isinstance(e, Rating.Changed) and \
                    e.cause in ("cycle", "direct_grading"):
                breakdown = e.breakdown
            if e.timestamp <= moment:
                aggregate = e.mutate(aggregate)
            elif e.originator_version > h["version"]:
                break
        if h["cause"] == "backfill":
            breakdown = None
        problems = replayed_problems(aggregate)
        return {"stars": stars, "score": state.score, "version": state.version,
                "breakdown": breakdown, "problems": problems,
                "matches": stars == h["stars_after"] and breakdown == read["breakdown"]
                and problems == read["problems"]}

    def rating_history(self, caller: Caller, org_id) -> list[dict]:
        caller.require_role(*ROLES)
        org_id = OrgRef.of(org_id=org_id).org_id
        return [{"version": h["version"], "stars_before": h["stars_before"],
                 "stars_after": h["stars_after"], "score": h["score"], "cause": h["cause"],
                 "scheme_id": h["scheme_id"], "scheme_version": h["scheme_version"],
                 "cycle_id": str(h["cycle_id"]) if h["cycle_id"] else None,
                 "actor": h["actor"], "reason": h["reason"], "evidence": h["evidence"],
                 "valid_from": h["valid_from"].isoformat(), "valid_to": _iso(h["valid_to"]),
                 "recorded_at": _iso(h["recorded_at"] or h["valid_from"])}
                for h in self.query("SELECT * FROM eval_rating_history WHERE org_id = %s "
                                    "ORDER BY valid_from, version", (str(org_id),))]

    def star_distribution(self, caller: Caller, college_id: str | None = None,
                          as_of: str | None = None) -> dict:
        """Per college and school-wide: share at ★4+ and the organisations at ★3
        and below (the seed's goal is to eliminate them), each number with the
        organisations behind it; with ``as_of``, over the organisations in being
        then (``dir_org_periods``: one dissolved since still counts, one created
        since does not, a branch moved since counts under the college it had
        then), each with the stars it had then (``eval_rating_history``)."""
        caller.require_role(ORG_ADMIN, AUDITOR, COLLEGE_SECRETARY)
        q = DistributionQuery.of(college_id=college_id, as_of=as_of)
        college_id, as_of = caller.college_scope(q.college_id, "distribution"), q.as_of
        params: dict = {"college": str(college_id) if college_id is not None else None}
        if as_of:
            params["at"] = moment = parse_moment(as_of, "as_of")
            orgs, ratings = f"({ORGS_AS_OF})", RATING_AS_OF
        else:
            orgs = ("(SELECT id, name, level, parent_id FROM dir_orgs "
                    "WHERE status = 'active' AND level = %(level)s)")
            ratings = "LEFT JOIN eval_ratings r ON r.org_id = o.id"
        branches_sql = (
            "SELECT o.id, o.name, o.level, o.parent_id, p.name AS college_name, r.stars, "
            f"r.score FROM {orgs} o "
            f"LEFT JOIN dir_orgs p ON p.id = o.parent_id {ratings}"
            + (" WHERE o.parent_id = %(college)s" if college_id is not None else "")
            + " ORDER BY p.name, o.name")
        statements = [(branches_sql, {**params, "level": 3})]
        if college_id is None:
            statements.append((f"SELECT o.id, o.name, o.level, r.stars, r.score FROM "
                               f"{orgs} o {ratings} ORDER BY o.name",
                               {**params, "level": 2}))
        # one round trip (a pipeline only where there are two statements)
        answers = self.queries(*statements) if len(statements) > 1 else \
            [self.query(*statements[0])]
        branches = answers[0]
        colleges: dict[str, list] = {}
        names: dict[str, str] = {}
        for b in branches:
            key = str(b["parent_id"])
            colleges.setdefault(key, []).append(b)
            names[key] = b["college_name"]
        result = {"branches": {"school": _distribution(branches),
                               "colleges": [{"college_id": k, "college_name": names[k],
                                             **_distribution(v)} for k, v in colleges.items()]}}
        if college_id is None:
            result["colleges"] = _distribution(answers[1])
        if as_of:
            result["as_of"] = moment.isoformat()
        return result

    def business_gauges(self) -> list[dict]:
        stars = self.query("SELECT coalesce(stars::text, 'unrated') AS s, level, count(*) AS n "
                           "FROM eval_ratings GROUP BY 1, 2")
        stages = self.query("SELECT stage, count(*) AS n FROM eval_assessments GROUP BY 1")
        problems = self.query("SELECT status, count(*) AS n FROM eval_problems "
                              "WHERE status <> 'verified' AND kind = 'major_problem' "
                              "GROUP BY 1")
        now = self.clock()
        overdue: dict[str, int] = {}
        for r in self.query(
                "SELECT a.stage, a.extensions, a.returned_from, a.reopened, c.deadlines "
                "FROM eval_assessments a JOIN eval_cycles c ON c.id = a.cycle_id "
                "WHERE a.stage IN ('self_assessment', 'review', 'approval')"):
            due = stage_due(r["stage"], r["deadlines"], r["extensions"], r["returned_from"],
                            r["reopened"])
            if due is not None and now > due:
                overdue[r["stage"]] = overdue.get(r["stage"], 0) + 1
        return [
            {"name": "lianchuang_open_appeals", "help": "Appeals (申诉) lodged and not yet decided",
             "labels": [], "samples": [((), sum(r["n"] for r in stages if r["stage"] == "appeal"))]},
            {"name": "lianchuang_overdue_assessments",
             "help": "Assessments past their stage deadline (逾期), by stage",
             "labels": ["stage"], "samples": [((k,), v) for k, v in overdue.items()]},
            {"name": "lianchuang_open_major_problems",
             "help": "Major problems (重大问题) whose rectification (整改) is not yet verified",
             "labels": ["status"], "samples": [((r["status"],), r["n"]) for r in problems]},
            {"name": "lianchuang_ratings", "help": "Organisations by star rating and level",
             "labels": ["stars", "level"],
             "samples": [((r["s"], str(r["level"])), r["n"]) for r in stars]},
            {"name": "lianchuang_assessments", "help": "Assessments by workflow stage",
             "labels": ["stage"], "samples": [((r["stage"],), r["n"]) for r in stages]},
        ]


# The rating period in force at %(at)s, with the problems (重大问题, and the
# rectification owed at ★3 and below) recorded by then and not verified by then,
# each at the stage it had reached then.
AS_OF_SQL = """
SELECT h.*, (
    SELECT coalesce(json_agg(json_build_object(
        'problem_id', p.problem_id, 'kind', p.kind, 'description', p.description,
        'downgrade_to', p.downgrade_to,
        'status', CASE WHEN p.completed_at <= %(at)s THEN 'completed'
                       WHEN p.planned_at <= %(at)s THEN 'planned' ELSE 'open' END,
        'rectification_due', p.rectification_due,
        'plan', CASE WHEN p.planned_at <= %(at)s THEN p.plan END)
        ORDER BY p.recorded_at, p.problem_id), '[]')
    FROM eval_problems p WHERE p.org_id = h.org_id AND p.recorded_at <= %(at)s
      AND (p.verified_at IS NULL OR p.verified_at > %(at)s)) AS problems
FROM eval_rating_history h WHERE h.org_id = %(org)s AND h.valid_from <= %(at)s
ORDER BY h.valid_from DESC, h.version DESC LIMIT 1"""


# Each organisation's stars at %(at)s: the period in force (as get_rating reads it,
# one index probe per organisation).
RATING_AS_OF = """
LEFT JOIN LATERAL (SELECT h.stars_after AS stars, h.score FROM eval_rating_history h
                   WHERE h.org_id = o.id AND h.valid_from <= %(at)s
                   ORDER BY h.valid_from DESC, h.version DESC LIMIT 1) r ON true"""


def replayed_problems(rating) -> list[dict]:
    """The problems in force in a replayed rating (``Rating``, or None), as the
    as-of read answers them."""
    if rating is None:
        return []
    return [{"problem_id": pid, "kind": p.get("kind", "major_problem"),
             "description": p["description"], "downgrade_to": p["downgrade_to"],
             "status": p["status"], "rectification_due": p["rectification_due"],
             "plan": p["plan"]}
            for pid, p in rating.problems.items() if p["status"] != "verified"]


def _iso(moment: dt.datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _ref(row: dict) -> dict:
    return {"org_id": str(row["id"]), "org_name": row["name"], "stars": row["stars"],
            "score": row["score"]}


def _distribution(rows: list[dict]) -> dict:
    rated = [r for r in rows if r["stars"] is not None]
    high = [_ref(r) for r in rated if r["stars"] >= 4]
    low = [_ref(r) for r in rated if r["stars"] <= 3]
    return {"organizations": len(rows), "rated": len(rated),
            "by_stars": {str(s): [_ref(r) for r in rated if r["stars"] == s]
                         for s in (5, 4, 3, 2, 1)},
            "four_or_above": {"count": len(high),
                              "share": round(len(high) / len(rated), 4) if rated else 0.0,
                              "organizations": high},
            "three_or_below": {"count": len(low), "organizations": low},
            "unrated": [_ref(r) for r in rows if r["stars"] is None]}
