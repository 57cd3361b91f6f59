"""The creation programme (三级联创) aggregates, without a database: the
candidacy lifecycle with every illegal move refused, targets, brands, the task
book's milestones and overdue flag, and the 26 measures against the seed's text."""
import re
import uuid
from pathlib import Path

import pytest

from services.evaluation.programme.application import DEFAULT_PLAN, load_task_book
from services.evaluation.programme.domain import (MOVES, STAGES, Brand, Candidacy, Plan, Task,
                                                  STAGE_ZH)
from services.organizations.departments.domain import ALL_COLLEGES, load_defaults
from shared.errors import ValidationError

ACTOR = {"sub": "zzb", "role": "org_admin"}
SEED = Path(__file__).parents[1] / "data" / "seed_000_89b3b0897c723446.txt"
BRANCH = {"id": str(uuid.uuid4()), "name": "机电学院教工第一党支部", "level": 3}
COLLEGE = {"id": str(uuid.uuid4()), "name": "机电学院党总支", "level": 2}
UNIVERSITY = {"id": str(uuid.uuid4()), "name": "学校党委", "level": 1}
PATH = ("applied", "accepted", "acceptance_review")


def nominate(org=BRANCH, tier="school"):
    return Candidacy.nominate(org, tier, 1, "2024-01-10", None, None, ACTOR, "推荐培育", [])


def at_stage(stage: str) -> Candidacy:
    c = nominate()
    route = {"cultivating": (), "applied": PATH[:1], "accepted": PATH[:2],
             "acceptance_review": PATH, "passed": PATH + ("passed",),
             "failed": PATH + ("failed",)}[stage]
    for i, step in enumerate(route):
        c.move(step, f"2024-0{i + 2}-01", ACTOR, "按计划推进", ["验收报告.pdf"])
    assert c.stage == stage
    return c


def test_the_lifecycle_records_each_move_dated_with_actor_reason_and_evidence():
    c = at_stage("passed")
    assert [m["to_stage"] for m in c.moves] == ["applied", "accepted", "acceptance_review",
                                                "passed"]
    assert c.moves[-1] == {"from_stage": "acceptance_review", "to_stage": "passed",
                           "on": "2024-05-01", "actor": ACTOR, "reason": "按计划推进",
                           "evidence": ["验收报告.pdf"]}
    assert c.held_from == "2024-05-01" and c.title == "model_branch"
    events = c.collect_events()
    moved = [e for e in events if type(e).__name__ == "Moved"]
    assert (moved[0].org_id, moved[0].from_stage, moved[0].to_stage) == \
        (BRANCH["id"], "cultivating", "applied")


@pytest.mark.parametrize("stage", STAGES)
def test_every_illegal_move_is_refused_naming_the_current_stage(stage):
    illegal = [s for s in STAGES if s not in MOVES[stage]]
    assert illegal  # even a final stage refuses every move
    for target in illegal:
        c = at_stage(stage)
        before = len(c.moves)
        with pytest.raises(ValidationError) as err:
            c.move(target, "2024-12-01", ACTOR, "试图跳转", ["x"])
        assert err.value.fields == ["to_stage"]
        assert f"is at {STAGE_ZH[stage]} {stage}" in str(err.value)
        assert c.stage == stage and len(c.moves) == before


def test_moves_need_a_reason_a_date_in_order_and_evidence_to_conclude():
    c = at_stage("acceptance_review")
    with pytest.raises(ValidationError) as err:
        c.move("passed", "2024-06-01", ACTOR, "", ["x"])
    assert err.value.fields == ["reason"]
    with pytest.raises(ValidationError) as err:
        c.move("passed", "2024-01-01", ACTOR, "验收通过", ["x"])
    assert err.value.fields == ["on"]
    with pytest.raises(ValidationError) as err:
        c.move("failed", "2024-06-01", ACTOR, "验收未通过", [])
    assert err.value.fields == ["evidence"]
    with pytest.raises(ValidationError) as err:
        c.move("passed", "2024-06-01", ACTOR, "验收通过", ["x"], held_until="2024-05-01")
    assert err.value.fields == ["held_until"]
    c.move("passed", "2024-06-01", ACTOR, "验收通过", ["x"], held_until="2027-06-01")
    assert (c.held_from, c.held_until) == ("2024-06-01", "2027-06-01")


def test_titles_follow_the_level_and_the_university_starts_at_provincial():
    assert nominate(COLLEGE).title == "benchmark_college"
    assert nominate(UNIVERSITY, "provincial").title == "demonstration_university"
    with pytest.raises(ValidationError) as err:
        nominate(UNIVERSITY, "school")
    assert err.value.fields == ["tier"]
    with pytest.raises(ValidationError) as err:
        nominate(BRANCH, "city")
    assert err.value.fields == ["tier"]


def test_plan_targets_are_checked_and_the_default_plan_is_the_seeds():
    plan = Plan.define(actor=ACTOR, reason="seed", **DEFAULT_PLAN)
    assert {(t["title"], t["tier"]): (t["min"], t["max"]) for t in plan.targets} == {
        ("demonstration_university", "national"): (1, 1),
        ("benchmark_college", "national"): (1, 1), ("model_branch", "national"): (1, 1),
        ("benchmark_college", "provincial"): (3, 4), ("model_branch", "provincial"): (3, 4)}
    assert plan.brand_target == {"min_tier": "provincial", "min": 10}
    with pytest.raises(ValidationError) as err:
        Plan.define("x", "x", "2024-01-01", "2023-01-01",
                    [{"title": "model_branch", "tier": "moon", "min": 0}], None, ACTOR, None)
    assert err.value.fields == ["ends_on"]
    with pytest.raises(ValidationError) as err:
        plan.retarget([{"title": "model_branch", "tier": "moon", "min": 0},
                       {"title": "nope", "tier": "school", "min": 2, "max": 1}], None, ACTOR, "r")
    assert set(err.value.fields) == {"targets[0].tier", "targets[0].min", "targets[1].title",
                                     "targets[1].max"}


def test_a_brand_belongs_to_the_right_level_and_is_recognised_once_per_level():
    with pytest.raises(ValidationError) as err:
        Brand.register(uuid.uuid4(), "红色引擎", "college_brand", BRANCH, ACTOR, None, [])
    assert err.value.fields == ["org_id"]
    brand = Brand.register(uuid.uuid4(), "红色引擎", "branch_feature", BRANCH, ACTOR, None, [])
    brand.recognise("school", "2023-03-01", ACTOR, None, ["校发〔2023〕1号"])
    brand.recognise("provincial", "2023-09-01", ACTOR, None, ["省教育厅认定"])
    assert brand.level == "provincial"
    with pytest.raises(ValidationError) as err:
        brand.recognise("provincial", "2023-10-01", ACTOR, None, ["again"])
    assert err.value.fields == ["level"]


def test_a_milestone_is_flagged_overdue_once_per_due_date_and_only_the_lead_completes():
    task = Task.register("三.4", "三", "实施组织力提升工程", "organization", ["all_colleges"], ACTOR)
    task.set_milestone("2024-1", "完成支部书记培训", 2024, "2024-06-30", ACTOR, None)
    assert task.overdue_milestones("2024-06-30") == []
    assert task.flag_overdue("2024-1", "2024-07-01", ACTOR) is True
    assert task.flag_overdue("2024-1", "2024-07-02", ACTOR) is False
    assert task.overdue_milestones("2024-07-02") == []
    task.set_milestone("2024-1", "完成支部书记培训", 2024, "2024-09-30", ACTOR, "延期")
    assert task.overdue_milestones("2024-10-01") == ["2024-1"]  # a new due date, a new flag
    with pytest.raises(ValidationError) as err:
        task.report("2024-1", "all_colleges", "完成", True, "2024-09-01", ACTOR, ["名单"])
    assert err.value.fields == ["completed"]
    with pytest.raises(ValidationError) as err:
        task.report("2024-1", "organization", "完成", True, "2024-09-01", ACTOR, [])
    assert err.value.fields == ["evidence"]
    task.report("2024-1", "organization", "培训完成", True, "2024-09-01", ACTOR, ["签到表"])
    assert task.overdue_milestones("2024-12-01") == []
    overdue = [e for e in task.collect_events() if type(e).__name__ == "MilestoneOverdue"]
    assert [(e.milestone, e.lead_department, e.due_on) for e in overdue] == \
        [("完成支部书记培训", "organization", "2024-06-30")]


# -- the 26 measures against the seed's text ---------------------------------------------
def seed_measures() -> list[tuple]:
    """(number, title, lead, [cooperating]) parsed from the seed, in Chinese."""
    text = SEED.read_text(encoding="utf-8")
    section, found = None, []
    for line in text.splitlines():
        heading = re.match(r"^([一二三四五六])、", line)
        if heading:
            section = heading.group(1)
            continue
        m = re.match(r"^(\d)\.(.*?)。.*\(牵头部门:(.*?),配合部门:(.*?)\)$", line)
        if m:
            found.append((f"{section}.{m.group(1)}", m.group(2), m.group(3),
                          m.group(4).split("、")))
    return found


def test_the_26_measures_are_the_seeds_with_their_lead_and_cooperating_departments():
    book = load_task_book()
    # department codes are organizations' records: its shipped default departments
    names = {d["code"]: d["name"] for d in load_defaults()}
    assert len(names) == 15 and "all_colleges" not in names
    names[ALL_COLLEGES[0]] = ALL_COLLEGES[1]  # 各二级学院 = every college
    expected = seed_measures()
    assert len(expected) == 26 and len(book["measures"]) == 26
    shipped = [(m["number"], m["title"], names[m["lead"]], [names[c] for c in m["cooperating"]])
               for m in book["measures"]]
    assert shipped == expected
    sections = [m["number"].split(".")[0] for m in book["measures"]]
    assert [sections.count(s) for s in "二三四五六"] == [6, 5, 7, 5, 3]
    # spot checks straight from the text
    by_number = {m["number"]: m for m in book["measures"]}
    assert by_number["二.3"]["cooperating"] == ["organization", "science_technology",
                                                "quality_control", "trade_union",
                                                "information_center"]
    assert by_number["四.3"]["lead"] == "discipline"
    assert len(by_number["五.1"]["cooperating"]) == 11
    # every department the seed names is a shipped default (and each default is used)
    used = {m["lead"] for m in book["measures"]} | {c for m in book["measures"]
                                                    for c in m["cooperating"]}
    assert used == set(names)


# -- 验收 (acceptance) scored against the standard ---------------------------------------
RULE = {"pass_mark": 80, "dimension_floor": 60}
SCHEME = {"scheme_id": "model_branch", "version": 1, "level": 3}


def result(score, dims=((15, 15), (10, 10)), vetoes=()):
    return {"score": score, "band_stars": 4, "vetoes": list(vetoes),
            "dimensions": [{"code": f"d{i}", "name": f"维度{i}", "weight": w, "points": p}
                           for i, (w, p) in enumerate(dims)]}


def test_the_acceptance_rule_needs_the_mark_every_dimension_and_no_veto():
    from services.evaluation.programme.domain import judge_acceptance
    assert judge_acceptance(result(80), RULE)[0] == "passed"  # the mark itself passes
    outcome, findings = judge_acceptance(result(79.99), RULE)
    assert outcome == "failed" and [f["condition"] for f in findings if not f["met"]] == \
        ["pass_mark"]
    outcome, findings = judge_acceptance(result(92, dims=((15, 8.99), (10, 6))), RULE)
    assert outcome == "failed" and [f["condition"] for f in findings if not f["met"]] == \
        ["dimension:d0"]  # 8.99 < 60% of 15 = 9; 6 of 10 holds
    outcome, findings = judge_acceptance(result(95, vetoes=["ideology_incident"]), RULE)
    assert outcome == "failed" and "ideology_incident" in findings[-1]["detail"]


def test_only_a_candidacy_at_acceptance_is_scored_and_the_result_moves_it():
    for stage in ("cultivating", "applied", "accepted", "passed", "failed"):
        c = at_stage(stage)
        with pytest.raises(ValidationError) as err:
            c.score_acceptance(SCHEME, {}, result(95), RULE, "2024-06-01", ACTOR, "验收",
                               ["验收报告.pdf"])
        assert err.value.fields == ["candidacy_id"] and STAGE_ZH[stage] in str(err.value)
    c = at_stage("acceptance_review")
    with pytest.raises(ValidationError) as err:  # a level-2 scheme does not score a branch
        c.score_acceptance({**SCHEME, "level": 2}, {}, result(95), RULE, "2024-06-01", ACTOR,
                           "验收", ["r.pdf"])
    assert err.value.fields == ["scheme_id"]
    with pytest.raises(ValidationError) as err:
        c.score_acceptance(SCHEME, {}, result(95), RULE, "2024-06-01", ACTOR, "验收", [])
    assert err.value.fields == ["documents"]
    with pytest.raises(ValidationError) as err:  # a failure holds no title
        c.score_acceptance(SCHEME, {}, result(70), RULE, "2024-06-01", ACTOR, "验收", ["r.pdf"],
                           held_until="2027-12-31")
    assert err.value.fields == ["held_until"]
    assert c.score_acceptance(SCHEME, {"scores": {}}, result(70), RULE, "2024-06-01", ACTOR,
                              "验收", ["r.pdf"]) == "failed"
    assert c.stage == "failed" and c.moves[-1]["reason"].startswith("验收未达标 (得分 score 70")
    assert c.acceptances == [{"score": 70, "outcome": "failed", "on": "2024-06-01"}]


def test_a_measure_is_reassigned_with_a_reason_and_later_flags_name_the_new_lead():
    task = Task.register("二.4", "二", "专题汇报", "general_office", ["organization"], ACTOR)
    with pytest.raises(ValidationError) as err:  # the lead cannot also cooperate
        task.reassign("publicity", ["publicity", "organization"], ACTOR, "调整分工")
    assert err.value.fields == ["cooperating"]
    with pytest.raises(ValidationError) as err:  # nothing would change
        task.reassign("general_office", ["organization"], ACTOR, "调整分工")
    assert err.value.fields == ["lead_department"]
    with pytest.raises(ValidationError) as err:
        task.reassign("publicity", ["organization"], ACTOR, " ")
    assert err.value.fields == ["reason"]
    task.reassign("publicity", ["organization", "general_office", "organization"], ACTOR,
                  "党委会决定调整牵头部门")
    assert (task.lead_department, task.cooperating) == \
        ("publicity", ["organization", "general_office"])
    event = task.collect_events()[-1]
    assert (event.previous_lead, event.previous_cooperating, event.reason, event.actor) == \
        ("general_office", ["organization"], "党委会决定调整牵头部门", ACTOR)
    task.set_milestone("m", "汇报", 2024, "2024-06-30", ACTOR, None)
    task.flag_overdue("m", "2024-07-01", ACTOR)
    assert task.collect_events()[-1].lead_department == "publicity"
