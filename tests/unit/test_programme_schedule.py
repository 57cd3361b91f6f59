"""Schedule rules (R6 二.4, R8 二.2) without a database: the periods each rule is
checked in, the shipped rules against the seed's text, and a period's items
and overdue flags (once per subject)."""
import datetime as dt
from pathlib import Path

import pytest

from services.evaluation.programme.schedule.application import load_schedule_rules
from services.evaluation.programme.schedule.domain import (Schedule, check_rules, period_of,
                                                           previous_period)
from shared.errors import ValidationError

D = dt.date
CAL = {"spring_starts": "02-01", "autumn_starts": "08-01"}
ACTOR = {"sub": "dzb-1", "role": "department_staff", "org": "general_office"}
SEED = Path(__file__).parents[1] / "data" / "seed_000_89b3b0897c723446.txt"


def span(p):
    return p["key"], p["starts_on"], p["ends_on"]


def test_semesters_half_years_and_years():
    assert span(period_of("semester", D(2024, 3, 1), CAL)) == \
        ("2024-spring", D(2024, 2, 1), D(2024, 7, 31))
    assert span(period_of("semester", D(2024, 8, 1), CAL)) == \
        ("2024-autumn", D(2024, 8, 1), D(2025, 1, 31))
    # January belongs to the autumn semester that began the year before
    assert period_of("semester", D(2025, 1, 31), CAL)["key"] == "2024-autumn"
    assert period_of("semester", D(2025, 2, 1), CAL)["key"] == "2025-spring"
    assert period_of("semester", D(2024, 3, 1), CAL)["name"] == "2024年春季学期"
    assert span(period_of("half_year", D(2024, 6, 30), CAL)) == \
        ("2024-H1", D(2024, 1, 1), D(2024, 6, 30))
    assert span(period_of("half_year", D(2024, 7, 1), CAL)) == \
        ("2024-H2", D(2024, 7, 1), D(2024, 12, 31))
    assert period_of("year", D(2024, 12, 31), CAL)["name"] == "2024年度"
    assert previous_period("semester", D(2024, 8, 2), CAL)["key"] == "2024-spring"
    assert previous_period("semester", D(2024, 3, 1), CAL)["key"] == "2023-autumn"
    assert previous_period("half_year", D(2024, 1, 1), CAL)["key"] == "2023-H2"
    assert previous_period("year", D(2024, 1, 1), CAL)["key"] == "2023"


def test_the_shipped_rules_say_what_the_seed_says():
    seed = SEED.read_text(encoding="utf-8")
    rules = load_schedule_rules()["rules"]
    assert {code: (r["period"], r["min"], r["subjects"]["kind"]) for code, r in rules.items()} == {
        "leader_lecture": ("semester", 1, "leaders"),
        "double_high_report": ("half_year", 1, "university"),
        "problem_list": ("year", 1, "university"), "task_list": ("year", 1, "university"),
        "mutual_inspection": ("semester", 1, "colleges")}
    for r in rules.values():
        assert r["text"] in seed  # each rule quotes the seed
    with pytest.raises(ValidationError) as err:
        check_rules({"calendar": {"spring_starts": "13-01", "autumn_starts": "08-01"},
                     "rules": {"x": {"name": "x", "seed": "二.4", "department": "d",
                                     "period": "weekly", "min": 0,
                                     "subjects": {"kind": "everyone"}}}})
    assert err.value.fields == ["calendar.spring_starts", "rules.x.period", "rules.x.min",
                                "rules.x.subjects.kind"]


RULE = {"name": "校领导讲党课", "seed": "二.4", "text": "每学期至少1次", "min": 1,
        "period": "semester", "department": "general_office"}
LEADERS = [{"kind": "leader", "id": "m1", "name": "王书记"},
           {"kind": "leader", "id": "m2", "name": "李校长"}]


def spring_2024() -> Schedule:
    return Schedule.open_for("leader_lecture", RULE, period_of("semester", D(2024, 3, 1), CAL),
                             ACTOR)


def test_items_are_recorded_within_their_period_with_evidence():
    s = spring_2024()
    for on, field in (("2024-01-31", "on"), ("2024-08-01", "on")):
        with pytest.raises(ValidationError) as err:
            s.record(LEADERS[0], on, "党课", ACTOR, None, ["讲稿.pdf"])
        assert err.value.fields == [field] and "2024-02-01 to 2024-07-31" in str(err.value)
    with pytest.raises(ValidationError) as err:
        s.record(LEADERS[0], "2024-04-01", "党课", ACTOR, None, [])
    assert err.value.fields == ["evidence"]
    with pytest.raises(ValidationError) as err:
        s.record(LEADERS[0], "2024-04-01", " ", ACTOR, None, ["x"])
    assert err.value.fields == ["title"]
    s.record(LEADERS[0], "2024-04-01", "学习二十大精神专题党课", ACTOR, None, ["讲稿.pdf"])
    assert s.counts == {"m1": 1}


def test_an_unmet_subject_is_flagged_once_after_the_period_ends():
    s = spring_2024()
    s.record(LEADERS[0], "2024-04-01", "专题党课", ACTOR, None, ["讲稿.pdf"])
    assert s.unmet(LEADERS, "2024-07-31") == []  # the last day still counts
    assert s.unmet(LEADERS, "2024-08-01") == [LEADERS[1]]
    assert s.flag_overdue(LEADERS[0], RULE, "2024-08-01", ACTOR) is False  # m1 gave one
    assert s.flag_overdue(LEADERS[1], RULE, "2024-08-01", ACTOR) is True
    assert s.flag_overdue(LEADERS[1], RULE, "2024-08-02", ACTOR) is False  # once
    assert s.flagged == {"m2": "2024-08-01"} and s.unmet(LEADERS, "2024-09-01") == []
    overdue = s.collect_events()[-1]
    assert (overdue.subject_name, overdue.required, overdue.recorded, overdue.department,
            overdue.period_name) == ("李校长", 1, 0, "general_office", "2024年春季学期")
