"""The creation programme (三级联创 创建) aggregates, pure of I/O.

* ``Candidacy`` (创建): one organisation pursuing the title of its level
  (示范高校 level 1, 标杆院系 level 2, 样板支部 level 3) at one tier (校级,
  省级, 全国), through 培育 → 申报 → 立项 → 验收 → 达标 | 未达标. Every move
  is dated, with actor, reason and evidence; 达标 makes the title held, with
  its period, and opens the next tier (梯次培育, seed 六.1).
* ``Plan`` (规划): a plan period with targets per title and tier and a brand
  target (seed 一).
* ``Brand`` (品牌): 一总支一品牌, 一支部一特色 and school-wide brands, with the
  recognitions they received (level and date; seed 五.3, 六.2).
* ``Task`` (任务书的一项举措): one of the seed's 26 measures with its lead and
  cooperating departments, the milestones 组织部 sets, progress reports, and
  the overdue flag the timer records once per milestone.

Public methods check invariants and raise ``ValidationError`` naming the
field; the ``@event`` methods only record.
"""
from __future__ import annotations

from uuid import UUID

from eventsourcing.domain import Aggregate, event

from shared.domain import derived_id, parse_date, require
from services.evaluation.ratings.domain import clean_text
from shared.errors import ValidationError

# level -> (title code, Chinese name, the standard it is accepted against)
TITLES = {
    1: ("demonstration_university", "党建工作示范高校", "六个过硬"),
    2: ("benchmark_college", "党建工作标杆院系", "五个到位"),
    3: ("model_branch", "党建工作样板支部", "七个有力"),
}
TITLE_CODES = {code: level for level, (code, _, _) in TITLES.items()}
TIERS = ("school", "provincial", "national")
TIER_ZH = {"school": "校级", "provincial": "省级", "national": "全国"}
# The lowest tier each title is pursued at: there is no school-level 示范高校
# (the university is the school), so the university starts at 省级.
FIRST_TIER = {1: "provincial", 2: "school", 3: "school"}

STAGES = ("cultivating", "applied", "accepted", "acceptance_review", "passed", "failed")
STAGE_ZH = {"cultivating": "培育", "applied": "申报", "accepted": "立项",
            "acceptance_review": "验收", "passed": "达标", "failed": "未达标"}
# The moves a candidacy may make from each stage (达标 and 未达标 are final).
MOVES = {
    "cultivating": ("applied",),
    "applied": ("accepted",),
    "accepted": ("acceptance_review",),
    "acceptance_review": ("passed", "failed"),
    "passed": (),
    "failed": (),
}
FINAL_STAGES = ("passed", "failed")

BRAND_KINDS = {"school_brand": "学校党建和思政工作品牌", "college_brand": "一总支一品牌",
               "branch_feature": "一支部一特色"}
BRAND_LEVELS = TIERS  # recognised at 校级, 省级 or 全国


def stage_label(stage: str) -> str:
    return f"{STAGE_ZH[stage]} {stage}"


def tier_rank(tier: str) -> int:
    return TIERS.index(tier)


def next_tier(tier: str) -> str | None:
    i = TIERS.index(tier)
    return TIERS[i + 1] if i + 1 < len(TIERS) else None


# -- candidacies ---------------------------------------------------------------
class Candidacy(Aggregate):
    """One organisation's creation (创建) of its level's title at one tier."""

    id: UUID

    @staticmethod
    def id_for(org_id, tier: str, attempt: int) -> UUID:
        """Derived from organisation, tier and attempt: two nominations of the
        same organisation at the same tier at once clash in the store."""
        return derived_id("candidacy", org_id, tier, attempt)

    @event("Nominated")
    def __init__(self, org_id: str, org_name: str, level: int, title: str, tier: str,
                 attempt: int, on: str, college_id: str | None, ladder: dict | None,
                 actor: dict, reason: str | None, evidence: list | None):
        self.org_id = org_id
        self.org_name = org_name
        self.level = level
        self.title = title
        self.tier = tier
        self.attempt = attempt
        self.college_id = college_id
        self.ladder = ladder
        self.stage = "cultivating"
        self.nominated_on = on
        self.stage_on = on
        self.held_from: str | None = None
        self.held_until: str | None = None
        self.moves: list[dict] = []
        self.acceptances: list[dict] = []

    @classmethod
    def nominate(cls, org: dict, tier: str, attempt: int, on, college_id, ladder: dict | None,
                 actor: dict, reason, evidence) -> "Candidacy":
        """``org`` is the directory row (id, name, level). ``ladder`` names the
        candidacy that passed at the tier below (梯次培育), or a waiver with its
        reason; the application checks it against the records."""
        require(tier in TIERS, "tier", f"one of {', '.join(TIERS)} (校级, 省级, 全国)")
        level = int(org["level"])
        require(level in TITLES, "org_id", f"level {level} pursues no title")
        if tier_rank(tier) < tier_rank(FIRST_TIER[level]):
            require(False, "tier", f"{TITLES[level][1]} is pursued from "
                    f"{TIER_ZH[FIRST_TIER[level]]} ({FIRST_TIER[level]}) upwards")
        return cls(id=cls.id_for(org["id"], tier, attempt), org_id=str(org["id"]),
                   org_name=org["name"], level=level, title=TITLES[level][0], tier=tier,
                   attempt=attempt, on=parse_date(on, "on"),
                   college_id=str(college_id) if college_id else None, ladder=ladder,
                   actor=actor, reason=clean_text(reason, "reason", required=False),
                   evidence=list(evidence or []))

    @property
    def open(self) -> bool:
        return self.stage not in FINAL_STAGES

    def move(self, to_stage: str, on, actor: dict, reason, evidence,
             held_until=None) -> None:
        """Move to the next stage; anything else is refused naming the stage it is in."""
        require(to_stage in STAGES, "to_stage",
                f"one of {', '.join(STAGES)} (培育, 申报, 立项, 验收, 达标, 未达标)")
        allowed = MOVES[self.stage]
        if to_stage not in allowed:
            after = " or ".join(stage_label(s) for s in allowed) or "nothing (it is final)"
            require(False, "to_stage",
                    f"the candidacy of {self.org_name} is at {stage_label(self.stage)}: "
                    f"it cannot move to {stage_label(to_stage)}; next: {after}")
        on = parse_date(on, "on")
        require(on >= self.stage_on, "on", f"before the last move ({self.stage_on})")
        reason = clean_text(reason, "reason")
        if to_stage in FINAL_STAGES:
            require(bool(evidence), "evidence", "达标/未达标 needs the acceptance's evidence "
                    "(验收 result)")
        if held_until is not None:
            require(to_stage == "passed", "held_until", "only a 达标 (passed) move holds a title")
            held_until = parse_date(held_until, "held_until")
            require(held_until > on, "held_until", "must be after the day it was passed")
        self._moved(org_id=self.org_id, from_stage=self.stage, to_stage=to_stage,
                    tier=self.tier, title=self.title, on=on, held_until=held_until,
                    actor=actor, reason=reason, evidence=list(evidence or []))

    @event("Moved")
    def _moved(self, org_id: str, from_stage: str, to_stage: str, tier: str, title: str,
               on: str, held_until: str | None, actor: dict, reason: str,
               evidence: list):
        self.stage = to_stage
        self.stage_on = on
        self.moves.append({"from_stage": from_stage, "to_stage": to_stage, "on": on,
                           "actor": actor, "reason": reason, "evidence": evidence})
        if to_stage == "passed":
            self.held_from = on
            self.held_until = held_until

    def require_at_acceptance(self) -> None:
        """Refused, naming the stage, unless the candidacy is at 验收."""
        if self.stage != "acceptance_review":
            require(False, "candidacy_id",
                    f"the candidacy of {self.org_name} is at {stage_label(self.stage)}: only a "
                    f"candidacy at {stage_label('acceptance_review')} is scored for acceptance")

    def score_acceptance(self, scheme: dict, entries: dict, result: dict, rule: dict, on,
                         actor: dict, reason, documents: list, held_until=None) -> str:
        """验收: record the acceptance scored against the title's standard (the
        level's scheme) and move to 达标 or 未达标 as ``judge_acceptance`` decides,
        in one save. Only a candidacy at 验收 (acceptance_review) is scored."""
        self.require_at_acceptance()
        require(int(scheme["level"]) == self.level, "scheme_id",
                f"a level-{scheme['level']} scheme does not score a level-{self.level} title")
        require(bool(documents), "documents", "the acceptance's documents (验收材料)")
        rule = check_acceptance_rule(rule)
        reason = clean_text(reason, "reason")
        outcome, findings = judge_acceptance(result, rule)
        on = parse_date(on, "on")
        require(on >= self.stage_on, "on", f"before the last move ({self.stage_on})")
        if outcome == "failed" and held_until is not None:
            require(False, "held_until", "the acceptance failed (未达标): no title is held; "
                    + "; ".join(f["detail"] for f in findings if not f["met"]))
        self._acceptance_scored(
            org_id=self.org_id, tier=self.tier, title=self.title,
            scheme_id=scheme["scheme_id"], scheme_version=int(scheme["version"]),
            entries=entries, score=result["score"], band_stars=result.get("band_stars"),
            breakdown=result, rule=rule, findings=findings, outcome=outcome, on=on,
            actor=actor, reason=reason, evidence={"documents": list(documents),
                                                  "indicators": entries.get("evidence", {})})
        verdict = "; ".join(f["detail"] for f in findings if not f["met"]) or \
            f"score {result['score']} ≥ {rule['pass_mark']}, every dimension ≥ " \
            f"{rule['dimension_floor']}%, no veto"
        self.move(outcome, on, actor,
                  f"验收{STAGE_ZH[outcome]} ({verdict}); {reason}", list(documents),
                  held_until=held_until)
        return outcome

    @event("AcceptanceScored")
    def _acceptance_scored(self, org_id: str, tier: str, title: str, scheme_id: str,
                           scheme_version: int, entries: dict, score: float,
                           band_stars: int | None, breakdown: dict, rule: dict,
                           findings: list, outcome: str, on: str, actor: dict, reason: str,
                           evidence: dict):
        self.acceptances.append({"score": score, "outcome": outcome, "on": on})


# -- 验收 (acceptance) against the title's standard ------------------------------------
def judge_acceptance(result: dict, rule: dict) -> tuple[str, list[dict]]:
    """达标 (passed) or 未达标 (failed) from an acceptance scored under the level's
    scheme, by the acceptance rule (``programme/acceptance.yaml``, recorded in
    the event): the composite reaches ``pass_mark``; every dimension of the
    standard reaches ``dimension_floor`` % of its weight (六个过硬, 五个到位,
    七个有力 name every dimension: one that is not 过硬 / 到位 / 有力 fails the
    standard); no 一票否决 (veto) item. Returns the outcome and one finding per
    condition (``{condition, met, detail}``), so the decision explains itself."""
    findings = [{"condition": "pass_mark", "met": result["score"] >= rule["pass_mark"],
                 "detail": f"得分 score {result['score']} "
                           f"{'≥' if result['score'] >= rule['pass_mark'] else '<'} "
                           f"{rule['pass_mark']}"}]
    floor = rule["dimension_floor"]
    for dim in result["dimensions"]:
        needed = round(dim["weight"] * floor / 100, 2)
        findings.append({"condition": f"dimension:{dim['code']}", "met": dim["points"] >= needed,
                         "detail": f"{dim['name']} {dim['points']} of {dim['weight']} "
                                   f"({'≥' if dim['points'] >= needed else '<'} {floor}% = "
                                   f"{needed})"})
    vetoes = list(result.get("vetoes") or [])
    findings.append({"condition": "no_veto", "met": not vetoes,
                     "detail": "一票否决 veto: " + ", ".join(vetoes) if vetoes
                     else "no 一票否决 veto item"})
    outcome = "passed" if all(f["met"] for f in findings) else "failed"
    return outcome, findings


def check_acceptance_rule(rule) -> dict:
    """An acceptance rule as events record it: ``{pass_mark, dimension_floor}``."""
    errors = []
    if not isinstance(rule, dict):
        raise ValidationError.single("rule", "a mapping {pass_mark, dimension_floor}")
    for key in ("pass_mark", "dimension_floor"):
        value = rule.get(key)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value <= 100:
            errors.append({"field": f"rule.{key}", "message": "a number above 0, at most 100"})
    if errors:
        raise ValidationError(errors)
    return {"pass_mark": rule["pass_mark"], "dimension_floor": rule["dimension_floor"]}


# -- plans ---------------------------------------------------------------------
def check_targets(targets: list, brand_target: dict | None) -> tuple[list, dict | None]:
    """Targets as events record them: ``[{title, tier, min, max}]`` and
    ``{min_tier, min}`` for brands; every bad entry named at once."""
    errors, clean, seen = [], [], set()
    for i, t in enumerate(targets or []):
        field = f"targets[{i}]"
        if not isinstance(t, dict):
            errors.append({"field": field, "message": "a mapping {title, tier, min, max}"})
            continue
        title, tier = t.get("title"), t.get("tier")
        low, high = t.get("min"), t.get("max", t.get("min"))
        if title not in TITLE_CODES:
            errors.append({"field": f"{field}.title", "message": "one of " + ", ".join(TITLE_CODES)})
        if tier not in TIERS:
            errors.append({"field": f"{field}.tier", "message": "one of " + ", ".join(TIERS)})
        if not isinstance(low, int) or isinstance(low, bool) or low < 1:
            errors.append({"field": f"{field}.min", "message": "a whole number ≥ 1"})
        elif not isinstance(high, int) or isinstance(high, bool) or high < low:
            errors.append({"field": f"{field}.max", "message": "a whole number ≥ min"})
        if (title, tier) in seen:
            errors.append({"field": field, "message": f"{title} at {tier} is listed twice"})
        seen.add((title, tier))
        clean.append({"title": title, "tier": tier, "min": low, "max": high})
    if brand_target is not None:
        low, tier = brand_target.get("min"), brand_target.get("min_tier")
        if tier not in BRAND_LEVELS:
            errors.append({"field": "brand_target.min_tier", "message": "one of " + ", ".join(TIERS)})
        if not isinstance(low, int) or isinstance(low, bool) or low < 1:
            errors.append({"field": "brand_target.min", "message": "a whole number ≥ 1"})
        brand_target = {"min_tier": tier, "min": low}
    if errors:
        raise ValidationError(errors)
    return clean, brand_target


class Plan(Aggregate):
    """A plan period (规划期) and its targets (目标)."""

    id: UUID

    @staticmethod
    def id_for(code: str) -> UUID:
        return derived_id("programme-plan", code)

    @event("Defined")
    def __init__(self, code: str, name: str, starts_on: str, ends_on: str, targets: list,
                 brand_target: dict | None, actor: dict, reason: str | None):
        self.code = code
        self.name = name
        self.starts_on = starts_on
        self.ends_on = ends_on
        self.targets = targets
        self.brand_target = brand_target

    @classmethod
    def define(cls, code, name, starts_on, ends_on, targets, brand_target, actor,
               reason) -> "Plan":
        code = clean_text(code, "code", limit=40)
        name = clean_text(name, "name", limit=200)
        starts_on, ends_on = parse_date(starts_on, "starts_on"), parse_date(ends_on, "ends_on")
        require(ends_on > starts_on, "ends_on", "must be after starts_on")
        targets, brand_target = check_targets(targets, brand_target)
        return cls(id=cls.id_for(code), code=code, name=name, starts_on=starts_on,
                   ends_on=ends_on, targets=targets, brand_target=brand_target, actor=actor,
                   reason=reason)

    def retarget(self, targets, brand_target, actor, reason) -> None:
        targets, brand_target = check_targets(targets, brand_target)
        require(targets != self.targets or brand_target != self.brand_target, "targets",
                "the same as the plan's targets; nothing to change")
        self._retargeted(targets=targets, brand_target=brand_target, actor=actor,
                         reason=clean_text(reason, "reason"))

    @event("Retargeted")
    def _retargeted(self, targets: list, brand_target: dict | None, actor: dict, reason: str):
        self.targets = targets
        self.brand_target = brand_target


# -- brands --------------------------------------------------------------------
class Brand(Aggregate):
    """A Party-building or ideological-work brand (品牌) and its recognitions."""

    id: UUID

    @event("Registered")
    def __init__(self, name: str, kind: str, org_id: str, org_name: str, actor: dict,
                 reason: str | None, evidence: list):
        self.name = name
        self.kind = kind
        self.org_id = org_id
        self.org_name = org_name
        self.recognitions: list[dict] = []

    @classmethod
    def register(cls, brand_id: UUID, name, kind: str, org: dict, actor, reason,
                 evidence) -> "Brand":
        require(kind in BRAND_KINDS, "kind", "one of " + ", ".join(
            f"{k} ({v})" for k, v in BRAND_KINDS.items()))
        wanted = {"school_brand": 1, "college_brand": 2, "branch_feature": 3}[kind]
        require(int(org["level"]) == wanted, "org_id",
                f"a {BRAND_KINDS[kind]} belongs to a level-{wanted} organisation; "
                f"{org['name']} is level {org['level']}")
        return cls(id=brand_id, name=clean_text(name, "name", limit=200), kind=kind,
                   org_id=str(org["id"]), org_name=org["name"], actor=actor,
                   reason=clean_text(reason, "reason", required=False), evidence=list(evidence or []))

    @property
    def level(self) -> str | None:
        """The highest level it has been recognised at."""
        if not self.recognitions:
            return None
        return max((r["level"] for r in self.recognitions), key=tier_rank)

    def recognise(self, level: str, on, actor, reason, evidence) -> None:
        require(level in BRAND_LEVELS, "level", "one of " + ", ".join(TIERS) + " (校级, 省级, 全国)")
        require(bool(evidence), "evidence", "the recognition's document (认定文件)")
        on = parse_date(on, "on")
        require(not any(r["level"] == level for r in self.recognitions), "level",
                f"{self.name} is already recognised at {TIER_ZH[level]} ({level})")
        self._recognised(level=level, on=on, actor=actor,
                         reason=clean_text(reason, "reason", required=False), evidence=list(evidence))

    @event("Recognised")
    def _recognised(self, level: str, on: str, actor: dict, reason: str | None, evidence: list):
        self.recognitions.append({"level": level, "on": on})


# -- the task book ---------------------------------------------------------------
class Task(Aggregate):
    """One measure (举措) of the task book (任务书): number, lead and cooperating
    departments, milestones (时间节点) with due dates, progress reports."""

    id: UUID

    @staticmethod
    def id_for(number: str) -> UUID:
        return derived_id("programme-task", number)

    @event("Registered")
    def __init__(self, number: str, section: str, title: str, lead_department: str,
                 cooperating: list, actor: dict, reason: str | None):
        self.number = number
        self.section = section
        self.title = title
        self.lead_department = lead_department
        self.cooperating = list(cooperating)
        self.milestones: dict[str, dict] = {}

    @classmethod
    def register(cls, number: str, section: str, title: str, lead_department: str,
                 cooperating: list, actor: dict, reason: str | None = None) -> "Task":
        require(lead_department not in cooperating, "cooperating",
                "the lead department is not also a cooperating one")
        return cls(id=cls.id_for(number), number=number, section=section, title=title,
                   lead_department=lead_department, cooperating=list(cooperating),
                   actor=actor, reason=reason)

    def reassign(self, lead_department: str, cooperating: list, actor: dict, reason) -> None:
        """Give the measure another lead (牵头部门) and/or cooperating departments
        (配合部门); the codes are checked against organizations' records by the
        application (unknown or retired: refused naming the field)."""
        cooperating = list(dict.fromkeys(cooperating))
        require(lead_department not in cooperating, "cooperating",
                "the lead department is not also a cooperating one")
        require((lead_department, cooperating) != (self.lead_department, self.cooperating),
                "lead_department", "the measure already has these departments; nothing to change")
        self._departments_reassigned(
            lead_department=lead_department, cooperating=cooperating,
            previous_lead=self.lead_department, previous_cooperating=list(self.cooperating),
            actor=actor, reason=clean_text(reason, "reason"))

    @event("DepartmentsReassigned")
    def _departments_reassigned(self, lead_department: str, cooperating: list,
                                previous_lead: str, previous_cooperating: list, actor: dict,
                                reason: str):
        self.lead_department = lead_department
        self.cooperating = list(cooperating)

    def milestone(self, milestone_id: str) -> dict:
        require(milestone_id in self.milestones, "milestone_id",
                f"measure {self.number} has no milestone {milestone_id!r}")
        return self.milestones[milestone_id]

    def set_milestone(self, milestone_id: str, title, year: int, due_on, actor, reason) -> None:
        title = clean_text(title, "title", limit=300)
        due_on = parse_date(due_on, "due_on")
        existing = self.milestones.get(milestone_id)
        if existing is not None:
            require(existing["status"] != "completed", "milestone_id",
                    f"milestone {existing['title']} is completed; set a new one")
            require((existing["title"], existing["due_on"]) != (title, due_on), "due_on",
                    "the milestone already has this title and due date")
        self._milestone_set(milestone_id=milestone_id, title=title, year=int(year),
                            due_on=due_on, actor=actor, reason=clean_text(reason, "reason",
                                                                     required=False))

    @event("MilestoneSet")
    def _milestone_set(self, milestone_id: str, title: str, year: int, due_on: str,
                       actor: dict, reason: str | None):
        previous = self.milestones.get(milestone_id, {})
        moved = previous.get("due_on") not in (None, due_on)
        self.milestones[milestone_id] = {
            "title": title, "year": year, "due_on": due_on,
            "status": previous.get("status", "open"),
            # a new due date is a new deadline: it may be flagged overdue again
            "overdue": False if moved else previous.get("overdue", False)}

    def report(self, milestone_id: str | None, department: str, text, completed: bool, on,
               actor, evidence) -> None:
        """A progress report (进展报送) by the lead department or a cooperating
        one (their part); only the lead completes a milestone."""
        if milestone_id is not None:
            m = self.milestone(milestone_id)
            require(m["status"] != "completed", "milestone_id",
                    f"milestone {m['title']} is already completed")
        require(not completed or milestone_id is not None, "completed",
                "name the milestone that is completed")
        require(not completed or department == self.lead_department, "completed",
                "only the lead department (牵头部门) completes a milestone")
        require(bool(evidence), "evidence", "progress is reported with evidence")
        self._progress_reported(milestone_id=milestone_id, department=department,
                                text=clean_text(text, "text", limit=4000), completed=completed,
                                on=parse_date(on, "on"), actor=actor, evidence=list(evidence))

    @event("ProgressReported")
    def _progress_reported(self, milestone_id: str | None, department: str, text: str,
                           completed: bool, on: str, actor: dict, evidence: list):
        if completed:
            self.milestones[milestone_id]["status"] = "completed"

    def overdue_milestones(self, today: str) -> list[str]:
        return [mid for mid, m in self.milestones.items()
                if m["status"] != "completed" and m["due_on"] < today and not m["overdue"]]

    def flag_overdue(self, milestone_id: str, today: str, actor: dict) -> bool:
        """Record the milestone overdue, once per due date (False: nothing to record)."""
        m = self.milestone(milestone_id)
        if m["status"] == "completed" or m["overdue"] or m["due_on"] >= today:
            return False
        self._milestone_overdue(milestone_id=milestone_id, milestone=m["title"],
                                number=self.number, lead_department=self.lead_department,
                                due_on=m["due_on"], actor=actor, reason="任务节点逾期 (timer)")
        return True

    @event("MilestoneOverdue")
    def _milestone_overdue(self, milestone_id: str, milestone: str, number: str,
                           lead_department: str, due_on: str, actor: dict, reason: str):
        self.milestones[milestone_id]["overdue"] = True
