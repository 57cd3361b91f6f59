"""A schedule rule's overdue item (R6 二.4) becomes a notice over RabbitMQ: a school
leader gave no lecture last semester; evaluation's timer records it once, and
notifications tells 党政办 (the department that answers for it), 组织部 and the
leader, once each; the college that held no 互查互评 (R8 二.2) hears it too."""
import datetime as dt

import eventlet

from services.evaluation.programme.schedule.application import load_schedule_rules
from services.evaluation.programme.schedule.domain import previous_period
from tests.conftest import wait_for
from tests.helpers import event_store
from tests.interface.test_notifications_rpc import build_tree, inbox_of, notifications_config


def test_an_overdue_lecture_reaches_the_department_the_leader_and_zzb_once(start_service,
                                                                           rpc_as):
    start_service("organizations")
    evaluation = start_service("evaluation")
    start_service("notifications", **notifications_config())
    ids = build_tree(rpc_as)
    orgs = rpc_as("org_admin").organizations
    leaders = {}
    for name, role in (("孙书记", "secretary"), ("周校长", "deputy_secretary")):
        leaders[name] = orgs.register_member(name=name, branch_id=ids["branch"],
                                             category="teacher", status="full",
                                             joined_on="2000-07-01")["id"]
        orgs.assign_role(org_id=ids["committee"], member_id=leaders[name], role=role)
    wait_for(lambda: rpc_as("ops").evaluation.consumer_status()["org_directory"]["roles"] == 5,
             15, message="evaluation's directory has the leaders")
    notes = rpc_as("org_admin").notifications
    notes.register_contact(recipient_id="wang.dzb", name="党政办王老师", kind="staff",
                           groups=["department:general_office"])
    notes.register_contact(recipient_id="chen.zzb", name="组织部陈老师", kind="staff",
                           groups=["org_admin"])
    wait_for(lambda: rpc_as("ops").notifications.consumer_status()["org_directory"]["members"]
             == 6, 15, message="notifications knows the leaders")

    last = previous_period("semester", dt.date.today(), load_schedule_rules()["calendar"])
    day = (last["starts_on"] + dt.timedelta(days=20)).isoformat()
    # the leaders took office before last semester (the timer checks the leaders of
    # the period; role events carry only their recording time, so evaluation's copy
    # of the holdings is dated back)
    with event_store(evaluation).app.transaction() as curs:
        curs.execute("UPDATE dir_role_periods SET from_at = %s",
                     (dt.datetime.combine(last["starts_on"] - dt.timedelta(days=1), dt.time.min,
                                          dt.timezone.utc),))
    staff = rpc_as("department_staff", sub="wang.dzb", org="general_office")
    staff.evaluation.record_schedule_item(rule="leader_lecture", subject_id=leaders["孙书记"],
                                          on=day, title="专题党课", evidence=["讲稿.pdf"])
    programme = event_store(evaluation).app.programme
    assert programme.detect_schedule_overdue() >= 2  # 周校长's lecture, the college's 互查互评 …
    assert programme.detect_schedule_overdue() == 0

    lecture = f"【制度落实逾期】校领导为师生上党课、思想政治理论课或形势政策课（{last['name']}，周校长）"
    inspection = f"【制度落实逾期】党建工作互查互评（{last['name']}，机电学院党总支）"
    wait_for(lambda: lecture in [i["subject"] for i in inbox_of(rpc_as, leaders["周校长"])["items"]],
             timeout=20, message="the leader hears of the missing lecture")
    wait_for(lambda: inspection in [i["subject"] for i in
                                    inbox_of(rpc_as, ids["college_secretary"])["items"]],
             timeout=20, message="the college's secretary hears of the missing 互查互评")
    eventlet.sleep(0.5)
    for box in (staff.notifications.list_inbox(),
                rpc_as("org_admin", sub="chen.zzb").notifications.list_inbox(),
                inbox_of(rpc_as, leaders["周校长"])):
        subjects = [i["subject"] for i in box["items"]]
        assert subjects.count(lecture) == 1
    body = next(i["body"] for i in inbox_of(rpc_as, leaders["周校长"])["items"]
                if i["subject"] == lecture)
    assert "二.4" in body and "至少1次" in body and "记录为0次" in body
    assert not any("孙书记" in i["subject"] for i in staff.notifications.list_inbox()["items"])
    assert rpc_as("ops").notifications.list_dead_letters()["total"] == 0
