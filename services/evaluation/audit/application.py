"""For auditors (纪委办): ``get_history(org_id, …)``, every event of an
organisation's rating — cycle results, direct gradings, downgrades for major
problems, rectifications — with time, actor and role, reason, evidence and
scheme version, Chinese labels, filtered by time and kind, as JSON or CSV;
and a cycle's assessments as they were at a moment, replayed from the store.
Every such read is recorded (``list_audit_reads``)."""
from __future__ import annotations

from typing import Optional
from uuid import UUID

from shared.commands import CollegeFilter, Moment, Query
from shared.domain import parse_moment
from shared.history import HistoryFilters
from shared.errors import NotFound
from shared.identity import AUDITOR, ORG_ADMIN, Caller
from services.evaluation.ratings.domain import Assessment, Cycle, Rating

EVENT_LABELS = {
    "rating_opened": "建立星级档案", "rating_underlying_set": "考评结果定级",
    "rating_changed": "星级变动", "rating_fell_to_three_or_below": "降至三星及以下（需整改）",
    "rating_major_problem_recorded": "重大问题降级", "rating_rectification_planned": "整改计划",
    "rating_rectification_completed": "整改完成", "rating_rectification_verified": "整改验收",
}


class RatingHistoryQuery(HistoryFilters):
    org_id: UUID


class AssessmentsAsOfQuery(Query):
    cycle_id: UUID
    as_of: Moment
    org_id: Optional[UUID] = None


class DistributionQuery(CollegeFilter):
    as_of: Optional[Moment] = None


class RatingHistory:
    """Mixed into the evaluation application (with ``shared.history.AuditedHistory``)."""

    def get_history(self, caller: Caller, payload: dict) -> list[dict] | dict:
        caller.require_role(ORG_ADMIN, AUDITOR)
        org_id = RatingHistoryQuery.parse(payload).org_id
        filters = {k: v for k, v in payload.items() if k != "org_id"}
        return self.audited_history(caller, {"aggregate_id": Rating.id_for(org_id), **filters},
                                    EVENT_LABELS, f"rating of organisation {org_id}",
                                    subject_id=org_id)


class AssessmentsAsOf:
    """Mixed into the evaluation application (with ``AuditedHistory``)."""

    def assessments_as_of(self, caller: Caller, cycle_id, as_of: str,
                          org_id=None) -> dict:
        """The cycle's assessments (or one) as they stood at ``as_of``: stage,
        entries, scores, stars, notes — each replayed from its own events."""
        caller.require_role(ORG_ADMIN, AUDITOR)
        q = AssessmentsAsOfQuery.of(cycle_id=cycle_id, as_of=as_of, org_id=org_id)
        cycle_id, as_of, org_id = q.cycle_id, q.as_of, q.org_id
        moment = parse_moment(as_of, "as_of")
        cycle = self.state_as_of(cycle_id, moment, "cycle")
        if not isinstance(cycle, Cycle):
            raise NotFound(f"cycle {cycle_id} was not open at {as_of}")
        org_ids = [str(org_id)] if org_id else list(cycle.org_ids)
        out = []
        for oid in org_ids:
            a = self.state_as_of(Assessment.id_for(cycle.id, oid), moment, "assessment")
            if isinstance(a, Assessment):
                out.append({**self._assessment_out(a, cycle), "as_of": moment.isoformat()})
        if org_id and not out:
            raise NotFound(f"no assessment of {org_id} in cycle {cycle_id} at {as_of}")
        self.record_audit_read(caller, cycle.id, "assessments_as_of",
                               {"as_of": as_of, "org_id": str(org_id) if org_id else None})
        return {"cycle_id": str(cycle.id), "as_of": moment.isoformat(),
                "scheme_version": cycle.scheme_version, "assessments": out}
