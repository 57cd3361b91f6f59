"""Schedule rules (R6 二.4, R8 二.2) through evaluation's RPC: items recorded by
the department that answers for them (and a college secretary for its
college), each rule checked per period, and a leader who gave no lecture last
semester flagged overdue exactly once, across a restart and a second instance."""
import datetime as dt

import pytest

from services.evaluation.programme.schedule.application import load_schedule_rules
from services.evaluation.programme.schedule.domain import previous_period
from shared.errors import Forbidden, ValidationError
from tests.conftest import wait_for
from tests.helpers import event_store

CALENDAR = load_schedule_rules()["calendar"]


@pytest.fixture
def leaders(start_service, rpc_as):
    """学校党委 with two leaders (书记, 副书记) → 机电学院党总支 (its secretary) → 一支部."""
    start_service("organizations")
    evaluation = start_service("evaluation")
    orgs = rpc_as("org_admin").organizations
    committee = orgs.create_organization(name="学校党委", kind="committee")
    college = orgs.create_organization(name="机电学院党总支", kind="general_branch",
                                       parent_id=committee["id"])
    branch = orgs.create_organization(name="教工一支部", kind="teacher_branch",
                                      parent_id=college["id"])
    ids = {"committee": committee["id"], "college": college["id"], "evaluation": evaluation}
    for key, name, org, role in (("wang", "王书记", committee, "secretary"),
                                 ("li", "李校长", committee, "deputy_secretary"),
                                 ("zhao", "赵书记", college, "secretary")):
        ids[key] = orgs.register_member(name=name, branch_id=branch["id"], category="teacher",
                                        status="full", joined_on="2000-07-01")["id"]
        orgs.assign_role(org_id=org["id"], member_id=ids[key], role=role)
    wait_for(lambda: rpc_as("ops").evaluation.consumer_status()["org_directory"]["roles"] == 3,
             15, message="evaluation's directory has the leaders")
    return ids


def test_a_leader_without_a_lecture_last_semester_is_flagged_once(leaders, rpc_as,
                                                                  start_service):
    staff = rpc_as("department_staff", sub="dzb-1", org="general_office").evaluation
    last = previous_period("semester", dt.date.today(), CALENDAR)
    day = (last["starts_on"] + dt.timedelta(days=30)).isoformat()
    # the committee's leaders took office before last semester (role events carry
    # only their recording time: evaluation's copy of their holdings is dated back)
    with event_store(leaders["evaluation"]).app.transaction() as curs:
        curs.execute("UPDATE dir_role_periods SET from_at = %s",
                     (dt.datetime.combine(last["starts_on"] - dt.timedelta(days=1), dt.time.min,
                                          dt.timezone.utc),))
    # 张委员 joins the committee today: no leader last semester, so not checked for it;
    # 李校长 leaves it today: a leader last semester, so still checked for it
    orgs = rpc_as("org_admin").organizations
    member = orgs.get_member(leaders["li"])
    zhang = orgs.register_member(name="张委员", branch_id=member["branch_id"],
                                 category="teacher", status="full", joined_on="2001-07-01")["id"]
    orgs.assign_role(org_id=leaders["committee"], member_id=zhang, role="committee_member")
    orgs.revoke_role(org_id=leaders["committee"], member_id=leaders["li"],
                     role="deputy_secretary", reason="换届")
    wait_for(lambda: rpc_as("ops").evaluation.consumer_status()["org_directory"]["roles"] == 3
             and any(s["name"] == "张委员" for s in rpc_as("auditor").evaluation.schedule_status(
                 rule="leader_lecture")["rules"][0]["subjects"]), 15,
             message="evaluation's directory has the new committee")
    with pytest.raises(ValidationError) as err:  # 张委员 was no leader last semester
        staff.record_schedule_item(rule="leader_lecture", subject_id=zhang, on=day,
                                   title="党课", evidence=["讲稿.pdf"])
    assert err.value.fields == ["subject_id"]

    with pytest.raises(Forbidden):  # 宣传部 does not answer for 二.4
        rpc_as("department_staff", sub="xcb-1", org="publicity").evaluation \
            .record_schedule_item(rule="leader_lecture", subject_id=leaders["wang"], on=day,
                                  title="党课", evidence=["讲稿.pdf"])
    with pytest.raises(ValidationError) as err:  # 赵书记 is no school leader
        staff.record_schedule_item(rule="leader_lecture", subject_id=leaders["zhao"], on=day,
                                   title="党课", evidence=["讲稿.pdf"])
    assert err.value.fields == ["subject_id"]
    with pytest.raises(ValidationError) as err:
        staff.record_schedule_item(rule="weekly_chat", on=day, title="x", evidence=["y"])
    assert err.value.fields == ["rule"]
    with pytest.raises(ValidationError) as err:
        staff.record_schedule_item(rule="leader_lecture", subject_id=leaders["wang"],
                                   on=(dt.date.today() + dt.timedelta(days=1)).isoformat(),
                                   title="x", evidence=["y"])
    assert err.value.fields == ["on"]
    lecture = staff.record_schedule_item(rule="leader_lecture", subject_id=leaders["wang"],
                                         on=day, title="学习贯彻党的创新理论专题党课",
                                         reason="补录", evidence=["讲稿.pdf", "签到表.pdf"])
    assert lecture["period"]["key"] == last["key"] and lecture["period"]["ended"] is True
    by_name = {s["name"]: s for s in lecture["subjects"]}
    assert (by_name["王书记"]["status"], by_name["王书记"]["recorded"]) == ("met", 1)
    assert by_name["王书记"]["records"][0]["actor"] == \
        {"sub": "dzb-1", "role": "department_staff", "org": "general_office"}
    assert by_name["王书记"]["records"][0]["evidence"] == ["讲稿.pdf", "签到表.pdf"]
    assert (by_name["李校长"]["status"], by_name["李校长"]["overdue_recorded_at"]) == \
        ("overdue", None)
    assert "张委员" not in by_name  # last semester's leaders, not today's
    # 互查互评: the college's secretary records the college's own, no other's
    secretary = rpc_as("college_secretary", sub=leaders["zhao"], org=leaders["college"])
    inspection = secretary.evaluation.record_schedule_item(
        rule="mutual_inspection", on=day, title="院系互查互评", evidence=["互查记录.pdf"])
    assert [(s["name"], s["status"]) for s in inspection["subjects"]] == [("机电学院党总支", "met")]
    with pytest.raises(Forbidden):
        secretary.evaluation.record_schedule_item(rule="problem_list", on=day, title="x",
                                                  evidence=["y"])

    # the timer: 李校长 (no lecture), the half year's 双高 report and last year's two
    # lists (nothing recorded) are flagged; 王书记 and the college are not
    programme = event_store(leaders["evaluation"]).app.programme
    first = programme.detect_schedule_overdue()
    assert programme.detect_schedule_overdue() == 0
    leaders["evaluation"].stop()  # a restart, and a second instance beside it
    restarted = event_store(start_service("evaluation", INSTANCE="b")).app
    second = event_store(start_service("evaluation", INSTANCE="c")).app
    assert restarted.programme.detect_schedule_overdue() == 0
    assert second.programme.detect_schedule_overdue() == 0
    restarted.projector.rebuild()  # a rebuilt read model forgets nothing either
    assert second.programme.detect_schedule_overdue() == 0
    assert restarted.programme.detect_schedule_overdue() == 0
    flagged = [e["data"] for e in restarted.read_envelopes(0, 5000)
               if e["type"] == "schedule_item_overdue"]
    assert first == len(flagged) == 4
    assert sorted((f["rule"], f["subject_name"]) for f in flagged) == [
        ("double_high_report", "学校党委"), ("leader_lecture", "李校长"),
        ("problem_list", "学校党委"), ("task_list", "学校党委")]
    lecture_flag = next(f for f in flagged if f["rule"] == "leader_lecture")
    assert {k: lecture_flag[k] for k in ("subject_kind", "subject_id", "period", "required",
                                         "recorded", "department", "seed")} == \
        {"subject_kind": "leader", "subject_id": leaders["li"], "period": last["key"],
         "required": 1, "recorded": 0, "department": "general_office", "seed": "二.4"}
    status = rpc_as("auditor").evaluation.schedule_status(rule="leader_lecture", on=day)
    li = next(s for s in status["rules"][0]["subjects"] if s["name"] == "李校长")
    assert li["status"] == "overdue" and li["overdue_recorded_at"] is not None
