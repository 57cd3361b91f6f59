"""The counting rules of two dashboard answers, on hand-made rows: organisations
owing a rectification (整改) and 双带头人 coverage (R5); and a dashboard's as_of."""
import datetime as dt

import pytest

from shared.domain import end_of_day_moment
from shared.errors import ValidationError
from services.evaluation.ratings.rectifications import _figures
from services.organizations.asof.application import coverage_of


def problem(kind, stage, overdue=False):
    return {"kind": kind, "stage": stage, "overdue": overdue}


def test_an_organisation_owing_two_rectifications_counts_once_and_under_each():
    rows = [{"id": "a"}, {"id": "b"}, {"id": "c"}]
    owed = {"a": [problem("major_problem", "planned", overdue=True),
                  problem("low_stars", "open")],
            "b": [problem("low_stars", "completed")],
            "x": [problem("major_problem", "open")]}  # not among the rows: not counted
    f = _figures(rows, owed, listed=True)
    assert f["organizations"] == 3 and f["rectifications"] == 3
    assert f["owing"] == {"count": 2, "org_ids": ["a", "b"]}
    assert f["by_kind"] == {"major_problem": {"count": 1, "org_ids": ["a"]},
                            "low_stars": {"count": 2, "org_ids": ["a", "b"]}}
    assert f["by_stage"] == {"open": {"count": 1, "org_ids": ["a"]},
                             "planned": {"count": 1, "org_ids": ["a"]},
                             "completed": {"count": 1, "org_ids": ["b"]}}
    assert f["overdue"] == {"count": 1, "org_ids": ["a"]}
    bare = _figures(rows, owed, listed=False)
    assert bare["owing"] == {"count": 2} and bare["by_stage"]["open"] == {"count": 1}
    assert _figures([], owed, listed=True)["owing"] == {"count": 0, "org_ids": []}


def test_coverage_counts_teacher_branches_and_names_what_is_lacking():
    rows = [
        {"college_id": "c1", "college_name": "甲", "branch_id": "b1", "branch_name": "一",
         "secretary_id": "m1", "secretary_name": "张三", "covered": True},
        {"college_id": "c1", "college_name": "甲", "branch_id": "b2", "branch_name": "二",
         "secretary_id": None, "secretary_name": None, "covered": False},
        {"college_id": "c2", "college_name": "乙", "branch_id": "b3", "branch_name": "三",
         "secretary_id": "m3", "secretary_name": "赵六", "covered": False}]
    cov = coverage_of(rows)
    assert cov["school"] == {"teacher_branches": 3, "covered": 1, "coverage": 0.3333}
    assert [(c["college_id"], c["teacher_branches"], c["covered"], c["coverage"],
             [(b["branch_id"], b["why"]) for b in c["lacking"]]) for c in cov["colleges"]] == [
        ("c1", 2, 1, 0.5, [("b2", "没有书记 no secretary")]),
        ("c2", 1, 0, 0.0, [("b3", "书记不是双带头人 secretary is not a 双带头人")])]
    assert coverage_of(rows, "c2")["school"] == {"teacher_branches": 1, "covered": 0,
                                                 "coverage": 0.0}
    assert coverage_of([]) == {"school": {"teacher_branches": 0, "covered": 0,
                                          "coverage": 0.0}, "colleges": []}


def test_a_dashboard_date_is_the_end_of_that_day():
    utc = dt.timezone.utc
    assert end_of_day_moment("2026-03-01") == dt.datetime(2026, 3, 1, 23, 59, 59, 999999,
                                                          tzinfo=utc)
    assert end_of_day_moment("2026-03-01T08:00:00+08:00") == dt.datetime(2026, 3, 1, 0,
                                                                         tzinfo=utc)
    with pytest.raises(ValidationError) as e:
        end_of_day_moment("yesterday")
    assert e.value.fields == ["as_of"]
