"""Notices follow who acts (issue 9): a college (level 2, 标杆院系) is reviewed (审核)
by 组织部, so its review reminders and its returns to review reach the contacts
in group org_admin, not the college being reviewed; a branch's reach its
college's secretary; a return to 自评 reaches the organisation's own secretary."""
import datetime as dt
import uuid

import eventlet

from tests.conftest import wait_for
from tests.interface.test_notifications_rpc import (inbox_of, wait_inbox,  # noqa: F401
                                                    world)


def notice_types(rpc_as, sub, role="member") -> list[str]:
    return sorted(i["notice_type"] for i in inbox_of(rpc_as, sub, role)["items"])


def test_a_colleges_review_notices_go_to_org_admin_a_branchs_to_its_college(world, rpc_as):
    ids, pub = world
    soon = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)).isoformat()
    far = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=30)).isoformat()
    # Both have submitted their self-assessment; the review is due tomorrow.
    college_cycle, branch_cycle = str(uuid.uuid4()), str(uuid.uuid4())
    for cycle_id, org in ((college_cycle, "college"), (branch_cycle, "branch")):
        pub.publish("assessment_submitted", {"cycle_id": cycle_id, "org_id": ids[org],
                                             "stage": "self_assessment"})
    ops = rpc_as("ops").notifications
    wait_for(lambda: ops.consumer_status()["evaluation"]["events"] == 2)
    pub.publish("cycle_opened", {
        "name": "2026年度标杆院系考评", "level": 2, "period": "2026", "org_ids": [ids["college"]],
        "deadlines": {"self_assessment": far, "review": soon, "approval": far},
        "scheme_id": "benchmark_college", "scheme_version": 1, "publicity_days": 5},
        originator_id=college_cycle)
    pub.publish("cycle_opened", {
        "name": "2026年度样板支部考评", "level": 3, "period": "2026", "org_ids": [ids["branch"]],
        "deadlines": {"self_assessment": far, "review": soon, "approval": far},
        "scheme_id": "model_branch", "scheme_version": 1, "publicity_days": 5},
        originator_id=branch_cycle)
    # 组织部 is reminded of the college's review; the college's secretary is not
    reminder = wait_for(lambda: next((i for i in inbox_of(rpc_as, "li.zzb", "org_admin")["items"]
                                      if i["notice_type"] == "stage_deadline_approaching"), None),
                        message="the college's review reminder reaches 组织部")
    assert reminder["org_name"] == "机电学院党总支" and "审核阶段将于" in reminder["subject"]
    # the branch's review reminder reaches its college's secretary (王书记)
    branch_reminder = wait_for(
        lambda: next((i for i in inbox_of(rpc_as, ids["college_secretary"])["items"]
                      if i["notice_type"] == "stage_deadline_approaching"), None),
        message="the branch's review reminder reaches the college secretary")
    assert branch_reminder["org_name"] == "教工第一党支部"

    # returns: the college's approval sent back to review → 组织部; the branch's
    # review sent back to 自评 → the branch's own secretary
    pub.publish("assessment_returned", {"cycle_id": college_cycle, "org_id": ids["college"],
                                        "stage": "review", "from_stage": "approval",
                                        "comments": "请复核五个到位佐证"})
    pub.publish("assessment_returned", {"cycle_id": branch_cycle, "org_id": ids["branch"],
                                        "stage": "self_assessment", "from_stage": "review",
                                        "comments": "请补充三会一课记录"})
    returned = wait_for(lambda: next((i for i in inbox_of(rpc_as, "li.zzb", "org_admin")["items"]
                                      if i["notice_type"] == "assessment_returned"), None),
                        message="the college's return to review reaches 组织部")
    assert returned["org_name"] == "机电学院党总支" and "请复核五个到位佐证" in returned["body"]
    wait_inbox(rpc_as, ids["secretary"], 2)  # cycle_opened and the return to 自评
    assert notice_types(rpc_as, ids["secretary"]) == ["assessment_returned", "cycle_opened"]
    eventlet.sleep(0.6)  # a few more ticks of the deadline timer
    # the college being reviewed heard only that its cycle opened; the branch's
    # secretary neither of the review reminders
    assert notice_types(rpc_as, ids["college_secretary"]) == [
        "cycle_opened", "stage_deadline_approaching"]  # the branch's review reminder only
    college_box = inbox_of(rpc_as, ids["college_secretary"])["items"]
    assert {i["org_name"] for i in college_box if i["notice_type"] != "cycle_opened"} == {
        "教工第一党支部"}
    assert sorted(i["notice_type"] for i in inbox_of(rpc_as, "li.zzb", "org_admin")["items"]) \
        == ["assessment_returned", "stage_deadline_approaching"]
    assert ops.list_dead_letters()["total"] == 0
