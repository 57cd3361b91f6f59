"""Commands and queries of the ratings sub-domain (星级评定): schemes, cycles,
assessments through 自评/审核/审定/公示, objections (异议), appeals (申诉),
direct grading (直接定级), major problems (重大问题) and rectifications (整改).
Parsed by pydantic at the application's edge; the RPC catalogue drives them
with malformed input."""
from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal, Optional
from uuid import UUID

from pydantic import Field

from shared.commands import (Command, Days, Document, Evidence, Ids, Key, Mapping, Moment, Name,
                             Query, Reason, RequiredEvidence, RequiredReason, RequiredText, Text,
                             Version, text_type)
from services.evaluation.ratings.domain import STAGES

Stage = Literal[STAGES]  # type: ignore[valid-type]
Period = text_type(40, 1)
ProblemId = text_type(80, 1)
# Indicator, bonus, deduction and veto codes of a scheme; at most this many per map or list.
CODES_MAX = 200
Codes = Annotated[list[Key], Field(max_length=CODES_MAX)]


# -- commands ----------------------------------------------------------------
class PublishScheme(Command):
    definition: Optional[Mapping] = None
    text: Optional[Document] = None
    format: Literal["yaml", "json"] = "yaml"
    dry_run: bool = False
    reason: Optional[Reason] = None


class OpenCycle(Command):
    name: Name
    level: int = Field(ge=1, le=3)
    period: Period
    deadlines: Annotated[dict[Key, Moment], Field(max_length=10)]
    org_ids: Optional[Ids()] = None
    college_id: Optional[UUID] = None
    scheme_id: Optional[Key] = None
    publicity_days: Optional[Days] = None
    appeal_days: Optional[Days] = None
    auto_add: bool = True
    reason: Optional[Reason] = None


class CycleOrg(Command):
    cycle_id: UUID
    org_id: UUID
    reason: Optional[Reason] = None


class SubmitEntries(Command):
    cycle_id: UUID
    org_id: UUID
    scores: Annotated[dict[Key, float], Field(max_length=CODES_MAX)] = Field(
        default_factory=dict)
    evidence: Annotated[dict[Key, Evidence], Field(max_length=CODES_MAX)] = Field(
        default_factory=dict)
    bonus: Codes = Field(default_factory=list)
    deductions: Codes = Field(default_factory=list)
    vetoes: Codes = Field(default_factory=list)
    appraisal: Optional[float] = None
    comments: Optional[Text] = None
    expected_version: Optional[Version] = None


class ReturnAssessment(Command):
    cycle_id: UUID
    org_id: UUID
    comments: RequiredText
    expected_version: Optional[Version] = None


class Approve(Command):
    cycle_id: UUID
    org_ids: Ids(min_length=1)
    reason: Optional[Reason] = None


class ClosePublicity(Command):
    cycle_id: UUID
    org_ids: Ids(min_length=1)
    reason: Optional[Reason] = None


class ExtendDeadline(Command):
    cycle_id: UUID
    org_id: UUID
    stage: Stage
    until: Moment
    reason: RequiredReason


class GradeDirectly(Command):
    cycle_id: UUID
    org_id: UUID
    stars: int = Field(ge=1, le=5)
    reason: RequiredReason
    evidence: RequiredEvidence


class Lodge(Command):
    cycle_id: UUID
    org_id: UUID
    text: RequiredText


class DecideAppeal(Command):
    cycle_id: UUID
    org_id: UUID
    decision: Literal["upheld", "dismissed"]
    reason: RequiredReason


class DecideObjection(Command):
    cycle_id: UUID
    org_id: UUID
    objection_no: int = Field(ge=1, le=10_000)
    decision: Literal["upheld", "dismissed"]
    reason: RequiredReason
    evidence: Optional[Evidence] = None


class RecordMajorProblem(Command):
    org_id: UUID
    description: RequiredText
    reason: RequiredReason
    evidence: RequiredEvidence
    problem_id: Optional[ProblemId] = None


class PlanRectification(Command):
    org_id: UUID
    problem_id: ProblemId
    plan: RequiredText
    due: dt.date


class CompleteRectification(Command):
    org_id: UUID
    problem_id: ProblemId
    evidence: RequiredEvidence
    reason: Optional[Reason] = None


class VerifyRectification(Command):
    org_id: UUID
    problem_id: ProblemId
    reason: RequiredReason
    evidence: Optional[Evidence] = None


# -- queries -----------------------------------------------------------------
class SchemeRef(Query):
    scheme_id: Key
    version: Optional[Version] = None


class CycleRef(Query):
    cycle_id: UUID


class AssessmentRef(Query):
    cycle_id: UUID
    org_id: UUID


class RatingQuery(Query):
    org_id: UUID
    as_of: Optional[Moment] = None
    replay: bool = False


