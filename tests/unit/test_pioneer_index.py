"""The pioneer index (锋领指数) under the shipped scheme, computed by hand:
base 60, positive up to +20, negative down to −20, 清零 conditions."""
import copy

import pytest

from services.evaluation.members.domain import (compute_index, default_index_scheme,
                                                validate_index_scheme)
from shared.errors import ValidationError

SCHEME = default_index_scheme()


def meeting(n, kind="general_meeting", status="attended"):
    return {"record_id": f"m{n}", "kind": kind, "on": f"2026-03-{n:02d}", "status": status,
            "label": f"会议{n}"}


def record(n, kind, **details):
    return {"record_id": f"r{n}", "kind": kind, "on": "2026-06-01", "details": details,
            "label": f"记录{n}"}


def items(result, part):
    return {i["code"]: i["points"] for i in result[part]["items"]}


def test_no_records_is_the_base():
    result = compute_index(SCHEME, {"meetings": [], "records": []})
    assert result["score"] == 60.0 and not result["zeroed"]


def test_positive_and_negative_items_with_their_records():
    facts = {"meetings": [meeting(1), meeting(2), meeting(3), meeting(4, status="absent")]
             + [meeting(10 + i, "theme_day") for i in range(10)],
             "records": [record(1, "checkup", result="good", period="2026"),
                         record(2, "team", team="智能制造攻坚团队")]}
    result = compute_index(SCHEME, facts)
    # attendance 6 × 3/4 = 4.5; theme days 0.5 × 10 = 5, at most 4; check-up good 1; team 3
    assert items(result, "positive") == {"org_life_attendance": 4.5, "theme_days": 4.0,
                                         "checkup_good": 1.0, "project_team": 3.0}
    # one absence without leave: −2
    assert items(result, "negative") == {"unexcused_absence": 2.0}
    assert result["score"] == 60 + 12.5 - 2 == 70.5
    attendance = result["positive"]["items"][0]
    assert [r["record_id"] for r in attendance["records"]] == ["m1", "m2", "m3", "m4"]
    assert result["negative"]["items"][0]["records"][0]["record_id"] == "m4"
    assert result["explanation"] == "60 + 12.5 − 2.0 = 70.5"


def test_leave_is_excused_from_the_attendance_rate():
    facts = {"meetings": [meeting(1), meeting(2), meeting(3, status="leave"),
                          meeting(4, status="leave")], "records": []}
    result = compute_index(SCHEME, facts)
    assert items(result, "positive") == {"org_life_attendance": 6.0}
    assert result["score"] == 66.0


def test_positive_part_capped_at_20():
    facts = {"meetings": [meeting(i) for i in range(1, 5)]
             + [meeting(10 + i, "theme_day") for i in range(8)],
             "records": [record(1, "checkup", result="excellent", period="2026"),
                         record(2, "appraisal", grade="excellent"),
                         record(3, "team", team="团队"),
                         record(4, "course_project", title="课程", status="completed"),
                         record(5, "pledge", content="甲", status="fulfilled"),
                         record(6, "pledge", content="乙", status="fulfilled"),
                         record(7, "pledge", content="丙", status="fulfilled")]}
    result = compute_index(SCHEME, facts)
    # 6 + 4 + 3 + 5 + 3 + 3 + min(3, 2) = 26 → capped at 20
    assert result["positive"]["raw"] == 26.0 and result["positive"]["applied"] == 20.0
    assert result["score"] == 80.0


def test_negative_part_capped_at_20():
    facts = {"meetings": [meeting(10 + i, "theme_day", "absent") for i in range(6)],
             "records": [record(1, "checkup", result="poor", period="2026"),
                         record(2, "appraisal", grade="basically_qualified"),
                         record(3, "violation", line="bottom_line", description="x",
                                finding="y")]}
    result = compute_index(SCHEME, facts)
    # absences 2 × 6 = 12, at most 10; poor check-up 6; 基本合格 8; one 底线 10 → 34 → 20
    assert items(result, "negative") == {"unexcused_absence": 10.0, "checkup_weak": 6.0,
                                         "appraisal_basic": 8.0, "bottom_line": 10.0}
    assert result["negative"]["raw"] == 34.0 and result["score"] == 40.0


@pytest.mark.parametrize("zeroing, recs", [
    (["appraisal_unqualified"], [record(1, "appraisal", grade="unqualified",
                                        handling="rectify_in_time")]),
    (["red_line"], [record(2, "violation", line="red_line", description="x", finding="y")]),
    (["appraisal_unqualified", "red_line"],
     [record(1, "appraisal", grade="unqualified", handling="removed"),
      record(2, "violation", line="red_line", description="x", finding="y")]),
])
def test_each_zeroing_condition_alone_and_together(zeroing, recs):
    facts = {"meetings": [meeting(i) for i in range(1, 5)],
             "records": recs + [record(9, "team", team="团队")]}
    result = compute_index(SCHEME, facts)
    assert result["score"] == 0.0 and result["zeroed"]
    assert [z["code"] for z in result["zeroed_by"]] == zeroing
    assert result["zeroed_by"][0]["records"][0]["record_id"] == recs[0]["record_id"]
    assert "清零" in result["explanation"]


def test_study_time_likes_votes_reposts_are_never_inputs():
    bad = copy.deepcopy(SCHEME)
    bad["positive"]["items"].append({"code": "study", "name": "学习时长",
                                     "source": "study.minutes", "points": 1})
    bad["positive"]["items"].append({"code": "likes", "name": "点赞", "source": "post.likes",
                                     "points": 1})
    with pytest.raises(ValidationError) as e:
        validate_index_scheme(bad)
    assert e.value.fields == ["positive.items[7].source", "positive.items[8].source"]
    assert "never inputs" in e.value.errors[0]["message"]
    assert "never inputs" in e.value.errors[1]["message"]
