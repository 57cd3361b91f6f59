"""Across the three services over RabbitMQ: objections (异议) to published results
(公示) by members of any college, 组织部's decisions, and the notices that follow —
the objector hears the decision; an upheld objection's return to review (审核)
reaches the reviewer (the college's secretary), who reviews it again."""
from tests.conftest import wait_for
from tests.e2e.test_evaluation_workflow_e2e import full_entries, iso
from tests.interface.test_notifications_rpc import build_tree, inbox_of, notifications_config


def notice(rpc_as, sub, notice_type, role="member"):
    return next((i for i in inbox_of(rpc_as, sub, role)["items"]
                 if i["notice_type"] == notice_type), None)


def test_objections_decided_and_each_objector_notified(start_service, rpc_as):
    start_service("organizations")
    start_service("evaluation")
    start_service("notifications", **notifications_config())
    ids = build_tree(rpc_as)
    orgs = rpc_as("org_admin").organizations
    other = orgs.create_organization(name="化工学院党总支", kind="general_branch",
                                     parent_id=ids["committee"])
    other_branch = orgs.create_organization(name="化工教工党支部", kind="teacher_branch",
                                            parent_id=other["id"])
    chen = orgs.register_member(name="陈党员", branch_id=other_branch["id"], category="teacher",
                                status="full", joined_on="2012-07-01")["id"]
    wait_for(lambda: rpc_as("ops").evaluation.consumer_status()["org_directory"]["members"] == 5
             and rpc_as("ops").notifications.consumer_status()["org_directory"]["members"] == 5,
             15, message="both directories know the five members")
    rpc_as("org_admin").notifications.register_contact(
        recipient_id="li.zzb", name="组织部李老师", kind="staff", groups=["org_admin"])

    admin = rpc_as("org_admin").evaluation
    reviewer = rpc_as("college_secretary", sub=ids["college_secretary"],
                      org=ids["college"]).evaluation
    scheme = admin.get_scheme("model_branch")["definition"]
    cycle = admin.open_cycle(name="2026年度星级考评", level=3, period="2026",
                             org_ids=[ids["branch"], ids["branch2"]], publicity_days=1 / 24,
                             deadlines={"self_assessment": iso(600), "review": iso(1200),
                                        "approval": iso(1800)})
    cid = cycle["id"]
    for key, secretary in (("branch", "secretary"), ("branch2", "secretary2")):
        rpc_as("branch_secretary", sub=ids[secretary], org=ids[key]).evaluation \
            .submit_self_assessment(cycle_id=cid, org_id=ids[key], **full_entries(scheme, 0.9, 80))
        reviewer.submit_review(cycle_id=cid, org_id=ids[key], **full_entries(scheme, 0.85, 80))
    admin.approve(cycle_id=cid, org_ids=[ids["branch"], ids["branch2"]])

    # 陈党员 of another college objects to 教工第一党支部's result; 李党员 to 学生第一党支部's
    rpc_as("member", sub=chen).evaluation.lodge_objection(
        cycle_id=cid, org_id=ids["branch"], text="该支部主题党日次数与公示材料不符")
    rpc_as("member", sub=ids["member"]).evaluation.lodge_objection(
        cycle_id=cid, org_id=ids["branch2"], text="评议分统计有误")
    assert admin.open_objections(cid)["count"] == 2
    admin.decide_objection(cycle_id=cid, org_id=ids["branch"], objection_no=1,
                           decision="dismissed", reason="经核实，主题党日记录齐全")
    back = admin.decide_objection(cycle_id=cid, org_id=ids["branch2"], objection_no=1,
                                  decision="upheld", reason="评议票复核，统计有误")
    assert back["stage"] == "review"

    dismissed = wait_for(lambda: notice(rpc_as, chen, "objection_decided"), 20,
                         message="陈党员 hears the dismissal")
    assert dismissed["subject"] == "【异议处理结果】教工第一党支部"
    assert "异议不成立" in dismissed["body"] and "经核实，主题党日记录齐全" in dismissed["body"]
    assert "陈党员同志" in dismissed["body"]
    upheld = wait_for(lambda: notice(rpc_as, ids["member"], "objection_decided"), 20,
                      message="李党员 hears the objection upheld")
    assert upheld["subject"] == "【异议处理结果】学生第一党支部"
    assert "异议成立" in upheld["body"] and "评议票复核，统计有误" in upheld["body"]
    # the return to review reaches whoever reviews: the college's secretary
    returned = wait_for(lambda: notice(rpc_as, ids["college_secretary"], "assessment_returned"),
                        20, message="the reviewer hears of the return")
    assert returned["org_name"] == "学生第一党支部"
    # 组织部 heard of both objections when they were lodged
    box = wait_for(lambda: (b := inbox_of(rpc_as, "li.zzb", "org_admin"))["total"] >= 2 and b,
                   20, message="组织部 hears of the objections")
    assert sorted(i["org_name"] for i in box["items"]
                  if i["notice_type"] == "objection_lodged") == ["学生第一党支部", "教工第一党支部"]

    # the reviewer reviews again and 组织部 approves again: back in 公示
    reviewer.submit_review(cycle_id=cid, org_id=ids["branch2"], **full_entries(scheme, 0.8, 70))
    again = admin.approve(cycle_id=cid, org_ids=[ids["branch2"]])["approved"][0]
    assert again["stage"] == "publicity" and again["returns"] == 1
    decided = admin.assessment_objections(cid, ids["branch2"])["objections"]
    assert [(o["status"], o["objector"]) for o in decided] == [("upheld", ids["member"])]
