"""``get_history(org_id, …)``: every event of an organisation's rating — cycle
results, direct gradings, downgrades for major problems, rectifications —
with time, actor and role, reason, evidence and scheme version, Chinese
labels, filtered by time and kind, as JSON or CSV; the read is recorded
(``list_audit_reads``)."""
from __future__ import annotations

from shared.identity import AUDITOR, ORG_ADMIN, Caller
from services.evaluation.domain import Rating

EVENT_LABELS = {
    "rating_opened": "建立星级档案", "rating_underlying_set": "考评结果定级",
    "rating_changed": "星级变动", "rating_fell_to_three_or_below": "降至三星及以下（需整改）",
    "rating_major_problem_recorded": "重大问题降级", "rating_rectification_planned": "整改计划",
    "rating_rectification_completed": "整改完成", "rating_rectification_verified": "整改验收",
}


class RatingHistory:
    """Mixed into the evaluation application (with ``shared.history.AuditedHistory``)."""

    def get_history(self, caller: Caller, payload: dict) -> list[dict] | dict:
        caller.require_role(ORG_ADMIN, AUDITOR)
        org_id = self._as_uuid(payload.get("org_id"), "organisation")
        filters = {k: v for k, v in payload.items() if k != "org_id"}
        return self.audited_history(caller, {"aggregate_id": Rating.id_for(org_id), **filters},
                                    EVENT_LABELS, f"rating of organisation {org_id}",
                                    subject_id=org_id)
