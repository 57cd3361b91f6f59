"""Innovation projects (党建创新项目, R7) without a database: two-year rounds,
every illegal move refused naming the current stage, and what each step needs."""
import uuid

import pytest

from services.evaluation.programme.projects.domain import (PROJECT_MOVES, PROJECT_STAGE_ZH,
                                                           PROJECT_STAGES, InnovationProject,
                                                           check_round)
from shared.errors import ValidationError

ACTOR = {"sub": "zzb", "role": "org_admin"}
BRANCH = {"id": str(uuid.uuid4()), "name": "机电学院教工第一党支部", "level": 3}
# what each move needs besides the reason, by target stage
NEEDS = {"approved": {"evidence": ["立项文件.pdf"]}, "rejected": {"evidence": ["评审意见.pdf"]},
         "midterm_checked": {"evidence": ["中期报告.pdf"], "midterm_verdict": "pass"},
         "completed": {"evidence": ["结项材料.pdf"], "results": ["形成党建创新案例1篇"],
                       "grade": "excellent"},
         "terminated": {"evidence": []}}
ROUTES = {"applied": (), "approved": ("approved",), "rejected": ("rejected",),
          "midterm_checked": ("approved", "midterm_checked"),
          "completed": ("approved", "midterm_checked", "completed"),
          "terminated": ("approved", "terminated")}


def at(stage: str) -> InnovationProject:
    p = InnovationProject.apply("2024-2025", BRANCH, None, "“红色工匠”支部特色", "简介",
                                "2024-03-01", ACTOR, None, ["申报书.pdf"])
    for i, step in enumerate(ROUTES[stage]):
        p.move(step, f"2024-0{i + 4}-01", ACTOR, "按计划", **NEEDS[step])
    assert p.stage == stage
    return p


def test_rounds_are_two_consecutive_years():
    assert check_round("2024-2025") == ("2024-2025", 2024, 2025)
    for bad in ("2024", "2024-2026", "2025-2024", "24-25", None, "2024-2025x"):
        with pytest.raises(ValidationError) as err:
            check_round(bad)
        assert err.value.fields == ["round"]
    with pytest.raises(ValidationError) as err:  # applied for in the round's first year or before
        InnovationProject.apply("2024-2025", BRANCH, None, "x", None, "2025-03-01", ACTOR, None, [])
    assert err.value.fields == ["on"]


@pytest.mark.parametrize("stage", PROJECT_STAGES)
def test_every_illegal_move_is_refused_naming_the_current_stage(stage):
    for target in PROJECT_STAGES:
        p = at(stage)
        if target in PROJECT_MOVES[stage]:
            p.move(target, "2024-12-01", ACTOR, "下一步", **{"evidence": [], **NEEDS.get(target, {})})
            assert p.stage == target
            continue
        with pytest.raises(ValidationError) as err:
            p.move(target, "2024-12-01", ACTOR, "越级", **{"evidence": [], **NEEDS.get(target, {})})
        assert err.value.fields == ["to_stage"]
        assert f"is at {PROJECT_STAGE_ZH[stage]} {stage}" in str(err.value)
        assert p.stage == stage


def test_each_step_needs_its_document_verdict_or_results():
    p = at("applied")
    with pytest.raises(ValidationError) as err:
        p.move("approved", "2024-04-01", ACTOR, "立项", [])
    assert err.value.fields == ["evidence"]
    with pytest.raises(ValidationError) as err:
        p.move("approved", "2024-02-01", ACTOR, "立项", ["x"])  # before the application
    assert err.value.fields == ["on"]
    with pytest.raises(ValidationError) as err:
        p.move("approved", "2024-04-01", ACTOR, " ", ["x"])
    assert err.value.fields == ["reason"]
    p = at("approved")
    with pytest.raises(ValidationError) as err:
        p.move("midterm_checked", "2024-09-01", ACTOR, "中期", ["r.pdf"])
    assert err.value.fields == ["midterm_verdict"]
    p.move("midterm_checked", "2024-09-01", ACTOR, "中期", ["r.pdf"], midterm_verdict="rectify")
    assert p.midterm_verdict == "rectify"
    with pytest.raises(ValidationError) as err:
        p.move("completed", "2025-10-01", ACTOR, "结项", ["c.pdf"], grade="good")
    assert err.value.fields == ["results"]
    with pytest.raises(ValidationError) as err:
        p.move("completed", "2025-10-01", ACTOR, "结项", ["c.pdf"], results=["案例"], grade="A")
    assert err.value.fields == ["grade"]
    with pytest.raises(ValidationError) as err:
        p.move("terminated", "2025-10-01", ACTOR, "终止", [], results=["案例"])
    assert err.value.fields == ["results"]
    p.move("completed", "2025-10-01", ACTOR, "结项", ["c.pdf"], results=["案例", "品牌"],
           grade="good")
    assert (p.stage, p.results, p.grade) == ("completed", ["案例", "品牌"], "good")
    assert p.id == InnovationProject.id_for("2024-2025", BRANCH["id"])  # one per org and round
