"""验收 (acceptance) through evaluation's RPC: a candidacy at 验收 is scored with
its level's scheme (七个有力 for a branch); the result decides 达标 or 未达标 by
the rule of programme/acceptance.yaml, the failure is the organisation's
创建未达标 of the year (R1 reads it), and a 达标 opens the next tier. The
expected scores are worked out by hand from the shipped model_branch scheme."""
import datetime as dt

import pytest

from shared.errors import Forbidden, ValidationError
from tests.e2e.test_evaluation_workflow_e2e import tree  # noqa: F401

YEAR = dt.date.today().year


def entries(scheme: dict, low: dict, appraisal: float, bonus=()) -> dict:
    """Every indicator at 10 of 10 except those in ``low``; evidence wherever asked."""
    return {"scores": {i["code"]: low.get(i["code"], 10) for i in scheme["indicators"]},
            "evidence": {i["code"]: [f"doc://{i['code']}"] for i in scheme["indicators"]
                         if i["evidence"]},
            "appraisal": appraisal, "bonus": list(bonus)}


def at_acceptance(admin, org_id) -> str:
    c = admin.nominate_candidacy(org_id=org_id, tier="school", reason="推荐培育样板支部")
    for stage in ("applied", "accepted", "acceptance_review"):
        c = admin.move_candidacy(candidacy_id=c["id"], to_stage=stage, reason=f"进入{stage}",
                                 evidence=[f"{stage}.pdf"])
    return c["id"]


def test_acceptance_scored_against_the_standard_decides_passed_and_failed(tree, rpc_as):  # noqa: F811
    admin = rpc_as("org_admin").evaluation
    scheme = admin.get_scheme("model_branch")["definition"]
    first, second = at_acceptance(admin, tree["b1"]), at_acceptance(admin, tree["b2"])

    # 校级 验收 is scored, not declared
    with pytest.raises(ValidationError) as err:
        admin.move_candidacy(candidacy_id=first, to_stage="passed", reason="直接达标",
                             evidence=["x.pdf"])
    assert err.value.fields == ["to_stage"] and "score_acceptance" in str(err.value)
    with pytest.raises(Forbidden):
        rpc_as("college_secretary", sub=tree["college_sec"], org=tree["college"]).evaluation \
            .score_acceptance(candidacy_id=first, documents=["验收报告.pdf"], reason="自评",
                              **entries(scheme, {}, 90))
    with pytest.raises(ValidationError) as err:  # every indicator is scored
        partial = entries(scheme, {}, 90)
        del partial["scores"]["media_front"]
        admin.score_acceptance(candidacy_id=first, documents=["验收报告.pdf"], reason="验收",
                               **partial)
    assert err.value.fields == ["scores.media_front"]

    # 一支部: every indicator 10/10 except 党员教师参加项目攻坚团队 (project_teams, weight
    # 60 of 组织师生有力, weight 15) at 5: that dimension = 15 × (0.6 × 0.5 + 0.4) = 10.5,
    # base = 85 + 10.5 = 95.5; bonus 主题党日+ 特色案例 2 inside the base:
    # (95.5 + 2) × 70% + 评议 90 × 30% = 68.25 + 27 = 95.25 → ★5 band; every dimension
    # ≥ 60% of its weight (10.5 ≥ 9), no veto → 达标.
    passed = admin.score_acceptance(
        candidacy_id=first, documents=["校级验收报告.pdf"], reason="组织部验收组现场验收",
        held_until=f"{YEAR + 3}-12-31",
        **entries(scheme, {"project_teams": 5}, 90, bonus=["theme_day_case"]))
    assert passed["stage"] == "passed" and passed["held_until"] == f"{YEAR + 3}-12-31"
    (acc,) = passed["acceptances"]
    assert (acc["score"], acc["band_stars"], acc["outcome"], acc["outcome_zh"]) == \
        (95.25, 5, "passed", "达标")
    assert acc["scheme_id"] == "model_branch" and acc["scheme_version"] == 1
    assert acc["rule"] == {"pass_mark": 80, "dimension_floor": 60}
    assert all(f["met"] for f in acc["findings"]) and len(acc["findings"]) == 1 + 7 + 1
    organise = next(d for d in acc["breakdown"]["dimensions"] if d["code"] == "organise")
    assert organise["points"] == 10.5 and acc["breakdown"]["base"] == 95.5
    assert acc["actor"]["role"] == "org_admin" and acc["reason"] == "组织部验收组现场验收"
    assert acc["evidence"]["documents"] == ["校级验收报告.pdf"]
    assert acc["evidence"]["indicators"]["double_cultivation"] == ["doc://double_cultivation"]
    moves = admin.get_candidacy(first)["moves"]
    assert moves[-1]["to_stage"] == "passed" and moves[-1]["reason"].startswith("验收达标")
    # 梯次培育: the 达标 opens 省级
    provincial = admin.nominate_candidacy(org_id=tree["b1"], tier="provincial",
                                          reason="校级达标，推荐省级培育")
    assert provincial["ladder"] == {"passed_candidacy_id": first, "tier": "school"}

    # 二支部: 85 from six full dimensions, but 组织师生有力 at project_teams 4 and
    # double_high_tasks 5: 15 × (0.6 × 0.4 + 0.4 × 0.5) = 6.6, base 91.6;
    # 91.6 × 70% + 80 × 30% = 64.12 + 24 = 88.12 ≥ 80 (★4), yet 6.6 < 60% of 15 = 9:
    # one of the 七个有力 does not hold → 未达标.
    failed = admin.score_acceptance(
        candidacy_id=second, documents=["校级验收报告-二支部.pdf"], reason="组织部验收组现场验收",
        **entries(scheme, {"project_teams": 4, "double_high_tasks": 5}, 80))
    (acc,) = failed["acceptances"]
    assert (failed["stage"], acc["score"], acc["band_stars"], acc["outcome"]) == \
        ("failed", 88.12, 4, "failed")
    assert [f["condition"] for f in acc["findings"] if not f["met"]] == ["dimension:organise"]
    assert failed["held_from"] is None
    # a final candidacy is scored no more: refused naming its stage
    with pytest.raises(ValidationError) as err:
        admin.score_acceptance(candidacy_id=second, documents=["again.pdf"], reason="复验",
                               **entries(scheme, {}, 90))
    assert err.value.fields == ["candidacy_id"] and "未达标 failed" in str(err.value)

    # 创建未达标 of the year (R1 reads it), with the acceptance behind it
    shortfall = admin.creation_shortfall(tree["b2"], YEAR)
    assert shortfall["shortfall"] is True
    behind = shortfall["candidacies"][0]["acceptance"]
    assert behind["score"] == 88.12 and len(behind["unmet"]) == 1
    assert "组织师生有力" in behind["unmet"][0]
    assert admin.creation_shortfall(tree["b1"], YEAR)["shortfall"] is False
    review = admin.propose_review_grade(org_id=tree["b2"], year=YEAR, grade="good",
                                        reason="年度述职评议")
    assert "creation_failed" in [c["code"] for c in review["conditions"]]
    assert review["grade"] == "fair"
