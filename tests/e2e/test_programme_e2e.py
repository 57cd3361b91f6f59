"""The creation programme (三级联创) through RPC and across services: a branch's
candidacy moves and its secretary is told (candidacy_moved); a task-book
milestone falls overdue, the timer records it once and the lead department's
contacts get one notice (task_milestone_overdue); department staff report
with their department-scoped role."""
import datetime as dt

import eventlet
import pytest

from shared.errors import Forbidden, ValidationError
from tests.conftest import wait_for
from tests.helpers import event_store
from tests.interface.test_notifications_rpc import build_tree, inbox_of, notifications_config


def test_candidacy_moves_and_overdue_milestones_reach_the_right_inboxes(start_service, rpc_as):
    start_service("organizations")
    evaluation = start_service("evaluation")
    start_service("notifications", **notifications_config())
    ids = build_tree(rpc_as)
    rpc_as("org_admin").organizations.install_default_departments()  # the default set-up
    wait_for(lambda: (d := rpc_as("ops").evaluation.consumer_status()["org_directory"])[
        "roles"] == 3 and d["departments"] == 15, 15,
        message="evaluation's directory has the tree and the departments")
    admin = rpc_as("org_admin").evaluation

    candidacy = admin.nominate_candidacy(org_id=ids["branch"], tier="school",
                                         reason="支部工作扎实，推荐培育")
    assert (candidacy["title_zh"], candidacy["stage"]) == ("党建工作样板支部", "cultivating")
    moved = admin.move_candidacy(candidacy_id=candidacy["id"], to_stage="applied",
                                 reason="提交申报书", evidence=["申报书.pdf"])
    assert moved["stage"] == "applied"
    with pytest.raises(ValidationError) as err:
        admin.move_candidacy(candidacy_id=candidacy["id"], to_stage="passed", reason="跳过")
    assert err.value.fields == ["to_stage"] and "申报 applied" in str(err.value)
    with pytest.raises(Forbidden):
        rpc_as("auditor").evaluation.move_candidacy(candidacy_id=candidacy["id"],
                                                    to_stage="accepted", reason="x")
    subject = "【创建培育阶段变动】教工第一党支部"
    box = wait_for(lambda: (b := inbox_of(rpc_as, ids["secretary"]))
                   and subject in [i["subject"] for i in b["items"]] and b, timeout=20,
                   message="the secretary hears of the move")
    notice = next(i for i in box["items"] if i["subject"] == subject)
    assert "由“培育”进入“申报”阶段" in notice["body"] and "提交申报书" in notice["body"]

    # the task book: 党政办 leads 二.4; its contact is in group department:general_office
    rpc_as("org_admin").notifications.register_contact(
        recipient_id="wang.dzb", name="党政办王老师", kind="staff",
        groups=["department:general_office"])
    yesterday = (dt.date.today() - dt.timedelta(days=1)).isoformat()
    admin.set_milestone(number="二.4", milestone_id="lectures", title="校领导本学期上党课",
                        year=dt.date.today().year, due_on=yesterday)
    programme = event_store(evaluation).app.programme
    assert programme.detect_overdue() == 1
    assert programme.detect_overdue() == 0
    staff = rpc_as("department_staff", sub="wang.dzb", org="general_office")
    overdue = "【任务节点逾期】校领导本学期上党课"
    wait_for(lambda: overdue in [i["subject"] for i in staff.notifications.list_inbox()["items"]],
             timeout=20, message="党政办 hears of the overdue milestone")
    eventlet.sleep(0.5)
    items = staff.notifications.list_inbox()["items"]
    assert [i["subject"] for i in items].count(overdue) == 1
    view = staff.evaluation.department_view()
    assert [o["milestone_id"] for o in view["overdue"]] == ["lectures"]
    done = staff.evaluation.report_progress(number="二.4", milestone_id="lectures",
                                            text="校领导6人均已上党课", completed=True,
                                            evidence=["党课记录.pdf"])
    assert done["status"] == "completed"
    with pytest.raises(Forbidden):  # 党政办 is on neither side of 四.5
        staff.evaluation.report_progress(number="四.5", text="x", evidence=["y"])
    assert rpc_as("ops").notifications.list_dead_letters()["total"] == 0
