"""Evaluation (考评) aggregates, pure of I/O: schemes, cycles, assessments, ratings.

* ``Scheme`` (评价指标体系): one per scheme code; each publication is a new,
  immutable version. A cycle names the version in force when it opened.
* ``Cycle`` (考评周期): a year or semester, a level, a set of organisations and
  a deadline per stage.
* ``Assessment``: one organisation in one cycle, through 自评 (self-assessment)
  → 审核 (review) → 审定 (approval) → 公示 (publicity) → final, with returns,
  extensions, objections (异议) each decided by 组织部, appeals (申诉) and direct
  grading (直接定级).
  Self and reviewer scores are both kept.
* ``Rating`` (星级): an organisation's star rating over time; changed by cycle
  results, direct grading, major problems (重大问题) and verified
  rectifications (整改).

``Rating`` lives in ``rating.py`` and is re-exported here. The aggregates lived
in ``services.evaluation.domain`` until the ratings package was split out;
events stored then carry topics like ``services.evaluation.domain:Assessment.Submitted``,
which are registered below so that they still resolve to these classes.

Public methods check invariants and raise ``ValidationError`` naming the field;
the ``@event`` methods only record. Every event carries the actor, the reason
and, where given, the evidence.
"""
from __future__ import annotations

import datetime as dt
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event
from eventsourcing.utils import register_topic

from shared.domain import derived_id, parse_moment, require
from shared.errors import ValidationError

STAGES = ("self_assessment", "review", "approval")  # the stages with deadlines
STAGE_ZH = {"self_assessment": "自评 self-assessment", "review": "审核 review",
            "approval": "审定 approval", "publicity": "公示 publicity", "final": "final 结果",
            "appeal": "申诉 appeal", "dropped": "dropped 退出"}
APPEAL_DECISIONS = ("upheld", "dismissed")
OBJECTION_DECISIONS = ("upheld", "dismissed")  # 异议成立 / 异议不成立


def _ts(value: dt.datetime) -> str:
    return value.astimezone(dt.timezone.utc).isoformat()


def clean_text(value, field: str, required: bool = True, limit: int = 2000) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        require(not required, field, "required")
        return None
    require(isinstance(value, str), field, "must be text")
    value = value.strip()
    require(len(value) <= limit, field, f"at most {limit} characters")
    return value


def stage_due(stage: str, deadlines: dict, extensions: dict, returned_from: str | None,
              reopened: bool) -> dt.datetime | None:
    """When ``stage`` is due for one organisation (None: no deadline).

    An extension (recorded per organisation) wins; after a return, the
    resubmission is due by the deadline of the stage that returned it (the
    reviewer must still finish on time); a review reopened by an upheld appeal
    or objection has no deadline. Used by the aggregate and the progress board.
    """
    if stage not in STAGES:
        return None
    if stage in (extensions or {}):
        return dt.datetime.fromisoformat(extensions[stage])
    if reopened:
        return None
    if returned_from in STAGES and STAGES.index(returned_from) > STAGES.index(stage):
        return dt.datetime.fromisoformat(deadlines[returned_from])
    return dt.datetime.fromisoformat(deadlines[stage])


# -- schemes -----------------------------------------------------------------
class Scheme(Aggregate):
    """All published versions of one scheme (评价指标体系) code."""

    id: UUID

    @staticmethod
    def id_for(scheme_id: str) -> UUID:
        return derived_id("scheme", scheme_id)

    @event("Registered")
    def __init__(self, scheme_id: str, level: int, actor: dict, reason: str | None = None):
        self.scheme_id = scheme_id
        self.level = level
        self.versions: dict[int, dict] = {}

    @classmethod
    def register(cls, scheme_id: str, level: int, actor: dict) -> "Scheme":
        return cls(id=cls.id_for(scheme_id), scheme_id=scheme_id, level=level, actor=actor)

    @property
    def latest_version(self) -> int:
        return max(self.versions) if self.versions else 0

    def definition(self, version: int | None = None) -> dict:
        version = version or self.latest_version
        require(version in self.versions, "scheme_version",
                f"scheme {self.scheme_id} has no version {version}")
        return self.versions[version]

    def publish(self, definition: dict, actor: dict, reason: str | None = None) -> int:
        """Publish a validated definition as the next version (never edits an old one)."""
        require(definition["level"] == self.level, "level",
                f"scheme {self.scheme_id} is for level {self.level}")
        if self.versions:
            require(definition != self.versions[self.latest_version], "definition",
                    f"identical to version {self.latest_version}; nothing to publish")
        self._published(version=self.latest_version + 1, title=definition["title"],
                        level=self.level, definition=definition, actor=actor, reason=reason)
        return self.latest_version

    @event("Published")
    def _published(self, version: int, title: str, level: int, definition: dict, actor: dict,
                   reason: str | None):
        self.versions[version] = definition


# -- cycles ------------------------------------------------------------------
class Cycle(Aggregate):
    """An evaluation cycle (考评周期) for a level and a set of organisations."""

    id: UUID

    @event("Opened")
    def __init__(self, name: str, level: int, period: str, org_ids: list, deadlines: dict,
                 scheme_id: str, scheme_version: int, publicity_days: float,
                 appeal_days: float, auto_add: bool, college_id: str | None, actor: dict,
                 reason: str | None = None):
        self.name = name
        self.college_id = college_id  # a cycle for one college's branches, or None
        self.level = level
        self.period = period
        self.org_ids = list(org_ids)
        self.dropped: list[str] = []
        self.deadlines = dict(deadlines)
        self.scheme_id = scheme_id
        self.scheme_version = scheme_version
        self.publicity_days = publicity_days
        self.appeal_days = appeal_days
        self.auto_add = auto_add

    @classmethod
    def open(cls, cycle_id: UUID, name, level: int, period, org_ids: list, deadlines: dict,
             scheme_id: str, scheme_version: int, publicity_days: float, appeal_days: float,
             auto_add: bool, college_id, now: dt.datetime, actor: dict,
             reason=None) -> "Cycle":
        errors = []
        if not isinstance(name, str) or not name.strip():
            errors.append({"field": "name", "message": "required, e.g. 2026年度党支部星级考评"})
        if not isinstance(period, str) or not period.strip():
            errors.append({"field": "period", "message": "required, e.g. 2026 or 2026-2027-1"})
        if not org_ids:
            errors.append({"field": "org_ids", "message": "at least one organisation"})
        if len(set(map(str, org_ids))) != len(org_ids):
            errors.append({"field": "org_ids", "message": "an organisation is listed twice"})
        parsed = {}
        for stage in STAGES:
            if stage not in (deadlines or {}):
                errors.append({"field": f"deadlines.{stage}", "message": "required"})
                continue
            try:
                parsed[stage] = parse_moment(deadlines[stage], f"deadlines.{stage}")
            except ValidationError as exc:
                errors.extend(exc.errors)
                continue
            if parsed[stage] <= now:
                errors.append({"field": f"deadlines.{stage}", "message": "already passed"})
        for stage in deadlines or {}:
            if stage not in STAGES:
                errors.append({"field": f"deadlines.{stage}",
                               "message": f"unknown stage; stages: {', '.join(STAGES)}"})
        if len(parsed) == 3 and not (parsed["self_assessment"] <= parsed["review"]
                                     <= parsed["approval"]):
            errors.append({"field": "deadlines",
                           "message": "must run self_assessment ≤ review ≤ approval"})
        for key, value in (("publicity_days", publicity_days), ("appeal_days", appeal_days)):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                errors.append({"field": key, "message": "a positive number of days"})
        if errors:
            raise ValidationError(errors)
        return cls(id=cycle_id, name=name.strip(), level=level, period=period.strip(),
                   org_ids=[str(o) for o in org_ids],
                   deadlines={s: _ts(parsed[s]) for s in STAGES},
                   scheme_id=scheme_id, scheme_version=scheme_version,
                   publicity_days=publicity_days, appeal_days=appeal_days, auto_add=auto_add,
                   college_id=str(college_id) if college_id else None, actor=actor,
                   reason=reason)

    def includes(self, org_id) -> bool:
        return str(org_id) in self.org_ids and str(org_id) not in self.dropped

    def deadline(self, stage: str) -> dt.datetime:
        return dt.datetime.fromisoformat(self.deadlines[stage])

    def add_organization(self, org_id, org_name: str, actor: dict, reason=None) -> bool:
        """Add an organisation (idempotent: False when it is already in)."""
        if self.includes(org_id):
            return False
        self._organization_added(org_id=str(org_id), org_name=org_name, actor=actor,
                                 reason=reason)
        return True

    @event("OrganizationAdded")
    def _organization_added(self, org_id: str, org_name: str, actor: dict, reason: str | None):
        if org_id in self.dropped:
            self.dropped.remove(org_id)
        if org_id not in self.org_ids:
            self.org_ids.append(org_id)

    def drop_organization(self, org_id, actor: dict, reason=None) -> bool:
        if not self.includes(org_id):
            return False
        self._organization_dropped(org_id=str(org_id), actor=actor, reason=reason)
        return True

    @event("OrganizationDropped")
    def _organization_dropped(self, org_id: str, actor: dict, reason: str | None):
        self.dropped.append(org_id)


# -- assessments ---------------------------------------------------------------
class Assessment(Aggregate):
    """One organisation's evaluation in one cycle."""

    id: UUID

    @staticmethod
    def id_for(cycle_id, org_id) -> UUID:
        return derived_id("assessment", cycle_id, org_id)

    @event("Started")
    def __init__(self, cycle_id: str, org_id: str, org_name: str, level: int,
                 college_id: str | None, actor: dict, reason: str | None = None):
        self.cycle_id = cycle_id
        self.org_id = org_id
        self.org_name = org_name
        self.level = level
        self.college_id = college_id
        self.stage = "self_assessment"
        self.entries: dict[str, dict] = {}      # stage -> the submitted entries
        self.results: dict[str, dict] = {}      # stage -> score breakdown at that stage
        self.extensions: dict[str, str] = {}    # stage -> ISO timestamp
        self.returned_from: str | None = None   # the stage that last returned it
        self.reopened = False                   # by an upheld appeal: no stage deadlines
        self.score: float | None = None
        self.stars: int | None = None
        self.direct_grade: dict | None = None
        self.quota_notes: list[str] = []  # why the approved stars differ from the band
        self.publicity_ends_at: str | None = None
        self.final_at: str | None = None
        self.appeal_until: str | None = None
        self.appeal: dict | None = None
        self.objections: list[dict] = []
        self.returns = 0

    @classmethod
    def start(cls, cycle_id, org_id, org_name: str, level: int, college_id, actor: dict,
              reason=None) -> "Assessment":
        return cls(id=cls.id_for(cycle_id, org_id), cycle_id=str(cycle_id), org_id=str(org_id),
                   org_name=org_name, level=level,
                   college_id=str(college_id) if college_id else None, actor=actor,
                   reason=reason)

    # -- deadlines -----------------------------------------------------
    def due(self, stage: str, cycle: Cycle) -> dt.datetime | None:
        return stage_due(stage, cycle.deadlines, self.extensions, self.returned_from,
                         self.reopened)

    def _require_stage(self, *stages: str) -> None:
        require(self.stage in stages, "stage",
                f"{self.org_name} is at {STAGE_ZH[self.stage]}, not "
                + " or ".join(STAGE_ZH[s] for s in stages))

    def _require_on_time(self, stage: str, cycle: Cycle, now: dt.datetime) -> None:
        due = self.due(stage, cycle)
        if due is not None and now > due:
            raise ValidationError.single(
                f"deadlines.{stage}",
                f"the {STAGE_ZH[stage]} deadline for {self.org_name} passed at "
                f"{_ts(due)}; 组织部 (org_admin) can extend it for this organisation")

    def extend(self, stage: str, until: dt.datetime, now: dt.datetime, actor: dict,
               reason: str) -> None:
        require(self.stage != "dropped", "org_id", f"{self.org_name} was dropped from the cycle")
        require(stage in STAGES, "stage", f"one of {', '.join(STAGES)}")
        require(until > now, "until", "must be in the future")
        require(bool(reason), "reason", "an extension needs a reason")
        self._extended(cycle_id=self.cycle_id, org_id=self.org_id, stage=stage,
                       until=_ts(until), actor=actor, reason=reason)

    @event("DeadlineExtended")
    def _extended(self, cycle_id: str, org_id: str, stage: str, until: str, actor: dict,
                  reason: str):
        self.extensions[stage] = until

    # -- 自评 and 审核 --------------------------------------------------------
    def submit(self, stage: str, entries: dict, result: dict, cycle: Cycle, now: dt.datetime,
               actor: dict, comments: str | None, evidence: dict | None) -> None:
        """Submit the self-assessment (自评) or the review (审核) with its scores."""
        self._require_stage(stage)
        self._require_on_time(stage, cycle, now)
        self._submitted(cycle_id=self.cycle_id, org_id=self.org_id, stage=stage,
                        entries=entries, score=result["score"], stars=result["stars"],
                        breakdown=result, comments=comments, evidence=evidence or None,
                        actor=actor, reason=comments)

    @event("Submitted")
    def _submitted(self, cycle_id: str, org_id: str, stage: str, entries: dict, score: float,
                   stars: int, breakdown: dict, comments: str | None, evidence: Any,
                   actor: dict, reason: str | None):
        self.entries[stage] = entries
        self.results[stage] = breakdown
        # getattr: snapshots taken before evidence was kept have none
        self.evidence = {**getattr(self, "evidence", {}), stage: evidence}
        self.stage = "review" if stage == "self_assessment" else "approval"
        self.returned_from = None

    def return_(self, comments: str, actor: dict) -> str:
        """Send it back one step with comments (审核 → 自评, 审定 or 公示 → 审核)."""
        self._require_stage("review", "approval", "publicity")
        require(bool(comments), "comments", "a return needs comments saying what to change")
        to_stage = "self_assessment" if self.stage == "review" else "review"
        self._returned(cycle_id=self.cycle_id, org_id=self.org_id, stage=to_stage,
                       from_stage=self.stage, comments=comments, actor=actor, reason=comments)
        return to_stage

    @event("Returned")
    def _returned(self, cycle_id: str, org_id: str, stage: str, from_stage: str, comments: str,
                  actor: dict, reason: str):
        self.returned_from = from_stage if from_stage in STAGES else None
        self.stage = stage
        self.returns += 1
        if from_stage == "publicity":
            # an upheld objection: the review is redone outside the original deadlines
            self.publicity_ends_at = None
            self.reopened = True

    # -- 审定 and 公示 --------------------------------------------------------
    @property
    def reviewed(self) -> dict | None:
        return self.results.get("review")

    def result_evidence(self) -> dict:
        """What the result rests on (考评依据), for the rating it changes: the
        self-assessment's and the reviewer's evidence ({indicator: [refs]}),
        the approver's reason and, for a direct grading, its evidence."""
        evidence = getattr(self, "evidence", {})
        out = {"self_assessment": evidence.get("self_assessment"),
               "review": evidence.get("review"),
               "approval_reason": getattr(self, "approval_reason", None)}
        if self.direct_grade is not None:
            out["direct_grading"] = {"reason": self.direct_grade.get("reason"),
                                     "evidence": self.direct_grade.get("evidence")}
        return out

    def result_reason(self, label: str) -> str:
        """The automatic label, and beside it the reason the approver gave."""
        reason = getattr(self, "approval_reason", None)
        return f"{label}; 审定意见 approver's reason: {reason}" if reason else label

    def approve(self, score: float, stars: int, notes: list[str], cycle: Cycle,
                now: dt.datetime, actor: dict, reason: str | None = None) -> None:
        self._require_stage("approval")
        self._require_on_time("approval", cycle, now)
        band_stars = self.reviewed["stars"]
        if self.direct_grade is not None:
            stars = self.direct_grade["stars"]
            notes = notes + [f"直接定级 direct grading: ★{stars} ({self.direct_grade['reason']})"]
        self._approved(cycle_id=self.cycle_id, org_id=self.org_id, score=score, stars=stars,
                       band_stars=band_stars, quota_notes=notes,
                       scheme_version=cycle.scheme_version, actor=actor, reason=reason)
        ends = now + dt.timedelta(days=cycle.publicity_days)
        self._publicity_opened(cycle_id=self.cycle_id, org_id=self.org_id, ends_at=_ts(ends),
                               actor=actor, reason=reason)

    @event("Approved")
    def _approved(self, cycle_id: str, org_id: str, score: float, stars: int, band_stars: int,
                  quota_notes: list, scheme_version: int, actor: dict, reason: str | None):
        self.score = score
        self.stars = stars
        self.quota_notes = list(quota_notes)
        self.approval_reason = reason

    @event("PublicityOpened")
    def _publicity_opened(self, cycle_id: str, org_id: str, ends_at: str, actor: dict,
                          reason: str | None):
        self.stage = "publicity"
        self.publicity_ends_at = ends_at

    def lodge_objection(self, text: str, now: dt.datetime, actor: dict) -> None:
        self._require_stage("publicity")
        require(now < dt.datetime.fromisoformat(self.publicity_ends_at), "stage",
                f"the publicity (公示) of {self.org_name} ended at {self.publicity_ends_at}")
        require(bool(text), "text", "an objection (异议) needs its text")
        self._objection_lodged(cycle_id=self.cycle_id, org_id=self.org_id, text=text,
                               actor=actor, reason=text)

    @event("ObjectionLodged")
    def _objection_lodged(self, cycle_id: str, org_id: str, text: str, actor: dict, reason: str):
        # numbered in the order lodged (1, 2, …): the number names it in a decision
        self.objections.append({"no": len(self.objections) + 1, "text": text,
                                "by": actor.get("sub"), "status": "open"})

    def open_objections(self) -> list[dict]:
        """Objections (异议) not yet decided (lodged before decisions were kept: open)."""
        return [o for o in self.objections if o.get("status", "open") == "open"]

    def decide_objection(self, objection_no: int, decision: str, actor: dict,
                         reason: str, evidence: list | None = None) -> None:
        """组织部 decides an objection: upheld sends the result back to review (审核,
        outside the original deadlines, like an upheld appeal); dismissed keeps it,
        with the reason. Either way the objector is told (the event names them)."""
        require(1 <= objection_no <= len(self.objections), "objection_no",
                f"{self.org_name} has {len(self.objections)} objection(s) in this cycle")
        objection = self.objections[objection_no - 1]
        require(objection.get("status", "open") == "open", "objection_no",
                f"objection {objection_no} was already decided ({objection.get('status')})")
        require(decision in OBJECTION_DECISIONS, "decision", "upheld or dismissed")
        require(bool(reason), "reason", "a decision on an objection needs its reasons")
        if decision == "upheld":
            require(self.stage == "publicity", "decision",
                    f"{self.org_name} is at {STAGE_ZH[self.stage]}: only a result in 公示 "
                    "publicity goes back to review; dismiss this objection, naming why")
        self._objection_decided(cycle_id=self.cycle_id, org_id=self.org_id,
                                objection_no=objection_no, decision=decision,
                                objector=objection.get("by"), text=objection["text"],
                                actor=actor, reason=reason, evidence=evidence or None)
        if decision == "upheld":
            self._returned(cycle_id=self.cycle_id, org_id=self.org_id, stage="review",
                           from_stage="publicity", comments=reason, actor=actor,
                           reason=f"异议成立 objection {objection_no} upheld: {reason}")

    @event("ObjectionDecided")
    def _objection_decided(self, cycle_id: str, org_id: str, objection_no: int, decision: str,
                           objector: str | None, text: str, actor: dict, reason: str,
                           evidence: Any):
        self.objections[objection_no - 1] = {
            **self.objections[objection_no - 1], "no": objection_no, "status": decision,
            "decided_by": actor.get("sub"), "reason": reason}

    def close_publicity(self, now: dt.datetime, cycle: Cycle, actor: dict,
                        reason: str | None = None) -> None:
        """公示 ends: the result is final; the appeal window (申诉) opens. Every
        objection lodged in the window is decided first."""
        self._require_stage("publicity")
        undecided = [str(o.get("no", i + 1)) for i, o in enumerate(self.objections)
                     if o.get("status", "open") == "open"]
        require(not undecided, "objections",
                f"objection(s) {', '.join(undecided)} to the result of {self.org_name} await "
                "组织部's decision (decide_objection) before it becomes final")
        require(now >= dt.datetime.fromisoformat(self.publicity_ends_at), "stage",
                f"the publicity (公示) of {self.org_name} runs until {self.publicity_ends_at}")
        self._publicity_closed(
            cycle_id=self.cycle_id, org_id=self.org_id, score=self.score, stars=self.stars,
            objections=len(self.objections), final_at=_ts(now),
            appeal_until=_ts(now + dt.timedelta(days=cycle.appeal_days)),
            actor=actor, reason=reason)

    @event("PublicityClosed")
    def _publicity_closed(self, cycle_id: str, org_id: str, score: float, stars: int,
                          objections: int, final_at: str, appeal_until: str, actor: dict,
                          reason: str | None):
        self.stage = "final"
        self.final_at = final_at
        self.appeal_until = appeal_until

    # -- 申诉 -----------------------------------------------------------------
    def lodge_appeal(self, text: str, now: dt.datetime, actor: dict) -> None:
        self._require_stage("final")
        require(self.appeal is None, "org_id", "an appeal (申诉) was already lodged in this cycle")
        require(now <= dt.datetime.fromisoformat(self.appeal_until), "stage",
                f"the appeal window closed at {self.appeal_until}")
        require(bool(text), "text", "an appeal needs its grounds")
        self._appeal_lodged(cycle_id=self.cycle_id, org_id=self.org_id, text=text,
                            actor=actor, reason=text)

    @event("AppealLodged")
    def _appeal_lodged(self, cycle_id: str, org_id: str, text: str, actor: dict, reason: str):
        self.appeal = {"text": text, "appellant": actor.get("sub"), "decision": None}
        self.stage = "appeal"

    def decide_appeal(self, decision: str, actor: dict, reason: str) -> None:
        self._require_stage("appeal")
        require(decision in APPEAL_DECISIONS, "decision", "upheld or dismissed")
        require(bool(reason), "reason", "a decision needs its reasons")
        self._appeal_decided(cycle_id=self.cycle_id, org_id=self.org_id, decision=decision,
                             appellant=self.appeal["appellant"], actor=actor, reason=reason)

    @event("AppealDecided")
    def _appeal_decided(self, cycle_id: str, org_id: str, decision: str, appellant: str,
                        actor: dict, reason: str):
        self.appeal["decision"] = decision
        if decision == "upheld":  # reopens review (审核) with no stage deadline
            self.stage = "review"
            self.reopened = True
        else:
            self.stage = "final"

    # -- 直接定级 and dropping ---------------------------------------------------
    def grade_directly(self, stars: int, actor: dict, reason: str, evidence: list) -> None:
        self._require_stage("approval", "publicity", "final")
        require(stars in (1, 2, 3, 4, 5), "stars", "1 to 5")
        require(bool(reason), "reason", "a direct grading (直接定级) needs a reason")
        require(bool(evidence), "evidence",
                "a direct grading needs evidence (e.g. the honour's certificate)")
        self._directly_graded(cycle_id=self.cycle_id, org_id=self.org_id, stars=stars,
                              previous_stars=self.stars, actor=actor, reason=reason,
                              evidence=evidence)

    @event("DirectlyGraded")
    def _directly_graded(self, cycle_id: str, org_id: str, stars: int,
                         previous_stars: int | None, actor: dict, reason: str, evidence: list):
        self.direct_grade = {"stars": stars, "reason": reason, "evidence": evidence}
        if self.stage in ("publicity", "final"):
            self.stars = stars

    def drop(self, actor: dict, reason: str | None) -> bool:
        if self.stage in ("final", "dropped"):
            return False  # a final result stays on record
        self._dropped(cycle_id=self.cycle_id, org_id=self.org_id, actor=actor, reason=reason)
        return True

    @event("Dropped")
    def _dropped(self, cycle_id: str, org_id: str, actor: dict, reason: str | None):
        self.stage = "dropped"


from services.evaluation.ratings.rating import Rating  # noqa: E402  (re-exported)

# Topics of events and snapshots stored before the move to this package.
OLD_MODULE = "services.evaluation.domain"
for _aggregate in (Scheme, Cycle, Assessment, Rating):
    register_topic(f"{OLD_MODULE}:{_aggregate.__qualname__}", _aggregate)
