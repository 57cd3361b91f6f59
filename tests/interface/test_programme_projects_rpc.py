"""Innovation projects (党建创新项目, R7) through evaluation's RPC: a branch applies
for its own, 组织部 approves, checks at mid-term and completes it with results;
illegal moves and other organisations' secretaries are refused; queries by
round, organisation, college and stage."""
import pytest

from shared.errors import Forbidden, ValidationError
from tests.e2e.test_evaluation_workflow_e2e import tree  # noqa: F401


def test_a_round_of_projects_from_application_to_results(tree, rpc_as):  # noqa: F811
    admin = rpc_as("org_admin").evaluation
    sec1 = rpc_as("branch_secretary", sub=tree["sec1"], org=tree["b1"]).evaluation
    sec2 = rpc_as("branch_secretary", sub=tree["sec2"], org=tree["b2"]).evaluation
    college = rpc_as("college_secretary", sub=tree["college_sec"], org=tree["college"]).evaluation

    with pytest.raises(Forbidden):  # 二支部's secretary does not apply for 一支部
        sec2.apply_innovation_project(round="2024-2025", org_id=tree["b1"], name="x",
                                      on="2024-03-01")
    with pytest.raises(ValidationError) as err:
        sec1.apply_innovation_project(round="2024-2026", org_id=tree["b1"], name="x")
    assert err.value.fields == ["round"]
    mine = sec1.apply_innovation_project(round="2024-2025", org_id=tree["b1"],
                                         name="“匠心铸魂”一支部一特色", summary="党建+专业群",
                                         on="2024-03-01", evidence=["申报书.pdf"])
    assert (mine["stage"], mine["stage_zh"], mine["college_id"]) == \
        ("applied", "申报", tree["college"])
    with pytest.raises(ValidationError) as err:  # one per organisation and round
        admin.apply_innovation_project(round="2024-2025", org_id=tree["b1"], name="另一个",
                                       on="2024-03-02")
    assert err.value.fields == ["org_id"]
    theirs = college.apply_innovation_project(round="2024-2025", org_id=tree["b2"],
                                              name="青年e支部", on="2024-03-05")
    own = college.apply_innovation_project(round="2024-2025", org_id=tree["college"],
                                           name="一总支一品牌：红色引擎", on="2024-03-05")

    with pytest.raises(Forbidden):  # only 组织部 approves
        sec1.move_innovation_project(project_id=mine["id"], to_stage="approved", reason="x",
                                     evidence=["y"])
    with pytest.raises(ValidationError) as err:
        admin.move_innovation_project(project_id=mine["id"], to_stage="completed",
                                      reason="跳过", results=["案例"], grade="good",
                                      evidence=["c.pdf"], on="2024-04-01")
    assert err.value.fields == ["to_stage"] and "is at 申报 applied" in str(err.value)
    steps = (("approved", "2024-04-01", {"evidence": ["立项文件.pdf"]}),
             ("midterm_checked", "2024-12-20", {"evidence": ["中期报告.pdf"],
                                                "midterm_verdict": "good"}),
             ("completed", "2025-11-30", {"evidence": ["结项报告.pdf"], "grade": "excellent",
                                          "results": ["形成党建创新案例1篇", "获评省级样板支部培育"]}))
    for stage, on, extra in steps:
        done = admin.move_innovation_project(project_id=mine["id"], to_stage=stage, on=on,
                                             reason=f"{stage} 组织部评审", **extra)
    assert (done["stage"], done["grade_zh"], done["midterm_verdict_zh"]) == \
        ("completed", "优秀", "良好")
    assert done["results"] == ["形成党建创新案例1篇", "获评省级样板支部培育"]
    assert [m["to_stage"] for m in done["moves"]] == \
        ["applied", "approved", "midterm_checked", "completed"]
    assert done["moves"][-1]["actor"]["role"] == "org_admin"
    assert done["moves"][-1]["evidence"] == ["结项报告.pdf"]
    admin.move_innovation_project(project_id=theirs["id"], to_stage="rejected", on="2024-04-01",
                                  reason="特色不鲜明", evidence=["评审意见.pdf"])
    with pytest.raises(ValidationError) as err:
        admin.move_innovation_project(project_id=theirs["id"], to_stage="approved",
                                      reason="复议", evidence=["x"])
    assert "is at 不予立项 rejected" in str(err.value)

    member = rpc_as("member", sub=tree["member"]).evaluation
    everything = member.list_innovation_projects(round="2024-2025")
    assert {p["name"] for p in everything["projects"]} == \
        {"“匠心铸魂”一支部一特色", "青年e支部", "一总支一品牌：红色引擎"}
    assert {s: v["count"] for s, v in everything["by_stage"].items() if v["count"]} == \
        {"applied": 1, "rejected": 1, "completed": 1}
    assert [p["id"] for p in member.list_innovation_projects(stage="completed")["projects"]] == \
        [mine["id"]]
    assert [p["id"] for p in member.list_innovation_projects(org_id=tree["college"])
            ["projects"]] == [own["id"]]
    assert len(member.list_innovation_projects(college_id=tree["college"])["projects"]) == 3
    assert member.list_innovation_projects(round="2026-2027")["projects"] == []
