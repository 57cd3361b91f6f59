"""A complete 公示 (publicity): the school-wide list of a cycle's published
results, objections (异议) from any member of the university, and 组织部's
decision on each (upheld → back to review 审核; dismissed, with the reason),
which the objector is told of (``assessment_objection_decided``)."""
from __future__ import annotations

from shared.errors import Forbidden
from shared.identity import (AUDITOR, BRANCH_SECRETARY, COLLEGE_SECRETARY, MEMBER, ORG_ADMIN,
                             Caller)
from services.evaluation.ratings.commands import AssessmentRef, CycleRef, DecideObjection, Lodge
from services.evaluation.ratings.domain import STAGE_ZH
from services.evaluation.schemes import stars_for

# Who reads the 公示 list while a window is open: anyone whose token names an
# active member of the university (a secretary is a member too).
MEMBER_ROLES = (MEMBER, BRANCH_SECRETARY, COLLEGE_SECRETARY)
PUBLISHED = ("publicity", "final", "appeal")


class PublicityOperations:
    """公示 and 异议, mixed into the evaluation application."""

    def _university_member(self, caller: Caller) -> dict | None:
        """The caller's member row when the token names an active member."""
        if caller.role not in MEMBER_ROLES or not caller.sub:
            return None
        return self.query_one("SELECT id, branch_id FROM dir_members WHERE id::text = %s "
                              "AND active", (caller.sub,))

    def lodge_objection(self, caller: Caller, payload: dict) -> dict:
        """异议: any member of the university objects to a result during its 公示."""
        caller.require_role(MEMBER)
        cmd = Lodge.parse(payload)
        cycle = self._cycle(cmd.cycle_id)
        a = self._assessment(cycle, cmd.org_id)
        if self._university_member(caller) is None:
            raise Forbidden("objections (异议) are lodged by members of the university; "
                            "your token names no active member")
        a.lodge_objection(cmd.text, self.clock(), caller.as_actor())
        return self.commit(a, result=lambda: {
            "cycle_id": str(cycle.id), "org_id": a.org_id, "objections": len(a.objections),
            "objection_no": len(a.objections), "publicity_ends_at": a.publicity_ends_at})

    def decide_objection(self, caller: Caller, payload: dict) -> dict:
        """组织部 decides one objection: upheld sends the result back to review
        (审核); dismissed keeps it. Actor, time and reason are recorded."""
        caller.require_role(ORG_ADMIN)
        cmd = DecideObjection.parse(payload)
        return self._change(cmd, lambda a: a.decide_objection(
            cmd.objection_no, cmd.decision, caller.as_actor(), cmd.reason,
            list(cmd.evidence) if cmd.evidence else None))

    def publicity_board(self, caller: Caller, cycle_id) -> dict:
        """The school-wide 公示 list of a cycle: every organisation's published
        result (stars, score, the score's band) and its window. org_admin and
        auditors read it any time (with results already final); any member of the
        university reads the results whose window is open."""
        cycle = self._cycle(CycleRef.of(cycle_id=cycle_id).cycle_id)
        if caller.role in (ORG_ADMIN, AUDITOR):
            stages, window_only = list(PUBLISHED), False
        elif self._university_member(caller) is not None:
            stages, window_only = ["publicity"], True
        else:
            raise Forbidden("the 公示 list is read by members of the university during the "
                            "publicity window, and by 组织部 and auditors")
        now = self.clock()
        sql = ("SELECT a.org_id, a.org_name, a.level, a.college_id, p.name AS college_name, "
               "a.stage, a.score, a.stars, a.direct_stars, a.publicity_ends_at, a.final_at, "
               "a.objections, a.open_objections FROM eval_assessments a "
               "LEFT JOIN dir_orgs p ON p.id = a.college_id "
               "WHERE a.cycle_id = %s AND a.stage = ANY(%s)")
        params: list = [str(cycle.id), stages]
        if window_only:
            sql += " AND a.publicity_ends_at > %s"
            params.append(now)
        rows = self.query(sql + " ORDER BY p.name NULLS FIRST, a.stars DESC, a.score DESC, "
                          "a.org_name", params)
        if window_only and not rows:
            raise Forbidden(f"no result of {cycle.name} is in its 公示 window now; members "
                            "read the list while the window is open")
        definition = self._definition(cycle)
        bands = {b["stars"]: b for b in definition["bands"]}
        out = []
        for r in rows:
            band = bands.get(stars_for(definition, r["score"])) if r["score"] is not None \
                else None
            out.append({
                "org_id": str(r["org_id"]), "org_name": r["org_name"], "level": r["level"],
                "college_id": str(r["college_id"]) if r["college_id"] else None,
                "college_name": r["college_name"], "stage": r["stage"],
                "stage_zh": STAGE_ZH[r["stage"]], "stars": r["stars"], "score": r["score"],
                "band": {"stars": band["stars"], "min": band["min"], "max": band["max"]}
                if band else None,
                "direct_grading": r["direct_stars"] is not None,
                "publicity_ends_at": r["publicity_ends_at"].isoformat()
                if r["publicity_ends_at"] else None,
                "final_at": r["final_at"].isoformat() if r["final_at"] else None,
                "objections": r["objections"], "open_objections": r["open_objections"]})
        return {"cycle_id": str(cycle.id), "name": cycle.name, "level": cycle.level,
                "period": cycle.period, "as_of": now.isoformat(), "organizations": out}

    # -- objections ------------------------------------------------------------------
    def _objection_out(self, r: dict, with_objector: bool) -> dict:
        out = {"cycle_id": str(r["cycle_id"]), "org_id": str(r["org_id"]),
               "org_name": r["org_name"], "objection_no": r["objection_no"],
               "text": r["text"], "lodged_at": r["lodged_at"].isoformat(),
               "status": r["status"],
               "decision": None if r["status"] == "open" else {
                   "decision": r["status"], "by": r["decided_by"],
                   "at": r["decided_at"].isoformat(), "reason": r["reason"]}}
        if with_objector:
            out["objector"] = r["objector"]
        return out

    def open_objections(self, caller: Caller, cycle_id) -> dict:
        """The objections of a cycle awaiting 组织部's decision, oldest first."""
        caller.require_role(ORG_ADMIN, AUDITOR)
        cycle = self._cycle(CycleRef.of(cycle_id=cycle_id).cycle_id)
        rows = self.query("SELECT * FROM eval_objections WHERE cycle_id = %s AND "
                          "status = 'open' ORDER BY lodged_at, org_name, objection_no",
                          (str(cycle.id),))
        return {"cycle_id": str(cycle.id), "name": cycle.name, "count": len(rows),
                "objections": [self._objection_out(r, True) for r in rows]}

    def assessment_objections(self, caller: Caller, cycle_id, org_id) -> dict:
        """One result's objections with their decisions. 组织部 and auditors read
        all of them (with the objector); a member reads their own."""
        query = AssessmentRef.of(cycle_id=cycle_id, org_id=org_id)
        cycle = self._cycle(query.cycle_id)
        a = self._assessment(cycle, str(query.org_id))
        sql = "SELECT * FROM eval_objections WHERE cycle_id = %s AND org_id = %s"
        params: list = [str(cycle.id), a.org_id]
        if caller.role not in (ORG_ADMIN, AUDITOR):
            caller.require_role(MEMBER)
            sql += " AND objector = %s"
            params.append(caller.sub)
        rows = self.query(sql + " ORDER BY objection_no", params)
        return {"cycle_id": str(cycle.id), "org_id": a.org_id, "org_name": a.org_name,
                "stage": a.stage, "objections": [
                    self._objection_out(r, caller.role in (ORG_ADMIN, AUDITOR)) for r in rows]}
