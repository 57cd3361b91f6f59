"""Notifications over RPC against real PostgreSQL and RabbitMQ: rules, recipients from
the org tree (kept from the organizations service's events), the inbox, contacts and
their permissions, parking, the deadline timer.

Evaluation's events are published as evaluation-shaped envelopes on
``evaluation.events`` (the contract in docs/events.md), versions 1, 2, 3… per aggregate.
"""
import datetime as dt
import uuid

import eventlet
import pytest
from nameko.standalone.events import event_dispatcher

from shared.errors import Forbidden, NotFound, Unauthenticated, ValidationError
from shared.signing import sign_envelope
from tests.conftest import EVENT_KEYS, wait_for

FAST = {"delivery": {"poll_interval": 0.05, "backoff_base": 0.1, "backoff_max": 0.3,
                     "max_attempts": 30},
        "webhook": {"secret": "test-webhook-secret"},
        "deadline": {"check_interval": 0.2, "days_before": 3}}


def notifications_config(**sections) -> dict:
    config = {k: dict(v) for k, v in FAST.items()}
    for key, value in sections.items():
        config.setdefault(key, {}).update(value)
    return {"NOTIFICATIONS": config}


class Publisher:
    """Publishes envelopes as another service's relay would."""

    def __init__(self, rabbit_config, source: str = "evaluation"):
        self.dispatch = event_dispatcher({"AMQP_URI": rabbit_config["AMQP_URI"]})
        self.source = source
        self.versions: dict[str, int] = {}

    def envelope(self, event_type: str, data: dict, originator_id: str | None = None,
                 actor: dict | None = None, reason: str | None = None) -> dict:
        originator_id = originator_id or str(uuid.uuid4())
        version = self.versions.get(originator_id, 0) + 1
        self.versions[originator_id] = version
        return {"envelope_version": 1, "event_id": f"{originator_id}:{version}",
                "type": event_type, "source": self.source, "aggregate_type": "Rating",
                "originator_id": originator_id, "originator_version": version,
                "position": sum(self.versions.values()),
                "occurred_at": dt.datetime.now(dt.timezone.utc).isoformat(),
                "actor": actor or {"sub": "admin", "role": "org_admin"},
                "reason": reason, "evidence": None, "data": data}

    def send(self, envelope: dict) -> dict:
        """Signs it with the source's event key, as its relay would."""
        envelope = sign_envelope(envelope, EVENT_KEYS[self.source].encode())
        self.dispatch(self.source, envelope["type"], envelope)
        return envelope

    def publish(self, event_type: str, data: dict, **kwargs) -> dict:
        return self.send(self.envelope(event_type, data, **kwargs))


def build_tree(rpc_as) -> dict:
    """学校党委 → 机电学院党总支 → 教工第一党支部 (张书记, 李党员), 学生第一党支部 (赵书记,
    王书记 who is the college's secretary); waits until notifications knows it."""
    admin = rpc_as("org_admin").organizations
    committee = admin.create_organization(name="学校党委", kind="committee")
    college = admin.create_organization(name="机电学院党总支", kind="general_branch",
                                        parent_id=committee["id"])
    branch = admin.create_organization(name="教工第一党支部", kind="teacher_branch",
                                       parent_id=college["id"])
    branch2 = admin.create_organization(name="学生第一党支部", kind="student_branch",
                                        parent_id=college["id"])

    def member(name, branch_id):
        return admin.register_member(name=name, branch_id=branch_id, category="teacher",
                                     status="full", joined_on="2010-07-01")["id"]

    ids = {"committee": committee["id"], "college": college["id"], "branch": branch["id"],
           "branch2": branch2["id"], "secretary": member("张书记", branch["id"]),
           "member": member("李党员", branch["id"]),
           "secretary2": member("赵书记", branch2["id"]),
           "college_secretary": member("王书记", branch2["id"])}
    admin.assign_role(org_id=branch["id"], member_id=ids["secretary"], role="secretary")
    admin.assign_role(org_id=branch2["id"], member_id=ids["secretary2"], role="secretary")
    admin.assign_role(org_id=college["id"], member_id=ids["college_secretary"], role="secretary")
    ops = rpc_as("ops").notifications
    wait_for(lambda: (s := ops.consumer_status()["org_directory"])["roles"] == 3
             and s["members"] == 4, message="directory caught up")
    return ids


def inbox_of(rpc_as, sub, role="member", **kwargs):
    return rpc_as(role, sub=sub).notifications.list_inbox(**kwargs)


def wait_inbox(rpc_as, sub, count, role="member", timeout=10.0):
    return wait_for(lambda: (box := inbox_of(rpc_as, sub, role))["total"] >= count and box,
                    timeout=timeout, message=f"{count} notices for {sub}")


def fell_data(ids, **extra):
    return {"org_id": ids["branch"], "org_name": "教工第一党支部", "stars": 3,
            "previous_stars": 4, "rectification_due": "2027-01-31", **extra}


@pytest.fixture
def world(start_service, rpc_as, rabbit_config):
    start_service("organizations")
    start_service("notifications", **notifications_config())
    ids = build_tree(rpc_as)
    rpc_as("org_admin").notifications.register_contact(
        recipient_id="li.zzb", name="组织部李老师", kind="staff", groups=["org_admin"])
    return ids, Publisher(rabbit_config)


def test_rating_fell_reaches_branch_and_college_secretaries_and_org_admin(world, rpc_as):
    ids, pub = world
    event = pub.publish("rating_fell_to_three_or_below", fell_data(ids))
    box = wait_inbox(rpc_as, ids["secretary"], 1)
    notice = box["items"][0]
    assert notice["notice_type"] == "rectification_required"
    assert notice["title"] == "整改通知"
    assert notice["subject"] == "【整改通知】教工第一党支部评定为3星级，请限期整改"
    assert "张书记同志" in notice["body"] and "2027年01月31日前报送整改情况" in notice["body"]
    assert notice["read"] is False and notice["org_name"] == "教工第一党支部"
    college = wait_inbox(rpc_as, ids["college_secretary"], 1)["items"][0]
    assert "王书记同志" in college["body"] and "教工第一党支部" in college["subject"]
    staff = wait_inbox(rpc_as, "li.zzb", 1, role="org_admin")["items"][0]
    assert staff["notice_type"] == "rectification_required"
    # The plain member and the other branch's secretary hear nothing.
    assert inbox_of(rpc_as, ids["member"])["total"] == 0
    assert inbox_of(rpc_as, ids["secretary2"])["total"] == 0
    trace = rpc_as("ops").notifications.list_deliveries(event_id=event["event_id"])["items"]
    assert sorted(t["recipient_id"] for t in trace) == sorted(
        [ids["secretary"], ids["college_secretary"], "li.zzb"])
    assert {(t["channel"], t["status"]) for t in trace} == {("inbox", "sent")}


def test_the_same_event_delivered_twice_gives_one_notice(world, rpc_as):
    ids, pub = world
    first = pub.envelope("rating_changed", {
        "org_id": ids["branch"], "org_name": "教工第一党支部", "stars_before": 4,
        "stars_after": 3, "score": 74, "cause": "年度考评", "scheme_version": 1,
        "cycle_id": "c1"})
    pub.send(first)
    pub.send(first)  # a redelivery (the relay re-publishes after a crash)
    second = pub.publish("rating_changed", {**first["data"], "stars_before": 3,
                                            "stars_after": 4, "cause": "整改后复评"},
                         originator_id=first["originator_id"])
    # The second event is applied only after both copies of the first were handled.
    wait_inbox(rpc_as, ids["secretary"], 2)
    wait_for(lambda: rpc_as("ops").notifications.consumer_status()["evaluation"]["events"] == 2)
    eventlet.sleep(0.5)  # time for a late duplicate to be (not) applied
    box = inbox_of(rpc_as, ids["secretary"])
    assert box["total"] == 2
    assert [i["subject"] for i in box["items"]] == [
        "【星级变动】教工第一党支部：★★★（3星） → ★★★★（4星）",
        "【星级变动】教工第一党支部：★★★★（4星） → ★★★（3星）"]
    assert second["event_id"] != first["event_id"]


def test_inbox_pages_unread_first_and_is_private(world, rpc_as):
    ids, pub = world
    for i in range(3):
        pub.publish("assessment_returned", {"cycle_id": f"c{i}", "org_id": ids["branch"],
                                            "stage": "self_assessment", "comments": f"意见{i}"})
    box = wait_inbox(rpc_as, ids["secretary"], 3)
    me = rpc_as("member", sub=ids["secretary"]).notifications
    assert me.unread_count() == {"unread": 3}
    oldest = box["items"][-1]
    assert me.mark_read(notice_ids=[oldest["id"]]) == {"marked": 1, "unread": 2}
    page1 = me.list_inbox(page=1, page_size=2)
    assert page1["total"] == 3 and page1["unread"] == 2
    assert [i["read"] for i in page1["items"]] == [False, False]
    page2 = me.list_inbox(page=2, page_size=2)
    assert [i["id"] for i in page2["items"]] == [oldest["id"]]
    assert me.list_inbox(unread_only=True)["total"] == 2
    # Someone else cannot read or mark these notices.
    other = rpc_as("member", sub=ids["member"]).notifications
    assert other.list_inbox()["total"] == 0
    with pytest.raises(NotFound):
        other.mark_read(notice_ids=[page1["items"][0]["id"]])
    assert me.unread_count() == {"unread": 2}
    with pytest.raises(ValidationError) as err:
        me.mark_read()
    assert err.value.fields == ["notice_ids"]
    assert me.mark_read(all=True) == {"marked": 2, "unread": 0}


def test_unknown_recipient_and_template_error_park_and_the_consumer_goes_on(world, rpc_as):
    ids, pub = world
    appeal = pub.publish("assessment_appeal_decided", {
        "cycle_id": "c1", "org_id": ids["branch"], "decision": "rejected",
        "appellant": "nobody.known"})
    broken = pub.publish("assessment_returned", {  # lacks "comments": the template needs it
        "cycle_id": "c1", "org_id": ids["branch"], "stage": "self_assessment"})
    garbled = pub.publish("rating_changed", {  # an org id that is not one
        "org_id": "not-an-id", "org_name": "?", "stars_before": 4, "stars_after": 3,
        "score": 70, "cause": "cycle", "scheme_version": 1, "cycle_id": "c1"})
    pub.publish("assessment_publicity_opened", {"cycle_id": "c1", "org_id": ids["branch"],
                                                "ends_at": "2026-12-20"})
    # The event after the bad ones is applied: both branch members see the publicity.
    assert wait_inbox(rpc_as, ids["member"], 1)["items"][0]["notice_type"] == "publicity_opened"
    ops = rpc_as("ops").notifications
    dead = wait_for(lambda: (d := ops.list_dead_letters())["total"] == 3 and d)
    by_event = {d["event_id"]: d for d in dead["items"]}
    assert "organisation not-an-id (not in the directory)" in by_event[garbled["event_id"]]["error"]
    assert "unknown recipient: nobody.known" in by_event[appeal["event_id"]]["error"]
    assert "template error" in by_event[broken["event_id"]]["error"]
    assert "comments" in by_event[broken["event_id"]]["error"]
    assert ops.consumer_status()["evaluation"]["failures"] == []
    # Once the appellant is registered, ops retry the parked notice and it is delivered.
    rpc_as("org_admin").notifications.register_contact(
        recipient_id="nobody.known", name="申诉人", kind="staff")
    retried = ops.retry_dead_letter(delivery_id=by_event[appeal["event_id"]]["delivery_id"])
    assert [(n["recipient_id"], n["status"]) for n in retried["notices"]] == [
        ("nobody.known", "visible")]
    notice = inbox_of(rpc_as, "nobody.known", role="org_admin")["items"][0]
    assert notice["subject"] == "【申诉处理结果】教工第一党支部"
    assert "申诉不成立，维持原结论" in notice["body"]
    assert ops.list_dead_letters()["total"] == 2
    with pytest.raises(NotFound):  # the dead letter was replaced by the notice made again
        ops.retry_dead_letter(delivery_id=by_event[appeal["event_id"]]["delivery_id"])
    with pytest.raises(ValidationError) as err:  # a delivered notice is not a dead letter
        ops.retry_dead_letter(delivery_id=retried["notices"][0]["delivery_id"])
    assert err.value.fields == ["delivery_id"]
    with pytest.raises(Forbidden):
        rpc_as("member", sub=ids["member"]).notifications.list_dead_letters()
    with pytest.raises(Forbidden):
        rpc_as("auditor").notifications.retry_dead_letter(delivery_id=1)


def test_no_secretary_in_office_parks_with_the_organisation_named(world, rpc_as):
    ids, pub = world
    admin = rpc_as("org_admin").organizations
    admin.revoke_role(org_id=ids["branch2"], member_id=ids["secretary2"], role="secretary")
    ops = rpc_as("ops").notifications
    wait_for(lambda: ops.consumer_status()["org_directory"]["roles"] == 2)
    pub.publish("cycle_opened", {
        "name": "2026年度星级考评", "level": 3, "period": "2026",
        "org_ids": [ids["branch"], ids["branch2"]],
        "deadlines": {"self_assessment": "2026-12-01T10:00:00+00:00"},
        "scheme_id": "s", "scheme_version": 1, "publicity_days": 5})
    notice = wait_inbox(rpc_as, ids["secretary"], 1)["items"][0]
    assert notice["subject"] == "【考评周期已启动】2026年度星级考评"
    assert "教工第一党支部已纳入考评周期" in notice["body"]
    assert "自评：2026年12月01日 18:00" in notice["body"]
    dead = wait_for(lambda: (d := ops.list_dead_letters())["total"] == 1 and d)["items"][0]
    assert "no one holds the role secretary in '学生第一党支部'" in dead["error"]
    # a new secretary is appointed: the parked notice is made again, addressed to them
    admin.assign_role(org_id=ids["branch2"], member_id=ids["secretary2"], role="secretary")
    wait_for(lambda: ops.list_dead_letters()["total"] == 0, message="the notice unparked")
    remade = wait_inbox(rpc_as, ids["secretary2"], 1)["items"][0]
    assert remade["subject"] == "【考评周期已启动】2026年度星级考评"
    assert "学生第一党支部已纳入考评周期" in remade["body"]


def test_contacts_and_preferences_are_managed_with_permissions(world, rpc_as):
    ids, _ = world
    me = rpc_as("member", sub=ids["member"]).notifications
    mine = me.register_contact(recipient_id=ids["member"], name="李党员",
                               email="li@example.edu")
    assert mine["email"] == "li@example.edu" and mine["groups"] == []
    prefs = me.set_preferences(preferences={"rating_changed": ["email"], "*": ["inbox"]})
    assert prefs["preferences"] == {"rating_changed": ["email", "inbox"], "*": ["inbox"]}
    with pytest.raises(Forbidden):  # someone else's
        me.register_contact(recipient_id=ids["secretary"], name="张书记")
    with pytest.raises(Forbidden):  # groups are org_admin's to give
        me.update_contact(recipient_id=ids["member"], groups=["org_admin"])
    with pytest.raises(ValidationError) as err:
        me.update_contact(recipient_id=ids["member"], email="not-an-email")
    assert err.value.fields == ["email"]
    with pytest.raises(ValidationError) as err:
        me.set_preferences(preferences={"rating_changed": ["fax"]})
    assert err.value.fields[0].startswith("preferences")
    with pytest.raises(ValidationError) as err:  # already registered
        me.register_contact(recipient_id=ids["member"], name="李党员")
    assert err.value.fields == ["recipient_id"]
    with pytest.raises(Forbidden):
        me.list_contacts()
    with pytest.raises(Forbidden):
        me.get_contact(recipient_id="li.zzb")
    with pytest.raises(Unauthenticated):
        rpc_as(None).notifications.unread_count()
    admin = rpc_as("org_admin").notifications
    admin.update_contact(recipient_id=ids["member"], groups=["department:organization"],
                         reason="兼任组织部联络员")
    listed = admin.list_contacts(group="department:organization")
    assert [c["recipient_id"] for c in listed["items"]] == [ids["member"]]
    assert me.get_contact()["groups"] == ["department:organization"]
    with pytest.raises(ValidationError) as err:
        admin.deactivate_contact(recipient_id=ids["member"])
    assert err.value.fields == ["reason"]
    assert admin.deactivate_contact(recipient_id=ids["member"], reason="离校")["active"] is False
    with pytest.raises(NotFound):
        admin.get_contact(recipient_id="no.such.person")


def test_deadline_reminder_once_across_two_instances_for_those_not_submitted(
        start_service, rpc_as, rabbit_config):
    start_service("organizations")
    config = notifications_config()
    instances = [start_service("notifications", INSTANCE=name, **config) for name in "ab"]
    ids = build_tree(rpc_as)
    pub = Publisher(rabbit_config)
    soon = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)).isoformat()
    later = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=20)).isoformat()
    cycle_id = str(uuid.uuid4())
    # branch2 has submitted its self-assessment; the college was given until later;
    # branch has done neither. (Published first: events of different aggregates may be
    # applied in any order, and the timer does not wait for them.)
    pub.publish("assessment_submitted", {"cycle_id": cycle_id, "org_id": ids["branch2"],
                                         "stage": "self_assessment"})
    pub.publish("assessment_deadline_extended", {"cycle_id": cycle_id, "org_id": ids["college"],
                                                 "stage": "self_assessment", "until": later})
    wait_for(lambda: rpc_as("ops").notifications.consumer_status()["evaluation"]["events"] == 2)
    pub.publish("cycle_opened", {
        "name": "2026年度星级考评", "level": 3, "period": "2026",
        "org_ids": [ids["branch"], ids["branch2"], ids["college"]],
        "deadlines": {"self_assessment": soon, "review": later},
        "scheme_id": "s", "scheme_version": 1, "publicity_days": 5}, originator_id=cycle_id)
    box = wait_inbox(rpc_as, ids["secretary"], 2)
    reminder = next(i for i in box["items"] if i["notice_type"] == "stage_deadline_approaching")
    assert "自评阶段将于" in reminder["subject"] and "尚未提交" in reminder["body"]
    # Both instances keep ticking (every 0.2 s): still exactly one reminder, and none
    # for the branch that submitted, nor for the review stage due in 20 days.
    eventlet.sleep(1.0)
    box = inbox_of(rpc_as, ids["secretary"])
    assert sorted(i["notice_type"] for i in box["items"]) == [
        "cycle_opened", "stage_deadline_approaching"]
    other = inbox_of(rpc_as, ids["secretary2"])
    assert [i["notice_type"] for i in other["items"]] == ["cycle_opened"]
    college = inbox_of(rpc_as, ids["college_secretary"])
    assert [i["notice_type"] for i in college["items"]] == ["cycle_opened"]
    assert rpc_as("ops").notifications.list_dead_letters()["total"] == 0
    # A restart: both instances stop, a new one ticks — the reminder is not repeated.
    for container in instances:
        container.stop()
    start_service("notifications", INSTANCE="c", **config)
    eventlet.sleep(1.0)
    box = inbox_of(rpc_as, ids["secretary"])
    assert sorted(i["notice_type"] for i in box["items"]) == [
        "cycle_opened", "stage_deadline_approaching"]


def test_deadline_timer_follows_organisations_added_to_and_dropped_from_a_cycle(
        world, rpc_as):
    ids, pub = world
    far = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=30)).isoformat()
    soon = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)).isoformat()
    cycle = pub.publish("cycle_opened", {
        "name": "2026年度星级考评", "level": 3, "period": "2026", "org_ids": [ids["branch"]],
        "deadlines": {"self_assessment": far}, "scheme_id": "s", "scheme_version": 1,
        "publicity_days": 5})
    cid = cycle["originator_id"]
    pub.publish("cycle_organization_added", {"org_id": ids["branch2"], "org_name": "学生第一党支部"},
                originator_id=cid)
    pub.publish("cycle_organization_dropped", {"org_id": ids["branch"]}, originator_id=cid)
    ops = rpc_as("ops").notifications
    wait_for(lambda: ops.consumer_status()["evaluation"]["events"] == 3)
    # Both branches now have a deadline tomorrow; only branch2 is still in the cycle.
    for key in ("branch", "branch2"):
        pub.publish("assessment_deadline_extended", {"cycle_id": cid, "org_id": ids[key],
                                                     "stage": "self_assessment", "until": soon})
    reminder = wait_inbox(rpc_as, ids["secretary2"], 1)["items"][0]
    assert reminder["notice_type"] == "stage_deadline_approaching"
    assert reminder["org_name"] == "学生第一党支部"
    eventlet.sleep(0.6)  # a few more ticks of the timer
    assert [i["notice_type"] for i in inbox_of(rpc_as, ids["secretary"])["items"]] == [
        "cycle_opened"]
