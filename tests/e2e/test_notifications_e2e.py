"""Across the three services: organisations and roles from the organizations service,
a real evaluation workflow and a major problem (重大问题) in the evaluation service, and
the notices they cause — in the inbox and as email received by a local SMTP server."""
import eventlet

from tests.conftest import wait_for
from tests.e2e.test_evaluation_workflow_e2e import full_entries, iso
from tests.interface.test_notifications_delivery import smtp  # noqa: F401
from tests.interface.test_notifications_rpc import build_tree, inbox_of, notifications_config


def subjects(box) -> list[str]:
    return [i["subject"] for i in box["items"]]


def test_rating_change_in_evaluation_reaches_inbox_and_email(start_service, rpc_as,
                                                              smtp):  # noqa: F811
    smtp.start()
    start_service("organizations")
    start_service("evaluation")
    start_service("notifications", **notifications_config(
        smtp={"host": "127.0.0.1", "port": smtp.port, "timeout": 2}))
    ids = build_tree(rpc_as)
    wait_for(lambda: rpc_as("ops").evaluation.consumer_status()["org_directory"]["roles"] == 3,
             15, message="evaluation's directory has the tree")
    secretary = rpc_as("member", sub=ids["secretary"]).notifications
    secretary.register_contact(recipient_id=ids["secretary"], name="张书记",
                               email="zhang@example.edu")
    rpc_as("org_admin").notifications.register_contact(
        recipient_id="li.zzb", name="组织部李老师", kind="staff", groups=["org_admin"],
        email="zzb@example.edu")

    admin = rpc_as("org_admin").evaluation
    scheme = admin.get_scheme("model_branch")["definition"]
    cycle = admin.open_cycle(name="2026年度星级考评", level=3, period="2026",
                             publicity_days=1 / 86400,
                             deadlines={"self_assessment": iso(600), "review": iso(1200),
                                        "approval": iso(1800)})
    for key, secretary, fraction in (("branch", "secretary", 0.9),
                                     ("branch2", "secretary2", 0.7)):
        rpc_as("branch_secretary", sub=ids[secretary],
               org=ids[key]).evaluation.submit_self_assessment(
            cycle_id=cycle["id"], org_id=ids[key], **full_entries(scheme, fraction, 80))
        admin.submit_review(cycle_id=cycle["id"], org_id=ids[key],
                            **full_entries(scheme, fraction, 80))
    admin.approve(cycle_id=cycle["id"], org_ids=[ids["branch"], ids["branch2"]])
    eventlet.sleep(1.1)
    admin.close_publicity(cycle_id=cycle["id"], org_ids=[ids["branch"], ids["branch2"]])
    # 重大问题: 教工第一党支部 ★4 → ★2 at once, a fall that owes a rectification (整改).
    rpc_as("org_admin").evaluation.record_major_problem(
        org_id=ids["branch"], problem_id="2026-01", description="违规发放津贴",
        reason="纪委通报", evidence=["纪委通报〔2026〕3号"])

    fell = "【星级变动】教工第一党支部：★★★★（4星） → ★★（2星）"
    rectify = "【整改通知】教工第一党支部评定为2星级，请限期整改"
    box = wait_for(lambda: (b := inbox_of(rpc_as, ids["secretary"]))
                   and {fell, rectify} <= set(subjects(b)) and b, timeout=20,
                   message="the downgrade in the secretary's inbox")
    first = "【星级变动】教工第一党支部：未评星级 → ★★★★（4星）"
    assert first in subjects(box)
    assert "【考评周期已启动】2026年度星级考评" in subjects(box)
    assert "【考评结果公示】教工第一党支部" in subjects(box)
    notice = next(i for i in box["items"] if i["subject"] == fell)
    assert "变动原因：发现重大问题降级" in notice["body"]
    assert "张书记同志" in notice["body"] and "请对照考评意见查找差距" in notice["body"]

    # The same words by email, once each.
    mails = wait_for(lambda: (m := smtp.messages()) and {fell, rectify} <= {
        x["subject"] for x in m if x["to"].addresses[0].addr_spec == "zhang@example.edu"} and m,
        timeout=20, message="the downgrade emails")
    eventlet.sleep(0.5)
    to_secretary = [m for m in smtp.messages()
                    if m["to"].addresses[0].addr_spec == "zhang@example.edu"]
    mail_subjects = [m["subject"] for m in to_secretary]
    assert mail_subjects.count(fell) == 1 and mail_subjects.count(rectify) == 1
    body = next(m for m in to_secretary if m["subject"] == rectify).get_body().get_content()
    assert "张书记同志" in body and "三星及以下党组织整改" in body and "前报送整改情况" in body
    # 学生第一党支部 came out at ★3: a fall too, for its secretary, the college secretary
    # (王书记) and 组织部 — and 组织部 hears of both branches.
    both = {"【整改通知】教工第一党支部评定为2星级，请限期整改",
            "【整改通知】学生第一党支部评定为3星级，请限期整改"}
    wait_for(lambda: both <= set(subjects(inbox_of(rpc_as, ids["college_secretary"]))),
             timeout=10, message="the college secretary's rectification notices")
    wait_for(lambda: both <= set(subjects(inbox_of(rpc_as, "li.zzb", role="org_admin"))),
             timeout=10, message="组织部's rectification notices")
    assert any(m["subject"] == rectify and m["to"].addresses[0].addr_spec == "zzb@example.edu"
               for m in mails + smtp.messages())
    assert rpc_as("ops").notifications.list_dead_letters()["total"] == 0
