"""The whole evaluation workflow through RPC, with organisations coming from
the organizations service's events: self-assessment (自评) → return → review
(审核) → approval (审定) → publicity (公示) with an objection (异议) → final →
appeal (申诉) → re-review → final; a late submission refused, then extended."""
import datetime as dt

import eventlet
import pytest

from shared.errors import LianchuangError
from tests.conftest import wait_for


def iso(seconds: float) -> str:
    return (dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=seconds)).isoformat()


def sleep_until(moment: str) -> None:
    """Wait for a deadline or window end the service reported (plus a margin)."""
    left = (dt.datetime.fromisoformat(moment) - dt.datetime.now(dt.timezone.utc)).total_seconds()
    eventlet.sleep(max(0.0, left) + 0.2)


@pytest.fixture
def tree(start_service, rpc_as):
    """学校党委 → 机电学院党总支 → 一支部, 二支部, with a member in 一支部 and the
    secretaries (书记) 组织部 assigned: 一支部's, 二支部's and the college's (from
    一支部). A secretary's token names that member (``sub``), as the records show."""
    start_service("organizations")
    start_service("evaluation")
    orgs = rpc_as("org_admin").organizations
    committee = orgs.create_organization(name="学校党委", kind="committee")
    college = orgs.create_organization(name="机电学院党总支", kind="general_branch",
                                       parent_id=committee["id"])
    b1 = orgs.create_organization(name="教工一支部", kind="teacher_branch", parent_id=college["id"])
    b2 = orgs.create_organization(name="教工二支部", kind="teacher_branch", parent_id=college["id"])
    member = orgs.register_member(name="李四", branch_id=b1["id"], category="teacher",
                                  status="full", joined_on="2015-07-01")
    secretaries = {}
    for key, name, org, branch in (("sec1", "张书记", b1, b1), ("sec2", "王书记", b2, b2),
                                   ("college_sec", "赵书记", college, b1)):
        secretaries[key] = orgs.register_member(name=name, branch_id=branch["id"],
                                                category="teacher", status="full",
                                                joined_on="2008-07-01")["id"]
        orgs.assign_role(org_id=org["id"], member_id=secretaries[key], role="secretary")
    ops = rpc_as("ops").evaluation
    wait_for(lambda: ops.consumer_status()["org_directory"]["roles"] == 3, 15,
             message="evaluation's directory has the tree and its secretaries")
    return {"college": college["id"], "b1": b1["id"], "b2": b2["id"], "member": member["id"],
            **secretaries}


def full_entries(scheme: dict, fraction: float, appraisal: float) -> dict:
    return {"scores": {i["code"]: i["max_score"] * fraction for i in scheme["indicators"]},
            "evidence": {i["code"]: [f"doc://{i['code']}"] for i in scheme["indicators"]
                         if i["evidence"]},
            "appraisal": appraisal}


def error_of(call) -> LianchuangError:
    """The typed error a call raised (shared.errors classes come back as themselves)."""
    with pytest.raises(LianchuangError) as e:
        call()
    return e.value


def test_full_workflow_with_return_late_extension_objection_and_appeal(tree, rpc_as):
    admin = rpc_as("org_admin").evaluation
    sec1 = rpc_as("branch_secretary", sub=tree["sec1"], org=tree["b1"]).evaluation
    sec2 = rpc_as("branch_secretary", sub=tree["sec2"], org=tree["b2"]).evaluation
    reviewer = rpc_as("college_secretary", sub=tree["college_sec"], org=tree["college"]).evaluation
    member = rpc_as("member", sub=tree["member"]).evaluation
    scheme = admin.get_scheme("model_branch")["definition"]

    cycle = admin.open_cycle(name="2026年度党支部星级考评", level=3, period="2026",
                             deadlines={"self_assessment": iso(6), "review": iso(3600),
                                        "approval": iso(7200)},
                             publicity_days=4 / 86400)  # a four-second 公示 window for the test
    cid = cycle["id"]
    assert sorted(cycle["org_ids"]) == sorted([tree["b1"], tree["b2"]])
    assert cycle["scheme_version"] == 1

    # 自评 by 一支部's secretary; scores 90% everywhere, 评议 95:
    # base 90, (90 − 0) × 70% + 95 × 30% = 63 + 28.5 = 91.5
    entries = full_entries(scheme, 0.9, 95)
    out = sec1.submit_self_assessment(cycle_id=cid, org_id=tree["b1"], **entries)
    assert (out["stage"], out["self_assessment"]["result"]["score"]) == ("review", 91.5)
    # 二支部's secretary may not submit for 一支部
    assert error_of(lambda: sec2.submit_self_assessment(
        cycle_id=cid, org_id=tree["b1"], **entries)).__class__.__name__ == "Forbidden"

    # 审核 returns it with comments; the secretary resubmits
    out = reviewer.return_assessment(cycle_id=cid, org_id=tree["b1"], comments="请补充主题党日材料")
    assert out["stage"] == "self_assessment" and out["returns"] == 1
    sec1.submit_self_assessment(cycle_id=cid, org_id=tree["b1"], **entries)

    # 二支部 misses the self-assessment deadline: refused, then extended by 组织部
    sleep_until(cycle["deadlines"]["self_assessment"])
    late = error_of(lambda: sec2.submit_self_assessment(
        cycle_id=cid, org_id=tree["b2"], **full_entries(scheme, 0.7, 80)))
    assert type(late).__name__ == "ValidationError" and "deadline" in str(late)
    board = admin.progress_board(cid)
    assert [o["org_id"] for o in board["overdue"]] == [tree["b2"]]
    admin.extend_deadline(cycle_id=cid, org_id=tree["b2"], stage="self_assessment",
                          until=iso(600), reason="支部书记外出培训")
    out = sec2.submit_self_assessment(cycle_id=cid, org_id=tree["b2"],
                                      **full_entries(scheme, 0.7, 80))
    assert out["stage"] == "review" and out["extensions"]["self_assessment"]

    # 审核 scores differ from 自评 and both are kept: 85% and 评议 92 →
    # (85 − 0) × 70% + 92 × 30% = 59.5 + 27.6 = 87.1 → ★4
    out = reviewer.submit_review(cycle_id=cid, org_id=tree["b1"], **full_entries(scheme, 0.85, 92))
    assert out["stage"] == "approval"
    assert (out["self_assessment"]["result"]["score"], out["review"]["result"]["score"]) == \
        (91.5, 87.1)

    # 审定 and 公示; a member objects; 二支部 is not in 公示, so no objection to it yet
    approved = admin.approve(cycle_id=cid, org_ids=[tree["b1"]])["approved"][0]
    assert (approved["stage"], approved["score"], approved["stars"]) == ("publicity", 87.1, 4)
    member.lodge_objection(cycle_id=cid, org_id=tree["b1"], text="主题党日记录与实际不符")
    assert error_of(lambda: member.lodge_objection(
        cycle_id=cid, org_id=tree["b2"], text="x")).__class__.__name__ == "ValidationError"
    assert error_of(lambda: admin.close_publicity(
        cycle_id=cid, org_ids=[tree["b1"]])).__class__.__name__ == "ValidationError"  # still running
    # 组织部 decides the objection before the result can become final
    admin.decide_objection(cycle_id=cid, org_id=tree["b1"], objection_no=1,
                           decision="dismissed", reason="经核实，主题党日记录完整")
    sleep_until(approved["publicity_ends_at"])
    final = admin.close_publicity(cycle_id=cid, org_ids=[tree["b1"]])["final"][0]
    assert final["stage"] == "final" and final["objections"][0]["text"].startswith("主题党日")
    rating = admin.get_rating(tree["b1"])
    assert (rating["stars"], rating["score"], rating["scheme_version"], rating["cause"]) == \
        (4, 87.1, 1, "cycle")
    assert rating["breakdown"]["self_assessment"]["score"] == 91.5

    # 申诉 within the window reopens review; the new review is approved and final again
    out = sec1.lodge_appeal(cycle_id=cid, org_id=tree["b1"], text="评议分统计有误")
    assert out["stage"] == "appeal"
    out = admin.decide_appeal(cycle_id=cid, org_id=tree["b1"], decision="upheld",
                              reason="复核评议票, 统计有误")
    assert out["stage"] == "review"
    # 95% and 评议 96: (95 × 70%) + 96 × 30% = 66.5 + 28.8 = 95.3 → band ★5, but the
    # college has 2 branches: ★5 quota 30% × 2 = 0 slots → ★4
    reviewer.submit_review(cycle_id=cid, org_id=tree["b1"], **full_entries(scheme, 0.95, 96))
    again = admin.approve(cycle_id=cid, org_ids=[tree["b1"]])["approved"][0]
    assert (again["score"], again["stars"]) == (95.3, 4)
    sleep_until(again["publicity_ends_at"])
    admin.close_publicity(cycle_id=cid, org_ids=[tree["b1"]])
    history = admin.rating_history(tree["b1"])
    assert [(h["stars_after"], h["score"]) for h in history] == [(4, 87.1), (4, 95.3)]
    first_moment = history[0]["valid_from"]
    assert admin.get_rating(tree["b1"], as_of=first_moment)["score"] == 87.1

    # the board shows where everyone is
    board = admin.progress_board(cid)
    assert board["by_stage"]["final"]["org_ids"] == [tree["b1"]]
    assert board["by_stage"]["review"]["org_ids"] == [tree["b2"]]
    # auditors read everything; a branch secretary sees only its own row
    assert len(rpc_as("auditor").evaluation.progress_board(cid)["organizations"]) == 2
    assert [o["org_id"] for o in sec2.progress_board(cid)["organizations"]] == [tree["b2"]]


def test_new_branch_joins_and_dissolved_branch_drops_out(tree, rpc_as):
    admin = rpc_as("org_admin").evaluation
    orgs = rpc_as("org_admin").organizations
    cycle = admin.open_cycle(name="2026考评", level=3, period="2026",
                             deadlines={"self_assessment": iso(600), "review": iso(1200),
                                        "approval": iso(1800)})
    b3 = orgs.create_organization(name="学生一支部", kind="student_branch",
                                  parent_id=tree["college"])
    wait_for(lambda: b3["id"] in admin.get_cycle(cycle["id"])["org_ids"], 15,
             message="new branch added to the open cycle")
    orgs.transfer_member(member_id=tree["sec2"], to_branch_id=tree["b1"],
                         effective_on="2026-09-01", reason="支部调整")
    orgs.dissolve_organization(org_id=tree["b2"], reason="支部调整")
    wait_for(lambda: tree["b2"] in admin.get_cycle(cycle["id"])["dropped"], 15,
             message="dissolved branch dropped")
    # the cycle (an aggregate) changes at the save; the board (a read model) as
    # soon as the consumer's catch-up that follows it has run
    board = wait_for(lambda: (lambda b: b if "dropped" in b["by_stage"] else None)(
        admin.progress_board(cycle["id"])), 15, message="the board shows the drop")
    assert board["by_stage"]["dropped"]["org_ids"] == [tree["b2"]]
    assert rpc_as("ops").evaluation.consumer_status()["org_directory"]["failures"] == []


def test_evaluation_started_late_catches_up_and_rates_the_branch(start_service, rpc_as):
    start_service("organizations")
    orgs = rpc_as("org_admin").organizations
    committee = orgs.create_organization(name="学校党委", kind="committee")
    college = orgs.create_organization(name="经管学院党总支", kind="general_branch",
                                       parent_id=committee["id"])
    branch = orgs.create_organization(name="学生一支部", kind="student_branch",
                                      parent_id=college["id"])
    start_service("evaluation")  # its queue did not exist when those events went out
    ops = rpc_as("ops").evaluation
    with pytest.raises(LianchuangError):  # nothing known yet
        rpc_as("org_admin").evaluation.record_major_problem(
            org_id=branch["id"], description="d", reason="r", evidence=["e"])
    assert ops.backfill_directory()["applied"] > 0
    assert ops.consumer_status()["org_directory"]["organizations"] == 3
    assert ops.backfill_directory()["applied"] == 0  # a second run changes nothing
    out = rpc_as("org_admin").evaluation.record_major_problem(
        org_id=branch["id"], description="组织生活不正常", reason="检查发现", evidence=["检查记录"])
    assert (out["org_name"], out["stars"]) == ("学生一支部", 2)
