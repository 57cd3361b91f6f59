"""Linkage rules (联动规则) in evaluation: R1 caps, R2 nominations, R3/R4 reports.

Who may do what:
* R1's 创建未达标 comes from the creation programme (a candidacy moved to 未达标
  that year, services/evaluation/programme) or is recorded by org_admin
  (``record_creation_failed``, e.g. a failure outside the programme's tiers);
  org_admin proposes any organisation's 述职评议 grade,
  reviews and awards nominations; a college secretary proposes its branches'
  grades and nominates within its college; a branch secretary nominates its
  members and its branch;
* auditors (纪委办) read everything; the organisation's secretaries read its
  review; reports are for org_admin, auditors and college secretaries (their
  college).
"""
from __future__ import annotations

import datetime as dt
from typing import Literal, Optional
from uuid import UUID, uuid4

from pydantic import Field

from shared.commands import Command, Evidence, Key, Query, Reason, RequiredReason
from shared.errors import Forbidden, NotFound, ValidationError
from shared.identity import AUDITOR, BRANCH_SECRETARY, COLLEGE_SECRETARY, ORG_ADMIN, Caller
from services.evaluation.linkage.domain import (AnnualReview, Nomination, capped_grade,
                                                eligibility, load_rules, r1_conditions)

class CreationFailed(Command):
    org_id: UUID
    year: int = Field(ge=2000, le=2200)
    reason: RequiredReason
    evidence: Optional[Evidence] = None


class ProposeGrade(Command):
    org_id: UUID
    year: int = Field(ge=2000, le=2200)
    grade: Key
    reason: Optional[Reason] = None


class Nominate(Command):
    kind: Key
    subject_id: UUID
    year: int = Field(ge=2000, le=2200)
    reason: Optional[Reason] = None


class ReviewNomination(Command):
    nomination_id: UUID
    decision: Literal["approve", "return"]
    reason: RequiredReason


class AwardNomination(Command):
    nomination_id: UUID
    reason: Optional[Reason] = None


class AnnualReviewRef(Query):
    org_id: UUID
    year: int = Field(ge=2000, le=2200)


class NominationRef(Query):
    nomination_id: UUID


class NominationsQuery(Query):
    year: int = Field(ge=2000, le=2200)


class Report(Command):
    year: int = Field(ge=2000, le=2200)
    college_id: Optional[UUID] = None


class Linkage:
    """The linkage part of the evaluation application (``app.linkage``)."""

    def __init__(self, app):
        self.app = app
        self.rules = load_rules()

    # -- facts ---------------------------------------------------------------------------
    def _org(self, org_id, field: str = "org_id") -> dict:
        org = self.app.directory.org(org_id)
        if org is None:
            raise NotFound(f"{field}: organisation {org_id} is not known to evaluation")
        return org

    def stars_at_close(self, org_id, year: int) -> int | None:
        """The rating in force at the year's close (now, for a year not yet over)."""
        close = dt.datetime(year + 1, 1, 1, tzinfo=dt.timezone.utc)
        row = self.app.query_one(
            "SELECT stars_after FROM eval_rating_history WHERE org_id = %s AND valid_from < %s "
            "ORDER BY valid_from DESC, version DESC LIMIT 1", (str(org_id), close))
        return row["stars_after"] if row else None

    def major_problems(self, org_id, year: int) -> list[dict]:
        return self.app.query(
            "SELECT problem_id, description, recorded_at FROM eval_problems WHERE org_id = %s "
            "AND kind = 'major_problem' AND extract(year FROM recorded_at) = %s "
            "ORDER BY recorded_at", (str(org_id), year))

    def programme_failures(self, org_id, year: int) -> list[dict]:
        """创建未达标 from the creation programme: candidacies of the organisation
        that moved to 未达标 (failed) that year, each with its reason."""
        return [{"reason": f"{r['title']} {r['tier']} 验收未达标 on {r['on_date']}: "
                           f"{r['reason']}"}
                for r in self.app.query(
                    "SELECT m.on_date, m.reason, c.title, c.tier FROM prog_candidacy_moves m "
                    "JOIN prog_candidacies c ON c.id = m.candidacy_id WHERE m.org_id = %s "
                    "AND m.to_stage = 'failed' AND extract(year FROM m.on_date) = %s "
                    "ORDER BY m.on_date", (str(org_id), year))]

    def _review(self, org: dict, year: int) -> AnnualReview:
        review_id = AnnualReview.id_for(org["id"], year)
        if self.app.exists(review_id):
            return self.app.load(review_id, AnnualReview, "annual review")
        return AnnualReview(id=review_id, org_id=str(org["id"]), org_name=org["name"], year=year)

    def _scope(self, caller: Caller, org: dict, branch_secretary: bool = False) -> None:
        if caller.role == ORG_ADMIN:
            return
        college = self.app.directory.college_of(org["id"])
        if caller.role == COLLEGE_SECRETARY and org["level"] == 3 and caller.org == college:
            return
        if branch_secretary and caller.role == BRANCH_SECRETARY and org["level"] == 3 \
                and caller.org == str(org["id"]):
            return
        raise Forbidden("only 组织部 (org_admin), or a college secretary for its own branches, "
                        "may do this")

    # -- R1 -------------------------------------------------------------------------------
    def record_creation_failed(self, caller: Caller, payload: dict) -> dict:
        """创建未达标, recorded by 组织部 with its reason (R1's first condition)."""
        caller.require_role(ORG_ADMIN)
        cmd = CreationFailed.parse(payload)
        org = self._org(cmd.org_id)
        review = self._review(org, cmd.year)
        review.record_creation_failed(cmd.reason, caller.as_actor(), cmd.evidence)
        return self.app.commit(review, result=lambda: self.get_annual_review(
            caller, cmd.org_id, cmd.year))

    def propose_grade(self, caller: Caller, payload: dict) -> dict:
        """A reviewer proposes the 述职评议 grade; R1 caps it, naming every condition."""
        cmd = ProposeGrade.parse(payload)
        org = self._org(cmd.org_id)
        if org["level"] not in (2, 3):
            raise ValidationError.single("org_id", "述职评议 caps (R1) apply to colleges and "
                                         "branches")
        self._scope(caller, org)
        review = self._review(org, cmd.year)
        conditions = r1_conditions(self.rules, cmd.year, self.stars_at_close(org["id"], cmd.year),
                                   self.programme_failures(org["id"], cmd.year)
                                   + review.creation_failures,
                                   self.major_problems(org["id"], cmd.year))
        capped = capped_grade(self.rules, cmd.grade, conditions)
        responsible = [{"member_id": str(h["id"]), "name": h["name"], "role": role}
                       for role in ("secretary", "deputy_secretary")
                       for h in self.app.directory.holders(org["id"], role)]
        review.propose(cmd.grade, capped, conditions, responsible, self.rules["r1"]["grades"],
                       caller.as_actor(), cmd.reason)
        return self.app.commit(review, result=lambda: self.get_annual_review(
            caller, cmd.org_id, cmd.year))

    def get_annual_review(self, caller: Caller, org_id, year: int) -> dict:
        query = AnnualReviewRef.of(org_id=org_id, year=year)
        org_id, year = query.org_id, query.year
        org = self._org(org_id)
        if caller.role not in (ORG_ADMIN, AUDITOR) and caller.org not in (
                str(org["id"]), self.app.directory.college_of(org["id"])):
            raise Forbidden("an organisation's 述职评议 is read by its secretaries, its "
                            "college's, 组织部 and 纪委办")
        row = self.app.query_one("SELECT * FROM lk_reviews WHERE org_id = %s AND year = %s",
                                 (str(org["id"]), int(year)))
        if row is None:
            raise NotFound(f"no 述职评议 of {org['name']} for {year}")
        grades = self.rules["r1"]["grades"]
        return {"org_id": str(row["org_id"]), "org_name": row["org_name"], "year": row["year"],
                "creation_failures": row["creation_failures"], "proposed": row["proposed"],
                "proposed_zh": grades.get(row["proposed"]), "grade": row["grade"],
                "grade_zh": grades.get(row["grade"]), "capped": row["capped"],
                "conditions": row["conditions"],
                "annual_excellent_eligible": row["annual_excellent_eligible"],
                "responsible": row["responsible"], "proposals": row["proposals"]}

    # -- R2 -----------------------------------------------------------------------------------
    def _member_facts(self, member_id: str, year: int) -> dict:
        appraisal = self.app.query_one(
            "SELECT details->>'grade' AS grade FROM pi_records WHERE member_id = %s AND "
            "kind = 'appraisal' AND year = %s", (member_id, year))
        violations = self.app.query(
            "SELECT record_id, details->>'description' AS description FROM pi_records "
            "WHERE member_id = %s AND kind = 'violation' AND year = %s", (member_id, year))
        index = self.app.query_one("SELECT score FROM pi_indices WHERE member_id = %s AND "
                                   "year = %s", (member_id, year))
        if index is not None:
            score = index["score"]
        else:
            computed = self.app.members.compute_all(year, member_ids=[member_id])
            score = computed[member_id][0]["score"] if member_id in computed else None
        roles = [r["role"] for r in self.app.query(
            "SELECT role FROM dir_roles WHERE member_id = %s", (member_id,))]
        return {"appraisal": appraisal["grade"] if appraisal else None,
                "violations": violations, "index": score, "roles": roles}

    def nominate(self, caller: Caller, payload: dict) -> dict:
        """Nominate for 两优一先; eligibility is checked now, from the records; a
        refusal is recorded and names every failed condition."""
        cmd = Nominate.parse(payload)
        kinds = self.rules["r2"]["kinds"]
        if cmd.kind not in kinds:
            raise ValidationError.single("kind", "one of " + ", ".join(
                f"{k} ({v['name']})" for k, v in kinds.items()))
        rule = kinds[cmd.kind]
        subject_id = str(cmd.subject_id)
        if rule["subject"] == "organization":
            org = self._org(subject_id, "subject_id")
            if org["level"] not in (2, 3):
                raise ValidationError.single("subject_id", f"{rule['name']} is a college or "
                                             "branch Party organisation")
            name, scope_org = org["name"], org
            facts = {"stars": self.stars_at_close(subject_id, cmd.year),
                     "major_problems": self.major_problems(subject_id, cmd.year)}
        else:
            member = self.app.query_one("SELECT * FROM dir_members WHERE id = %s", (subject_id,))
            if member is None or member["branch_id"] is None:
                raise NotFound(f"subject_id: member {subject_id} is not known to evaluation")
            name, scope_org = member["name"], self._org(member["branch_id"])
            facts = self._member_facts(subject_id, cmd.year)
        self._scope(caller, scope_org, branch_secretary=True)
        nomination = Nomination(id=uuid4(), kind=cmd.kind, kind_zh=rule["name"],
                                subject_type=rule["subject"], year=cmd.year,
                                subject_id=subject_id, subject_name=name,
                                org_id=str(scope_org["id"]), actor=caller.as_actor(),
                                reason=cmd.reason)
        failed = eligibility(rule, facts)
        if failed:
            nomination.refuse(failed, caller.as_actor())
        return self.app.commit(nomination, result=lambda: self.get_nomination(
            caller, nomination.id))

    def _nomination(self, nomination_id) -> Nomination:
        return self.app.load(nomination_id, Nomination, "nomination")

    def review_nomination(self, caller: Caller, payload: dict) -> dict:
        caller.require_role(ORG_ADMIN)
        cmd = ReviewNomination.parse(payload)
        nomination = self._nomination(cmd.nomination_id)
        nomination.review(cmd.decision == "approve", caller.as_actor(), cmd.reason)
        return self.app.commit(nomination, result=lambda: self.get_nomination(
            caller, nomination.id))

    def award_nomination(self, caller: Caller, payload: dict) -> dict:
        caller.require_role(ORG_ADMIN)
        cmd = AwardNomination.parse(payload)
        nomination = self._nomination(cmd.nomination_id)
        nomination.award(caller.as_actor(), cmd.reason)
        return self.app.commit(nomination, result=lambda: self.get_nomination(
            caller, nomination.id))

    def get_nomination(self, caller: Caller, nomination_id) -> dict:
        nomination_id = NominationRef.of(nomination_id=nomination_id).nomination_id
        row = self.app.query_one("SELECT * FROM lk_nominations WHERE id = %s",
                                 (str(nomination_id),))
        if row is None:
            raise NotFound(f"nomination {nomination_id} not found")
        if caller.role not in (ORG_ADMIN, AUDITOR):
            self._scope(caller, self._org(row["org_id"]), branch_secretary=True)
        return _nomination_out(row, self.rules)

    def list_nominations(self, caller: Caller, year: int) -> list[dict]:
        caller.require_role(ORG_ADMIN, AUDITOR, COLLEGE_SECRETARY, BRANCH_SECRETARY)
        year = NominationsQuery.of(year=year).year
        rows = self.app.query("SELECT * FROM lk_nominations WHERE year = %s "
                              "ORDER BY kind, subject_name", (year,))
        if caller.role in (COLLEGE_SECRETARY, BRANCH_SECRETARY):
            rows = [r for r in rows if caller.org in (
                str(r["org_id"]), self.app.directory.college_of(r["org_id"]))]
        return [_nomination_out(r, self.rules) for r in rows]

    # -- R3 / R4 ---------------------------------------------------------------------------------
    def _report_scope(self, caller: Caller, cmd: Report) -> str | None:
        caller.require_role(ORG_ADMIN, AUDITOR, COLLEGE_SECRETARY)
        return caller.college_scope(cmd.college_id, "report")

    def _teachers(self, college_id: str | None) -> list[dict]:
        sql = ("SELECT m.id::text AS member_id, m.name, b.id::text AS branch_id, "
               "b.name AS branch_name, c.id::text AS college_id, c.name AS college_name "
               "FROM dir_members m JOIN dir_orgs b ON b.id = m.branch_id "
               "JOIN dir_orgs c ON c.id = b.parent_id "
               "WHERE m.active AND m.category = 'teacher'")
        params: tuple = ()
        if college_id:
            sql += " AND c.id = %s"
            params = (college_id,)
        return self.app.query(sql + " ORDER BY c.name, b.name, m.name", params)

    @staticmethod
    def _by_college(teachers: list[dict], ok: set[str]) -> list[dict]:
        colleges: dict[str, dict] = {}
        for t in teachers:
            c = colleges.setdefault(t["college_id"], {
                "college_id": t["college_id"], "college_name": t["college_name"],
                "teachers": 0, "meeting": 0, "lacking": []})
            c["teachers"] += 1
            if t["member_id"] in ok:
                c["meeting"] += 1
            else:
                c["lacking"].append({k: t[k] for k in ("member_id", "name", "branch_id",
                                                       "branch_name")})
        return list(colleges.values())

    def r3_report(self, caller: Caller, payload: dict) -> dict:
        """R3 (四.4): party-member teachers without a 项目攻坚团队 this year."""
        cmd = Report.parse(payload)
        college = self._report_scope(caller, cmd)
        teachers = self._teachers(college)
        in_team = {r["m"] for r in self.app.query(
            "SELECT DISTINCT member_id::text AS m FROM pi_records WHERE kind = 'team' "
            "AND year = %s", (cmd.year,))}
        colleges = self._by_college(teachers, in_team)
        for c in colleges:
            c["in_team"] = c.pop("meeting")
            c["without_team"] = c.pop("lacking")
        total = sum(c["teachers"] for c in colleges)
        joined = sum(c["in_team"] for c in colleges)
        return {"year": cmd.year, "rule": "R3 每名党员教师每年至少参加1个项目攻坚团队",
                "school": {"teachers": total, "in_team": joined,
                           "without_team": total - joined},
                "colleges": colleges}

    def r4_report(self, caller: Caller, payload: dict) -> dict:
        """R4 (四.6): the share of party-member teachers with a completed 课程思政
        demonstration project (professional course) against the goal of about half.
        The directory does not know who teaches a professional course, so the base
        is every party-member teacher; a project names whether its course is one."""
        cmd = Report.parse(payload)
        college = self._report_scope(caller, cmd)
        teachers = self._teachers(college)
        done = {r["m"] for r in self.app.query(
            "SELECT DISTINCT member_id::text AS m FROM pi_records WHERE kind = 'course_project' "
            "AND year <= %s AND details->>'status' = 'completed' "
            "AND coalesce((details->>'professional_course')::bool, true)", (cmd.year,))}
        goal = self.rules["r4"]["goal_share"]
        colleges = self._by_college(teachers, done)
        for c in colleges:
            c["completed"] = c.pop("meeting")
            c["without_project"] = c.pop("lacking")
            c["share"] = round(c["completed"] / c["teachers"], 4) if c["teachers"] else 0.0
            c["meets_goal"] = c["share"] >= goal
        total = sum(c["teachers"] for c in colleges)
        completed = sum(c["completed"] for c in colleges)
        share = round(completed / total, 4) if total else 0.0
        return {"year": cmd.year, "rule": "R4 约一半的专业课党员教师完成课程思政示范项目",
                "goal_share": goal,
                "school": {"teachers": total, "completed": completed, "share": share,
                           "meets_goal": share >= goal},
                "colleges": colleges}


def _nomination_out(r: dict, rules: dict) -> dict:
    return {"nomination_id": str(r["id"]), "kind": r["kind"],
            "kind_zh": rules["r2"]["kinds"].get(r["kind"], {}).get("name"), "year": r["year"],
            "subject_id": r["subject_id"], "subject_name": r["subject_name"],
            "org_id": str(r["org_id"]) if r["org_id"] else None, "status": r["status"],
            "failed": r["failed"] or [], "history": r["history"],
            "updated_at": r["updated_at"].isoformat()}
