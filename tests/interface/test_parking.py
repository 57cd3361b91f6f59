"""Parked events (停放的事件): one event a read model or a consumer cannot apply
is parked with its error; the others go on; the same aggregate's later events
wait behind it; ops retry or skip it with a reason; rebuild passes over it; the
record survives hostile content (NUL, lone surrogates, NaN)."""
import math
import uuid

import pytest

from services.notifications.application import NotificationsApplication
from services.organizations.application import OrganizationsApplication
from services.organizations.domain import Member
from shared.consumer import APPLIED, DUPLICATE, Inbox, OutOfOrder
from shared.errors import Forbidden, NotFound, ValidationError
from shared.identity import AUDITOR, OPS, ORG_ADMIN, Caller
from shared.parking import safe_json, safe_text

OPS_CALLER = Caller(sub="xinxi.zhongxin", role=OPS)
ADMIN = Caller(sub="zuzhibu", role=ORG_ADMIN)
ACTOR = {"sub": "zuzhibu", "role": ORG_ADMIN}


@pytest.fixture
def org_app(clean_databases):
    app = OrganizationsApplication(clean_databases["organizations"])
    committee = app.create_organization(ADMIN, {"name": "学校党委", "kind": "committee"})
    college = app.create_organization(ADMIN, {"name": "机电学院党总支", "kind": "general_branch",
                                              "parent_id": committee["id"]})
    branch = app.create_organization(ADMIN, {"name": "教工第一党支部", "kind": "teacher_branch",
                                             "parent_id": college["id"]})
    app.test_branch = branch["id"]
    yield app
    app.close()


def save_member(app, name: str, double_leader: bool = False) -> Member:
    """A member saved straight through the store, past any command validation."""
    member = Member(id=uuid.uuid4(), name=name, branch_id=uuid.UUID(app.test_branch),
                    category="teacher", status="full", joined_on="2010-07-01",
                    full_on="2010-07-01", double_leader=double_leader, staff_no=None,
                    actor=ACTOR, reason=None)
    app.save(member)
    app.projector.catch_up()
    return member


def register(app, name: str) -> dict:
    return app.register_member(ADMIN, {"name": name, "branch_id": app.test_branch,
                                       "category": "teacher", "status": "full",
                                       "joined_on": "2012-09-01"})


def names(app) -> set[str]:
    return {r["name"] for r in app.query("SELECT name FROM member_view")}


def parked(app, status=None) -> list[dict]:
    payload = {"status": status} if status else {}
    return app.list_parked(OPS_CALLER, payload)["items"]


def test_a_nul_parks_its_event_and_the_read_models_go_on(org_app):
    app = org_app
    poisoned = save_member(app, "毒\x00药")  # PostgreSQL text refuses NUL
    [row] = parked(app)
    assert row["status"] == "parked" and row["event_type"] == "member_registered"
    assert row["event_id"] == f"{poisoned.id}:1" and row["originator_id"] == str(poisoned.id)
    assert "NUL" in row["error"] and row["attempts"] == 1 and row["position"] > 0
    # other aggregates go on; commands answer from the read models
    assert register(app, "张三")["name"] == "张三"
    assert names(app) == {"张三"}
    assert app.projector.position() == app.recorder.max_notification_id()

    # the same member's next event waits behind the parked one
    poisoned.set_double_leader(True, ACTOR)
    app.save(poisoned)
    app.projector.catch_up()
    held = parked(app, "held")
    assert [(h["event_id"], h["waiting_behind"]) for h in held] == [
        (f"{poisoned.id}:2", f"{poisoned.id}:1")]
    status = app.consumer_status(OPS_CALLER)["read_models"]["parked"]
    assert (status["parked"], status["held"]) == (1, 1)
    assert {e["status"] for e in status["events"]} == {"parked", "held"}
    gauges = {s[0]: s[1] for s in app.parked_gauges()[0]["samples"]}
    assert gauges[("organizations", "read_models", "parked")] == 1
    assert gauges[("organizations", "read_models", "held")] == 1

    # rebuild passes over it (parked again, the rest rebuilt)
    assert app.rebuild_read_models(OPS_CALLER)["replayed_events"] > 0
    assert names(app) == {"张三"}
    assert [(r["status"], r["attempts"]) for r in parked(app)
            if r["event_id"] == f"{poisoned.id}:1"] == [("parked", 2)]

    # skip: recorded with who and why; the held one is applied after it
    head = next(r for r in parked(app) if r["status"] == "parked")
    result = app.skip_parked(OPS_CALLER, {"parked_id": head["parked_id"],
                                          "reason": "name holds a NUL; re-registered by hand"})
    assert result["skipped"] == 1 and result["applied"] == 1 and result["still_open"] == 0
    skipped = result["parked"]
    assert (skipped["status"], skipped["resolved_by"], skipped["resolved_role"]) == (
        "skipped", "xinxi.zhongxin", "ops")
    assert skipped["resolved_reason"] == "name holds a NUL; re-registered by hand"
    assert [r["status"] for r in parked(app, "applied")] == ["applied"]
    [listed] = [r for r in parked(app) if r["parked_id"] == head["parked_id"]]
    assert [(a["action"], a["sub"], a["outcome"]) for a in listed["actions"]] == [
        ("skip", "xinxi.zhongxin", "skipped")]
    # a skipped event stays skipped through a rebuild
    app.rebuild_read_models(OPS_CALLER)
    assert names(app) == {"张三"} and parked(app, "parked") == []
    assert [r["event_id"] for r in parked(app, "skipped")] == [f"{poisoned.id}:1"]


def test_retry_after_the_cause_is_fixed_applies_the_held_events_in_order(org_app, monkeypatch):
    app = org_app
    broken: set = set()
    # Member.Registered is folded a page at a time (``@folds``): a fold that
    # raises fails its event as a handler would.
    registered = app.read_model._folds[Member.Registered]

    def flaky(batch, e):
        if e.originator_id in broken:
            raise RuntimeError(f"template for {e.originator_id} is broken")
        registered(batch, e)

    monkeypatch.setitem(app.read_model._folds, Member.Registered, flaky)
    member_id = uuid.uuid4()
    broken.add(member_id)
    member = Member(id=member_id, name="李四", branch_id=uuid.UUID(app.test_branch),
                    category="teacher", status="full", joined_on="2010-07-01",
                    full_on="2010-07-01", double_leader=False, staff_no=None, actor=ACTOR)
    app.save(member)
    app.projector.catch_up()
    member.set_double_leader(True, ACTOR)
    app.save(member)
    register(app, "王五")  # other aggregates are applied meanwhile
    assert names(app) == {"王五"}
    head = next(r for r in parked(app) if r["status"] == "parked")

    # permissions and arguments
    with pytest.raises(Forbidden):
        app.retry_parked(Caller(sub="jiwei", role=AUDITOR), {"parked_id": head["parked_id"],
                                                            "reason": "x"})
    assert app.list_parked(Caller(sub="jiwei", role=AUDITOR), {})["items"]
    with pytest.raises(ValidationError) as missing_reason:
        app.retry_parked(OPS_CALLER, {"parked_id": head["parked_id"]})
    assert missing_reason.value.fields == ["reason"]
    with pytest.raises(ValidationError):
        app.retry_parked(OPS_CALLER, {"parked_id": head["parked_id"], "reason": "  "})
    with pytest.raises(NotFound):
        app.retry_parked(OPS_CALLER, {"parked_id": 999999, "reason": "x"})
    held = parked(app, "held")[0]
    with pytest.raises(ValidationError) as behind:
        app.retry_parked(OPS_CALLER, {"parked_id": held["parked_id"], "reason": "x"})
    assert "waits behind" in str(behind.value)

    # still broken: it stays parked with the new error, and the held one waits
    again = app.retry_parked(ADMIN, {"parked_id": head["parked_id"], "reason": "try again"})
    assert again["applied"] == 0 and again["still_open"] == 2
    assert again["parked"]["status"] == "parked" and again["parked"]["attempts"] == 2

    broken.clear()  # the cause is fixed
    done = app.retry_parked(ADMIN, {"parked_id": head["parked_id"], "reason": "模板已修复"})
    assert (done["applied"], done["still_open"]) == (2, 0)
    assert done["parked"]["status"] == "retried"
    row = app.query_one("SELECT name, double_leader FROM member_view WHERE id = %s",
                        (str(member_id),))
    assert row == {"name": "李四", "double_leader": True}  # both applied, in order
    actions = next(r for r in parked(app) if r["parked_id"] == head["parked_id"])["actions"]
    assert [a["outcome"].split(":")[0] for a in actions] == ["failed again", "applied"]
    with pytest.raises(ValidationError):
        app.skip_parked(OPS_CALLER, {"parked_id": head["parked_id"], "reason": "late"})


def test_rebuild_parks_an_event_that_now_fails_and_clears_one_that_now_applies(
        org_app, monkeypatch):
    app = org_app
    first = register(app, "赵六")
    registered = app.read_model._folds[Member.Registered]  # folded (see above)

    def refuse_zhao(batch, e):
        if str(e.originator_id) == first["id"]:
            raise ValueError("refused")
        registered(batch, e)

    monkeypatch.setitem(app.read_model._folds, Member.Registered, refuse_zhao)
    register(app, "钱七")
    app.rebuild_read_models(ADMIN)  # must not fail on it
    assert names(app) == {"钱七"}
    assert [r["event_id"] for r in parked(app, "parked")] == [f"{first['id']}:1"]
    monkeypatch.setitem(app.read_model._folds, Member.Registered, registered)
    app.rebuild_read_models(ADMIN)
    assert names(app) == {"赵六", "钱七"}
    assert parked(app, "parked") == []
    assert parked(app, "applied")[0]["resolved_by"] == "rebuild_read_models"


# -- consumers ---------------------------------------------------------------------
def envelope(aggregate, version, **data):
    return {"event_id": f"{aggregate}:{version}", "originator_id": aggregate,
            "originator_version": version, "position": None, "source": "test",
            "type": "thing_happened", "data": data}


@pytest.fixture
def notif_app(clean_databases):
    app = NotificationsApplication(clean_databases["notifications"])
    yield app
    app.close()


def test_a_consumer_parks_an_event_whose_effect_keeps_failing(notif_app):
    app = notif_app
    applied, poison = [], set()

    def effect(curs, env):
        if env["event_id"] in poison:
            raise RuntimeError(f"cannot apply {env['event_id']}")
        applied.append(env["event_id"])

    inbox = Inbox(app, consumer="test.parking", service="test", failure_pause=0,
                  max_attempts=3, effect=effect)
    x, y = str(uuid.uuid4()), str(uuid.uuid4())
    assert inbox.handle(envelope(x, 1), effect) == APPLIED
    poison.add(f"{x}:2")
    for attempt in (1, 2):
        with pytest.raises(RuntimeError):
            inbox.handle(envelope(x, 2), effect)
        assert [f["attempts"] for f in inbox.failures()] == [attempt]
    assert inbox.handle(envelope(x, 2), effect) == "parked"  # acknowledged, not requeued
    assert inbox.failures() == []
    assert inbox.handle(envelope(x, 3), effect) == "held"
    assert inbox.handle(envelope(y, 1), effect) == APPLIED  # other aggregates go on
    assert inbox.handle(envelope(x, 2), effect) == "parked"  # a redelivery changes nothing

    # gap filling must not apply the parked event behind the parking's back
    def source_log(originator_id, after_version):
        return [envelope(x, v) for v in range(after_version + 1, 6)]

    assert inbox.handle(envelope(x, 5), effect, fill_gap=source_log) == "held"
    assert applied == [f"{x}:1", f"{y}:1"]
    summary = inbox.status()
    assert (summary["parked"], summary["held"]) == (1, 2)
    assert [(e["event_id"], e["status"], e["waiting_behind"]) for e in summary["events"]] == [
        (f"{x}:2", "parked", None), (f"{x}:3", "held", f"{x}:2"), (f"{x}:5", "held", f"{x}:2")]

    poison.clear()
    head = summary["events"][0]["parked_id"]
    result = app.retry_parked(OPS_CALLER, {"parked_id": head, "reason": "fixed"})
    # 2 and 3 apply; 5 keeps waiting for 4, which was never received
    assert (result["applied"], result["still_open"]) == (2, 1)
    assert applied[2:] == [f"{x}:2", f"{x}:3"]
    [waiting] = inbox.status()["events"]
    assert waiting["status"] == "held" and "version 4" in waiting["waiting_behind"]
    assert inbox.handle(envelope(x, 4), effect) == APPLIED  # it arrives: 4, then 5
    assert applied[4:] == [f"{x}:4", f"{x}:5"]
    assert inbox.status()["events"] == []
    assert inbox.handle(envelope(x, 5), effect) == DUPLICATE


def test_skipping_a_consumer_event_advances_past_it(notif_app):
    app = notif_app
    applied = []

    def effect(curs, env):
        if env["data"].get("bad"):
            raise ValueError("bad data")
        applied.append(env["originator_version"])

    inbox = Inbox(app, consumer="test.skip", service="test", failure_pause=0, max_attempts=1,
                  effect=effect)
    z = str(uuid.uuid4())
    assert inbox.handle(envelope(z, 1, bad=True), effect) == "parked"
    assert inbox.handle(envelope(z, 2), effect) == "held"
    head = inbox.status()["events"][0]["parked_id"]
    with pytest.raises(Forbidden):
        app.skip_parked(Caller(sub="m", role="member"), {"parked_id": head, "reason": "x"})
    result = app.skip_parked(ADMIN, {"parked_id": head, "reason": "数据错误, 已人工处理"})
    assert (result["skipped"], result["applied"]) == (1, 1) and applied == [2]
    assert inbox.handle(envelope(z, 1, bad=True), effect) == DUPLICATE
    assert app.query_one("SELECT last_version FROM inbox_positions WHERE consumer = %s",
                         ("test.skip",))["last_version"] == 2
    # a transient database error is retried, never parked
    import psycopg
    from eventsourcing.persistence import PersistenceError

    def down(curs, env):
        raise psycopg.OperationalError("server closed the connection")

    with pytest.raises(PersistenceError):  # psycopg's error, as the store reraises it
        inbox.handle(envelope(z, 3), down)
    assert inbox.status()["parked"] == 0


def test_hostile_content_is_recorded_and_replayed_unchanged(notif_app):
    app = notif_app
    hostile = {"name": "毒\x00药\ud800", "score": float("nan"), "big": float("inf"),
               "key\x00": ["\udfff"]}
    received = []
    failing = [True]

    def effect(curs, env):
        if failing[0]:
            raise ValueError("bad value \x00 \ud83d in " + env["data"]["name"])
        received.append(env)

    inbox = Inbox(app, consumer="test.hostile", service="test", failure_pause=0,
                  max_attempts=2, effect=effect)
    h = str(uuid.uuid4())
    with pytest.raises(ValueError):
        inbox.handle(envelope(h, 1, **hostile), effect)
    [failure] = inbox.failures()
    assert "\\x00" in failure["last_error"] and "\\ud83d" in failure["last_error"]
    assert inbox.handle(envelope(h, 1, **hostile), effect) == "parked"
    [row] = inbox.status()["events"]
    assert "\x00" not in row["error"] and "\\x00" in row["error"]
    failing[0] = False
    for poison in ("理由\ud800", "理由 with \x00 too"):  # an argument is safe text (issue 7)
        with pytest.raises(ValidationError) as refused:
            app.retry_parked(OPS_CALLER, {"parked_id": row["parked_id"], "reason": poison})
        assert refused.value.fields == ["reason"]
    app.retry_parked(OPS_CALLER, {"parked_id": row["parked_id"], "reason": "理由 fixed"})
    [env] = received
    data = env["data"]
    assert data["name"] == "毒\x00药\ud800" and math.isnan(data["score"])
    assert data["big"] == float("inf") and data["key\x00"] == ["\udfff"]
    [listed] = app.list_parked(OPS_CALLER, {"component": "test.hostile"})["items"]
    assert listed["status"] == "retried"
    assert listed["resolved_reason"] == "理由 fixed"


def test_safe_text_and_json_escape_what_postgresql_refuses():
    assert safe_text("a\x00b\ud800") == "a\\x00b\\ud800"
    assert len(safe_text("x" * 10_000)) < 4100
    assert safe_json({"a\x00": [float("nan"), "\udfff", 1, None]}) == {
        "a\\x00": ["nan", "\\udfff", 1, None]}


def test_out_of_order_still_goes_back_to_the_queue_while_nothing_is_parked(notif_app):
    inbox = Inbox(notif_app, consumer="test.order", service="test", wait_for_predecessor=0.01)
    with pytest.raises(OutOfOrder):
        inbox.handle(envelope(str(uuid.uuid4()), 2), lambda curs, env: None)


# -- over RPC --------------------------------------------------------------------
def test_ops_see_retry_and_skip_parked_events_over_rpc(start_service, rpc_as):
    import requests

    from tests.helpers import build_tree, event_store

    orgs = start_service("organizations")
    admin = rpc_as("org_admin", sub="zuzhibu").organizations
    tree = build_tree(admin, branches=1, members_per_branch=1)
    app = event_store(orgs).app
    poisoned = Member(id=uuid.uuid4(), name="毒\x00药", branch_id=uuid.UUID(tree["branches"][0]),
                      category="teacher", status="full", joined_on="2010-07-01",
                      full_on="2010-07-01", double_leader=False, staff_no=None, actor=ACTOR)
    app.save(poisoned)
    # the next command is answered (the parked event does not stop the read models)
    admin.set_double_leader(member_id=tree["members"][0], double_leader=True)
    ops = rpc_as("ops", sub="xinxi").organizations
    [head] = ops.consumer_status()["read_models"]["parked"]["events"]
    assert head["event_id"] == f"{poisoned.id}:1" and "NUL" in head["error"]
    text = requests.get(f"http://{orgs.config['WEB_SERVER_ADDRESS']}/metrics", timeout=5).text
    assert ('lianchuang_parked_events{consumer="read_models",service="organizations",'
            'status="parked"} 1.0') in text
    assert rpc_as("auditor").organizations.list_parked()["items"][0]["status"] == "parked"
    for role, org in (("auditor", None), ("college_secretary", tree["college"]),
                      ("member", None)):
        with pytest.raises(Forbidden):
            rpc_as(role, org=org).organizations.retry_parked(parked_id=head["parked_id"],
                                                             reason="x")
    with pytest.raises(Forbidden):
        rpc_as("branch_secretary", org=tree["branches"][0]).organizations.list_parked()
    with pytest.raises(ValidationError) as no_reason:
        ops.skip_parked(parked_id=head["parked_id"], reason="")
    assert no_reason.value.fields == ["reason"]
    retried = ops.retry_parked(parked_id=head["parked_id"], reason="再试一次")
    assert retried["parked"]["status"] == "parked" and retried["parked"]["attempts"] == 2
    skipped = ops.skip_parked(parked_id=head["parked_id"], reason="姓名含NUL")
    assert skipped["parked"]["status"] == "skipped"
    assert skipped["parked"]["resolved_by"] == "xinxi"
    assert ops.consumer_status()["read_models"]["parked"]["parked"] == 0
    [listed] = ops.list_parked(status="skipped")["items"]
    assert [a["action"] for a in listed["actions"]] == ["retry", "skip"]


def test_notifications_parks_a_source_event_and_replays_it_through_its_rules(
        notif_app, monkeypatch):
    app = notif_app
    inbox = app.inboxes["evaluation"]
    monkeypatch.setattr(inbox, "failure_pause", 0)
    broken, tracked = [True], []
    track = app._track

    def flaky_track(curs, env):
        if broken[0]:
            raise ValueError("NaN publicity_days")
        tracked.append(env["event_id"])
        track(curs, env)

    monkeypatch.setattr(app, "_track", flaky_track)
    cycle = str(uuid.uuid4())
    event = {**envelope(cycle, 1, publicity_days=float("nan")), "source": "evaluation"}
    outcomes = []
    for _ in range(inbox.max_attempts):
        try:
            outcomes.append(app.on_event(event))
        except ValueError:
            outcomes.append("raised")
    assert outcomes == ["raised"] * (inbox.max_attempts - 1) + ["parked"]
    status = app.consumer_status(OPS_CALLER)["evaluation"]["parked"]
    assert status["parked"] == 1 and "NaN publicity_days" in status["events"][0]["error"]
    broken[0] = False
    app.retry_parked(OPS_CALLER, {"parked_id": status["events"][0]["parked_id"],
                                  "reason": "fixed"})
    assert tracked == [f"{cycle}:1"]
    assert app.consumer_status(OPS_CALLER)["evaluation"]["events"] == 1
