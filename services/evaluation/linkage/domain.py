"""Linkage rules (联动规则): pure decisions and their aggregates.

* R1 (六.1): an organisation's 基层党建述职评议 grade for a year is capped at
  一般, and its responsible persons' 年度考核 may not be 优秀, when its creation
  is not up to standard (创建未达标), its rating at the year's close is below ★4,
  or a major problem (重大问题) was recorded that year. Every triggering
  condition is named; the proposed and the capped grade are both kept.
* R2 (五.2): 两优一先 nominations (nominate → review → award), eligibility
  checked at nomination from the records; a refusal names every failed
  condition.
"""
from __future__ import annotations

from pathlib import Path
from uuid import UUID

import yaml
from eventsourcing.domain import Aggregate, event

from shared.domain import derived_id, require
from shared.errors import ValidationError

RULES_FILE = Path(__file__).parent / "rules.yaml"
APPRAISAL_ZH = {"excellent": "优秀", "qualified": "合格", "basically_qualified": "基本合格",
                "unqualified": "不合格"}


def load_rules() -> dict:
    rules = yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))
    grades = rules["r1"]["grades"]
    if rules["r1"]["cap_grade"] not in grades:
        raise ValueError("r1.cap_grade must be one of r1.grades")
    return rules


# -- R1 ------------------------------------------------------------------------------
def r1_conditions(rules: dict, year: int, stars_at_close: int | None,
                  creation_failures: list[dict], major_problems: list[dict]) -> list[dict]:
    """Every condition that triggers the R1 cap, each with its reason text."""
    r1, found = rules["r1"], []
    if r1.get("creation_failed") and creation_failures:
        for f in creation_failures:
            found.append({"code": "creation_failed",
                          "reason": f"创建未达标 creation not up to standard: {f['reason']}"})
    if stars_at_close is not None and stars_at_close < r1["min_stars"]:
        found.append({"code": "stars_below",
                      "reason": f"星级低于四星 rated ★{stars_at_close} at the close of {year} "
                                f"(★{r1['min_stars']} needed)"
                      if r1["min_stars"] == 4 else
                      f"星级低于{r1['min_stars']}星 rated ★{stars_at_close} at the close of {year}"})
    if r1.get("major_problem"):
        for p in major_problems:
            found.append({"code": "major_problem",
                          "reason": f"重大问题 major problem recorded in {year}: "
                                    f"{p['description']}"})
    return found


def capped_grade(rules: dict, proposed: str, conditions: list[dict]) -> str:
    grades = list(rules["r1"]["grades"])
    require(proposed in grades, "grade", f"one of {', '.join(grades)} "
            f"({', '.join(rules['r1']['grades'].values())})")
    if not conditions:
        return proposed
    cap = rules["r1"]["cap_grade"]
    return grades[max(grades.index(proposed), grades.index(cap))]


class AnnualReview(Aggregate):
    """基层党建述职评议 of one organisation for one year, with its R1 outcome."""

    id: UUID

    @staticmethod
    def id_for(org_id, year: int) -> UUID:
        return derived_id("annual-review", org_id, year)

    @event("Opened")
    def __init__(self, org_id: str, org_name: str, year: int):
        self.org_id = org_id
        self.org_name = org_name
        self.year = year
        self.creation_failures: list[dict] = []
        self.grade: dict | None = None

    def record_creation_failed(self, reason: str, actor: dict, evidence: list | None) -> None:
        require(bool((reason or "").strip()), "reason", "say why the creation is not up to "
                "standard (创建未达标)")
        self._creation_failed(org_id=self.org_id, year=self.year, actor=actor, reason=reason,
                              evidence=evidence)

    @event("CreationFailed")
    def _creation_failed(self, org_id: str, year: int, actor: dict, reason: str,
                         evidence: list | None):
        self.creation_failures.append({"reason": reason, "actor": actor})

    def propose(self, proposed: str, capped: str, conditions: list[dict],
                responsible: list[dict], grades_zh: dict, actor: dict, reason: str | None) -> None:
        self._proposed(org_id=self.org_id, org_name=self.org_name, year=self.year,
                       proposed=proposed, proposed_zh=grades_zh[proposed], grade=capped,
                       grade_zh=grades_zh[capped], capped=capped != proposed,
                       conditions=conditions, annual_excellent_eligible=not conditions,
                       responsible=responsible, actor=actor, reason=reason)

    @event("GradeProposed")
    def _proposed(self, org_id: str, org_name: str, year: int, proposed: str, proposed_zh: str,
                  grade: str, grade_zh: str, capped: bool, conditions: list,
                  annual_excellent_eligible: bool, responsible: list, actor: dict,
                  reason: str | None):
        self.grade = {"proposed": proposed, "grade": grade, "capped": capped,
                      "conditions": conditions,
                      "annual_excellent_eligible": annual_excellent_eligible,
                      "responsible": responsible}


# -- R2 --------------------------------------------------------------------------------
def eligibility(rule: dict, facts: dict) -> list[dict]:
    """Every failed condition of a 两优一先 kind for the facts gathered; [] = eligible.

    facts: ``stars`` (at the year's close), ``major_problems``, ``appraisal``
    (grade or None), ``violations`` (list), ``index`` (score or None),
    ``roles`` (list of role codes), ``org_stars``.
    """
    failed = []
    if "min_stars" in rule:
        stars = facts.get("stars")
        if stars is None or stars < rule["min_stars"]:
            failed.append({"code": "min_stars", "message":
                           f"需四星级及以上 needs ★{rule['min_stars']} or above; rated "
                           + (f"★{stars}" if stars is not None else "not rated")})
    if rule.get("no_major_problem") and facts.get("major_problems"):
        failed.append({"code": "no_major_problem", "message": "当年有重大问题 a major problem "
                       "was recorded: " + "; ".join(p["description"]
                                                   for p in facts["major_problems"])})
    if "appraisal_grades" in rule:
        grade = facts.get("appraisal")
        if grade not in rule["appraisal_grades"]:
            wanted = "或".join(APPRAISAL_ZH.get(g, g) for g in rule["appraisal_grades"])
            failed.append({"code": "appraisal", "message":
                           f"民主评议需为{wanted}; "
                           + (f"appraised {APPRAISAL_ZH.get(grade, grade)}" if grade
                              else "no 民主评议 recorded that year")})
    if rule.get("no_violation") and facts.get("violations"):
        failed.append({"code": "no_violation", "message": "当年有红线底线违规 a violation was "
                       "recorded: " + "; ".join(v["description"] for v in facts["violations"])})
    if "min_index" in rule:
        index = facts.get("index")
        if index is None or index < rule["min_index"]:
            failed.append({"code": "min_index", "message":
                           f"锋领指数需达到{rule['min_index']} needs a pioneer index of "
                           f"{rule['min_index']} or more; "
                           + (f"it is {index}" if index is not None else "none")})
    if "holds_role" in rule and not set(facts.get("roles") or []) & set(rule["holds_role"]):
        failed.append({"code": "holds_role", "message": "不是党务工作者 holds none of the "
                       "roles " + ", ".join(rule["holds_role"])})
    return failed


NOMINATION_STATUSES = {"nominated": "已提名", "refused": "不符合条件", "reviewed": "已审核",
                       "returned": "审核未通过", "awarded": "已表彰"}


class Nomination(Aggregate):
    """A 两优一先 nomination: nominate → review → award."""

    id: UUID

    @event("Made")
    def __init__(self, kind: str, kind_zh: str, subject_type: str, year: int, subject_id: str,
                 subject_name: str, org_id: str | None, actor: dict, reason: str | None):
        self.kind = kind
        self.kind_zh = kind_zh
        self.subject_type = subject_type
        self.year = year
        self.subject_id = subject_id
        self.subject_name = subject_name
        self.org_id = org_id
        self.status = "nominated"
        self.failed: list[dict] = []

    def refuse(self, failed: list[dict], actor: dict) -> None:
        self._refused(kind=self.kind, kind_zh=self.kind_zh, subject_type=self.subject_type,
                      year=self.year, subject_id=self.subject_id,
                      subject_name=self.subject_name, org_id=self.org_id, failed=failed,
                      actor=actor, reason="; ".join(f["message"] for f in failed))

    @event("Refused")
    def _refused(self, kind: str, kind_zh: str, subject_type: str, year: int, subject_id: str,
                 subject_name: str, org_id: str | None, failed: list, actor: dict, reason: str):
        self.status = "refused"
        self.failed = failed

    def review(self, approve: bool, actor: dict, reason: str) -> None:
        require(self.status == "nominated", "nomination_id",
                f"the nomination is {NOMINATION_STATUSES[self.status]}, not awaiting review")
        require(bool((reason or "").strip()), "reason", "a review gives its reasons")
        self._reviewed(kind=self.kind, year=self.year, subject_id=self.subject_id,
                       approved=approve, actor=actor, reason=reason)

    @event("Reviewed")
    def _reviewed(self, kind: str, year: int, subject_id: str, approved: bool, actor: dict,
                  reason: str):
        self.status = "reviewed" if approved else "returned"

    def award(self, actor: dict, reason: str | None) -> None:
        if self.status != "reviewed":
            raise ValidationError.single(
                "nomination_id", f"only a reviewed nomination is awarded; this one is "
                f"{NOMINATION_STATUSES[self.status]}")
        self._awarded(kind=self.kind, kind_zh=self.kind_zh, subject_type=self.subject_type,
                      year=self.year, subject_id=self.subject_id,
                      subject_name=self.subject_name, org_id=self.org_id, actor=actor,
                      reason=reason)

    @event("Awarded")
    def _awarded(self, kind: str, kind_zh: str, subject_type: str, year: int, subject_id: str,
                 subject_name: str, org_id: str | None, actor: dict, reason: str | None):
        self.status = "awarded"
