"""Pure parts of the as-of audit reads: the problems in force in a replayed
rating, and the literal rows an audit read is appended with."""
import uuid

from eventsourcing.persistence import StoredEvent

from services.evaluation.ratings.stars import replayed_problems
from shared.history import literal_rows


class _Rating:
    problems = {
        "2026-01": {"description": "违规发放津贴", "downgrade_to": 2, "status": "planned",
                    "rectification_due": "2027-02-24", "plan": "退回津贴"},
        "low-stars-c1": {"description": "★3", "downgrade_to": 3, "status": "open",
                         "rectification_due": "2027-03-01", "plan": None, "kind": "low_stars"},
        "2025-07": {"description": "已整改", "downgrade_to": 2, "status": "verified",
                    "rectification_due": "2026-01-01", "plan": "p"},
    }


def test_replayed_problems_are_those_not_verified_with_their_kind():
    assert replayed_problems(None) == []
    assert replayed_problems(_Rating()) == [
        {"problem_id": "2026-01", "kind": "major_problem", "description": "违规发放津贴",
         "downgrade_to": 2, "status": "planned", "rectification_due": "2027-02-24",
         "plan": "退回津贴"},
        {"problem_id": "low-stars-c1", "kind": "low_stars", "description": "★3",
         "downgrade_to": 3, "status": "open", "rectification_due": "2027-03-01", "plan": None}]


def test_literal_rows_spell_each_value_and_double_a_quote():
    oid = uuid.UUID("5e427b70-66ad-47ad-a7e3-340a190ef21b")
    rows = [StoredEvent(originator_id=oid, originator_version=1, topic="a:B.C",
                        state=b"\x00'\\"),
            StoredEvent(originator_id=str(oid), originator_version=2, topic="x'); DROP --",
                        state=b"")]
    assert literal_rows(rows) == (
        "('5e427b70-66ad-47ad-a7e3-340a190ef21b'::uuid, 1, 'a:B.C', '\\x00275c'::bytea), "
        "('5e427b70-66ad-47ad-a7e3-340a190ef21b'::uuid, 2, 'x''); DROP --', '\\x'::bytea)")
