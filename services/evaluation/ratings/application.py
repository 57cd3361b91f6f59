"""The assessment workflow (考评流程) of the ratings sub-domain (issue 3).

Who may do what (see docs/rpc.md):
* org_admin (组织部) publishes schemes, opens cycles, approves (审定), extends
  deadlines, grades directly (直接定级), decides appeals, verifies rectifications;
* a branch secretary submits its own branch's self-assessment (自评) and appeals;
* a college secretary reviews (审核) its own branches and submits its own
  college's self-assessment;
* any member of the university lodges objections (异议) during publicity, and
  组织部 decides each (``publicity.py``);
* org_admin or an auditor (纪委办) records a major problem (重大问题); auditors
  read everything.

``RatingsOperations`` gathers the sub-domain's use cases: schemes and cycles
(``cycles.py``), the workflow here, ratings and rectifications (``stars.py``), the
organisations owing a rectification (``rectifications.py``).
"""
from __future__ import annotations

import datetime as dt
import logging

from shared.domain import parse_moment
from shared.errors import Conflict, Forbidden, NotFound, ValidationError
from shared.identity import AUDITOR, BRANCH_SECRETARY, COLLEGE_SECRETARY, ORG_ADMIN, Caller
from services.evaluation.ratings.domain import STAGE_ZH, Assessment, Cycle, stage_due
from services.evaluation.ratings.commands import (SubmitEntries, ReturnAssessment, Approve,
                                                  ClosePublicity, ExtendDeadline, GradeDirectly,
                                                  Lodge, DecideAppeal, CycleRef, AssessmentRef)
from services.evaluation.schemes import DERIVATION_PROVIDERS, apply_quotas, check_entries, score
from services.evaluation.ratings.cycles import SYSTEM_ACTOR, CycleOperations
from services.evaluation.ratings.publicity import PublicityOperations
from services.evaluation.ratings.rectifications import RectificationsOwing
from services.evaluation.ratings.stars import StarRatings
from services.evaluation.ratings.trend import StarTrend

log = logging.getLogger(__name__)


class RatingsOperations(CycleOperations, PublicityOperations, StarRatings, StarTrend,
                        RectificationsOwing):
    """The ratings sub-domain's use cases, mixed into the evaluation application."""

    # -- the workflow ----------------------------------------------------------
    def _derive(self, a: Assessment, cycle: Cycle):
        """The derived indicators' values from records, asked once per submission."""
        answers: dict = {}
        context = {"cycle_id": str(cycle.id), "period": cycle.period, "asked": {}}

        def derive(indicator: dict):
            if indicator["code"] not in answers:
                provider = DERIVATION_PROVIDERS.get(indicator.get("source"))
                answers[indicator["code"]] = provider(a.org_id, context) if provider else None
            return answers[indicator["code"]]
        return derive

    def _entries(self, cmd: SubmitEntries, definition: dict, field_prefix: str = "",
                 derive=None) -> dict:
        entries = {"scores": dict(cmd.scores), "evidence": {k: list(v) for k, v in
                                                            cmd.evidence.items()},
                   "bonus": list(cmd.bonus), "deductions": list(cmd.deductions),
                   "vetoes": list(cmd.vetoes), "appraisal": cmd.appraisal}
        derived = None
        if derive is not None:
            derived = {}
            for ind in definition["indicators"]:
                if ind["scoring"] == "derived":
                    value = derive(ind)
                    if value is not None:
                        derived[ind["code"]] = value["explanation"] \
                            if isinstance(value, dict) else "from records"
        errors = check_entries(definition, entries, field_prefix, derived=derived)
        if errors:
            raise ValidationError(errors)
        return entries

    def _submit(self, caller: Caller, payload: dict, stage: str) -> dict:
        cmd = SubmitEntries.parse(payload)
        cycle = self._cycle(cmd.cycle_id)
        a = self._assessment(cycle, cmd.org_id, cmd.expected_version)
        if stage == "self_assessment":
            self._may_submit(caller, a)
        else:
            self._may_review(caller, a)
        definition = self._definition(cycle)
        derive = self._derive(a, cycle)
        entries = self._entries(cmd, definition, derive=derive)
        result = score(definition, entries, derive)
        a.submit(stage, entries, result, cycle, self.clock(), caller.as_actor(), cmd.comments,
                 entries["evidence"])
        return self.commit(a, result=lambda: self._assessment_out(a, cycle))

    def submit_self_assessment(self, caller: Caller, payload: dict) -> dict:
        """自评: the organisation's secretary submits scores, evidence, comments."""
        return self._submit(caller, payload, "self_assessment")

    def submit_review(self, caller: Caller, payload: dict) -> dict:
        """审核: the level above scores it (self-assessment scores are kept beside)."""
        return self._submit(caller, payload, "review")

    def _change(self, cmd, act, expected_version: int | None = None) -> dict:
        """Load the assessment named by ``cmd``, let ``act`` check and change it,
        save (a concurrent change is a Conflict) and return it."""
        cycle = self._cycle(cmd.cycle_id)
        a = self._assessment(cycle, cmd.org_id, expected_version)
        act(a)
        return self.commit(a, result=lambda: self._assessment_out(a, cycle))

    def return_assessment(self, caller: Caller, payload: dict) -> dict:
        cmd = ReturnAssessment.parse(payload)

        def act(a: Assessment):
            if a.stage == "review":
                self._may_review(caller, a)
            else:
                caller.require_role(ORG_ADMIN)
            a.return_(cmd.comments, caller.as_actor())
        return self._change(cmd, act, cmd.expected_version)

    def extend_deadline(self, caller: Caller, payload: dict) -> dict:
        caller.require_role(ORG_ADMIN)
        cmd = ExtendDeadline.parse(payload)
        until = parse_moment(cmd.until, "until")
        return self._change(cmd, lambda a: a.extend(cmd.stage, until, self.clock(),
                                                     caller.as_actor(), cmd.reason))

    def approve(self, caller: Caller, payload: dict) -> dict:
        """审定 a batch: final score = the review's; stars from the bands, vetoes,
        then the quota caps ranked over the batch (slots used by earlier
        approvals in the same group count); a direct grading overrides."""
        caller.require_role(ORG_ADMIN)
        cmd = Approve.parse(payload)
        cycle = self._cycle(cmd.cycle_id)
        definition = self._definition(cycle)
        batch = []
        errors = []
        for i, org_id in enumerate(dict.fromkeys(cmd.org_ids)):
            try:
                a = self._assessment(cycle, org_id)
            except NotFound as exc:
                errors.append({"field": f"org_ids[{i}]", "message": str(exc)})
                continue
            if a.stage != "approval":
                errors.append({"field": f"org_ids[{i}]",
                               "message": f"{a.org_name} is at {STAGE_ZH[a.stage]}"})
            batch.append(a)
        if errors:
            raise ValidationError(errors)
        candidates = [{"org_id": a.org_id, "score": a.reviewed["score"],
                       "stars": a.reviewed["stars"], "group": a.college_id or "school"}
                      for a in batch if a.direct_grade is None]
        outcome = apply_quotas(definition, candidates, *self._quota_groups(cycle, definition))
        now = self.clock()
        for a in batch:
            verdict = outcome.get(a.org_id, {"stars": a.reviewed["stars"], "notes": []})
            a.approve(a.reviewed["score"], verdict["stars"], verdict["notes"], cycle, now,
                      caller.as_actor(), cmd.reason)
        return self.commit(*batch, result=lambda: {"approved": [self._assessment_out(a, cycle) for a in batch]})

    def _quota_groups(self, cycle: Cycle, definition: dict) -> tuple[dict, dict]:
        sizes = {"school": 0}
        for r in self.query("SELECT coalesce(college_id::text, 'school') AS g, count(*) AS n "
                            "FROM eval_assessments WHERE cycle_id = %s AND stage <> 'dropped' "
                            "GROUP BY 1", (str(cycle.id),)):
            sizes[r["g"]] = sizes.get(r["g"], 0) + r["n"]
            if r["g"] != "school":
                sizes["school"] += r["n"]
        taken = {}
        for quota in definition["quotas"]:
            for r in self.query(
                    "SELECT coalesce(college_id::text, 'school') AS g, count(*) AS n "
                    "FROM eval_assessments WHERE cycle_id = %s AND direct_stars IS NULL AND "
                    "stage IN ('publicity', 'final', 'appeal') AND stars >= %s GROUP BY 1",
                    (str(cycle.id), quota["min_stars"])):
                key = r["g"] if quota["scope"] == "college" else "school"
                taken[(key, quota["min_stars"])] = taken.get((key, quota["min_stars"]), 0) + r["n"]
        return sizes, taken

    def close_publicity(self, caller: Caller, payload: dict) -> dict:
        """公示 over: results become final and each organisation's rating changes."""
        caller.require_role(ORG_ADMIN)
        cmd = ClosePublicity.parse(payload)
        cycle = self._cycle(cmd.cycle_id)
        definition = self._definition(cycle)
        now = self.clock()
        changed = []
        for org_id in dict.fromkeys(cmd.org_ids):
            changed += self._finalise(cycle, definition, org_id, now, caller.as_actor(),
                                      cmd.reason)
        return self.commit(*changed, result=lambda: {"final": [self._assessment_out(a, cycle) for a in changed[::2]]})

    def _finalise(self, cycle: Cycle, definition: dict, org_id, now: dt.datetime,
                  actor: dict, reason) -> list:
        """Close one organisation's publicity and apply its result to its rating
        (both saved together by the caller)."""
        a = self._assessment(cycle, org_id)
        a.close_publicity(now, cycle, actor, reason)
        rating = self._rating(a.org_id, a.org_name, a.level)
        cause = "direct_grading" if a.direct_grade else "cycle"
        rating.apply_result(a.stars, a.score, cause, str(cycle.id), cycle.scheme_id,
                            cycle.scheme_version, self._result_breakdown(a), now.date(),
                            definition["major_problem"]["rectification_days"], actor,
                            reason=a.result_reason(f"{cycle.name} 考评结果"),
                            evidence=a.result_evidence())
        return [a, rating]

    def close_expired_publicity(self, limit: int = 200) -> int:
        """Timer: results whose 公示 window has ended become final without anyone
        having to click (actor: system). Each organisation is saved on its own,
        so one that another instance closed first (Conflict) does not hold up
        the rest."""
        now = self.clock()
        closed = 0
        rows = self.query("SELECT cycle_id, org_id FROM eval_assessments WHERE stage = "
                          "'publicity' AND publicity_ends_at <= %s AND open_objections = 0 "
                          "ORDER BY cycle_id LIMIT %s",
                          (now, limit))
        cycles: dict = {}
        for row in rows:
            if row["cycle_id"] not in cycles:
                cycle = self._cycle(row["cycle_id"])
                cycles[row["cycle_id"]] = (cycle, self._definition(cycle))
            cycle, definition = cycles[row["cycle_id"]]
            try:
                self.commit(*self._finalise(cycle, definition, row["org_id"], now, SYSTEM_ACTOR,
                                            "公示期满 publicity window ended"))
                closed += 1
            except (Conflict, ValidationError) as exc:
                log.info("publicity of %s not closed: %s", row["org_id"], exc)
        return closed

    def _result_breakdown(self, a: Assessment) -> dict:
        return {**(a.reviewed or {}), "stars": a.stars, "quota_notes": a.quota_notes,
                "self_assessment": {k: (a.results.get("self_assessment") or {}).get(k)
                                    for k in ("score", "stars")},
                "direct_grade": a.direct_grade}

    def grade_directly(self, caller: Caller, payload: dict) -> dict:
        """直接定级: org_admin sets the stars, only with a reason and evidence."""
        caller.require_role(ORG_ADMIN)
        cmd = GradeDirectly.parse(payload)
        cycle = self._cycle(cmd.cycle_id)
        a = self._assessment(cycle, cmd.org_id)
        a.grade_directly(cmd.stars, caller.as_actor(), cmd.reason, list(cmd.evidence))
        pending = [a]
        if a.stage == "final":
            definition = self._definition(cycle)
            rating = self._rating(a.org_id, a.org_name, a.level)
            rating.apply_result(cmd.stars, a.score, "direct_grading", str(cycle.id),
                                cycle.scheme_id, cycle.scheme_version, self._result_breakdown(a),
                                self.clock().date(),
                                definition["major_problem"]["rectification_days"],
                                caller.as_actor(), cmd.reason, list(cmd.evidence))
            pending.append(rating)
        return self.commit(*pending, result=lambda: self._assessment_out(a, cycle))

    def lodge_appeal(self, caller: Caller, payload: dict) -> dict:
        """申诉: the organisation's secretary appeals within the window after final."""
        cmd = Lodge.parse(payload)

        def act(a: Assessment):
            if not self._is_secretary_of(caller, a):
                raise Forbidden(f"only the secretary of {a.org_name} may appeal its result")
            a.lodge_appeal(cmd.text, self.clock(), caller.as_actor())
        return self._change(cmd, act)

    def decide_appeal(self, caller: Caller, payload: dict) -> dict:
        caller.require_role(ORG_ADMIN)
        cmd = DecideAppeal.parse(payload)
        return self._change(cmd, lambda a: a.decide_appeal(cmd.decision, caller.as_actor(),
                                                           cmd.reason))

    # -- reading the workflow ------------------------------------------------------
    def _assessment_out(self, a: Assessment, cycle: Cycle) -> dict:
        due = a.due(a.stage, cycle)
        return {"cycle_id": str(cycle.id), "org_id": a.org_id, "org_name": a.org_name,
                "level": a.level, "college_id": a.college_id, "stage": a.stage,
                "stage_zh": STAGE_ZH[a.stage], "version": a.version,
                "due": due.isoformat() if due else None,
                "self_assessment": {"entries": a.entries.get("self_assessment"),
                                    "result": a.results.get("self_assessment")},
                "review": {"entries": a.entries.get("review"), "result": a.results.get("review")},
                "score": a.score, "stars": a.stars, "quota_notes": a.quota_notes,
                "direct_grade": a.direct_grade,
                "extensions": a.extensions, "returns": a.returns,
                "objections": a.objections, "publicity_ends_at": a.publicity_ends_at,
                "final_at": a.final_at, "appeal_until": a.appeal_until, "appeal": a.appeal,
                "scheme_id": cycle.scheme_id, "scheme_version": cycle.scheme_version}

    def get_assessment(self, caller: Caller, cycle_id, org_id) -> dict:
        query = AssessmentRef.of(cycle_id=cycle_id, org_id=org_id)
        cycle_id, org_id = query.cycle_id, str(query.org_id)
        cycle = self._cycle(cycle_id)
        a = self._assessment(cycle, org_id)
        self._may_read_assessment(caller, a)
        return self._assessment_out(a, cycle)

    def progress_board(self, caller: Caller, cycle_id) -> dict:
        """Which organisation is at which stage, and who is overdue."""
        caller.require_role(ORG_ADMIN, AUDITOR, COLLEGE_SECRETARY, BRANCH_SECRETARY)
        cycle = self._cycle(CycleRef.of(cycle_id=cycle_id).cycle_id)
        sql = "SELECT * FROM eval_assessments WHERE cycle_id = %s"
        params: list = [str(cycle.id)]
        if caller.role == COLLEGE_SECRETARY:
            sql += " AND (college_id = %s OR org_id = %s)"
            params += [caller.org, caller.org]
        elif caller.role == BRANCH_SECRETARY:
            sql += " AND org_id = %s"
            params.append(caller.org)
        now = self.clock()
        rows, by_stage, overdue = [], {}, []
        for r in self.query(sql + " ORDER BY org_name", params):
            due = stage_due(r["stage"], cycle.deadlines, r["extensions"], r["returned_from"],
                            r["reopened"])
            late = due is not None and now > due
            row = {"org_id": str(r["org_id"]), "org_name": r["org_name"],
                   "college_id": str(r["college_id"]) if r["college_id"] else None,
                   "stage": r["stage"], "stage_zh": STAGE_ZH[r["stage"]],
                   "due": due.isoformat() if due else None, "overdue": late,
                   "self_score": r["self_score"], "review_score": r["review_score"],
                   "score": r["score"], "stars": r["stars"], "returns": r["returns"],
                   "objections": r["objections"], "extensions": r["extensions"],
                   "version": r["version"]}
            rows.append(row)
            by_stage.setdefault(r["stage"], []).append(row["org_id"])
            if late:
                overdue.append({"org_id": row["org_id"], "org_name": row["org_name"],
                                "stage": r["stage"], "due": row["due"]})
        return {"cycle_id": str(cycle.id), "name": cycle.name, "deadlines": cycle.deadlines,
                "as_of": now.isoformat(), "organizations": rows,
                "by_stage": {s: {"count": len(v), "org_ids": v} for s, v in by_stage.items()},
                "overdue": overdue}
