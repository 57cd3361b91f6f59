"""A consumer's batches (``Inbox.handle_batch``) against real PostgreSQL: one
transaction for the batch and its inbox positions, per-aggregate order, a
failing event parked after ``max_attempts`` with the rest of the batch applied,
and exactly once across a crash before or after the commit."""
import uuid

import pytest

from services.notifications.application import NotificationsApplication
from shared.consumer import APPLIED, DEFERRED, DUPLICATE, HELD_OUTCOME, PARKED_OUTCOME, Inbox


@pytest.fixture
def app(clean_databases):
    app = NotificationsApplication(clean_databases["notifications"])
    with app.transaction() as curs:
        curs.execute("DROP TABLE IF EXISTS applied")
        curs.execute("CREATE TABLE applied (event_id text PRIMARY KEY, n serial)")
    yield app
    app.close()


def envelope(aggregate: str, version: int, position: int | None = None) -> dict:
    return {"event_id": f"{aggregate}:{version}", "originator_id": aggregate,
            "originator_version": version, "position": position or version,
            "source": "test", "type": "test_happened"}


def record(curs, env):
    # a primary key: applying an event twice would fail the test loudly
    curs.execute("INSERT INTO applied (event_id) VALUES (%s)", (env["event_id"],))


def applied_ids(app) -> list[str]:
    return [r["event_id"] for r in app.query("SELECT event_id FROM applied ORDER BY n")]


def positions(app, consumer: str) -> dict[str, int]:
    return {str(r["originator_id"]): r["last_version"] for r in app.query(
        "SELECT originator_id, last_version FROM inbox_positions WHERE consumer = %s",
        (consumer,))}


def test_a_batch_applies_each_aggregate_in_version_order_once(app):
    inbox = Inbox(app, consumer="test.batch", service="test")
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    # delivered out of order within the batch, with a duplicate delivery of b:1
    batch = [envelope(a, 2), envelope(b, 1), envelope(a, 1), envelope(b, 1), envelope(b, 2)]
    outcomes = inbox.handle_batch(batch, record)
    assert outcomes == [APPLIED, APPLIED, APPLIED, DUPLICATE, APPLIED]
    applied = applied_ids(app)
    assert applied.index(f"{a}:1") < applied.index(f"{a}:2")
    assert applied.index(f"{b}:1") < applied.index(f"{b}:2")
    assert positions(app, "test.batch") == {a: 2, b: 2}
    # redelivered after the commit (the ack was lost): all skipped, nothing twice
    assert inbox.handle_batch(batch, record) == [DUPLICATE] * 5
    assert len(applied_ids(app)) == 4


def test_a_crash_before_the_commit_applies_nothing_and_the_redelivery_applies_once(app):
    inbox = Inbox(app, consumer="test.crash", service="test")
    a = str(uuid.uuid4())
    batch = [envelope(a, v) for v in (1, 2, 3)]

    def crash_on_third(curs, env):
        record(curs, env)
        if env["originator_version"] == 3:
            raise KeyboardInterrupt("the worker died mid-batch")

    with pytest.raises(KeyboardInterrupt):
        inbox.handle_batch(batch, crash_on_third)
    assert applied_ids(app) == [] and positions(app, "test.crash") == {}
    assert inbox.handle_batch(batch, record) == [APPLIED] * 3
    assert applied_ids(app) == [f"{a}:1", f"{a}:2", f"{a}:3"]


def test_a_gap_is_deferred_and_applied_once_its_predecessor_came(app):
    inbox = Inbox(app, consumer="test.gap", service="test", wait_for_predecessor=0.05)
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    outcomes = inbox.handle_batch([envelope(a, 2), envelope(b, 1), envelope(a, 3)], record)
    assert outcomes == [DEFERRED, APPLIED, DEFERRED]  # a:1 never came: back on the queue
    assert inbox.handle_batch([envelope(a, 1), envelope(a, 2), envelope(a, 3)], record) == \
        [APPLIED] * 3
    assert positions(app, "test.gap") == {a: 3, b: 1}


def test_a_failing_event_is_parked_after_three_attempts_and_the_rest_applies(app):
    inbox = Inbox(app, consumer="test.poison", service="test", max_attempts=3,
                  failure_pause=0)
    good, bad = str(uuid.uuid4()), str(uuid.uuid4())

    def effect(curs, env):
        if env["event_id"] == f"{bad}:1":
            curs.execute("SELECT 1/0")  # the transaction is aborted, as a real failure does
        record(curs, env)

    for attempt in (1, 2):
        batch = [envelope(good, attempt), envelope(bad, 1), envelope(bad, 2)]
        assert inbox.handle_batch(batch, effect) == [APPLIED, DEFERRED, DEFERRED]
        failures = {f["event_id"]: f["attempts"] for f in inbox.failures()}
        assert failures == {f"{bad}:1": attempt}
    batch = [envelope(good, 3), envelope(bad, 1), envelope(bad, 2)]
    assert inbox.handle_batch(batch, effect) == [APPLIED, PARKED_OUTCOME, HELD_OUTCOME]
    assert applied_ids(app) == [f"{good}:1", f"{good}:2", f"{good}:3"]
    assert positions(app, "test.poison") == {good: 3, bad: 0}
    parked = inbox.status()
    assert parked["parked"] == 1 and parked["held"] == 1
    assert inbox.failures() == []
    # redelivered: still parked and held, nothing applied twice
    assert inbox.handle_batch(batch, effect) == [DUPLICATE, PARKED_OUTCOME, HELD_OUTCOME]


def test_a_malformed_envelope_in_a_batch_is_parked_alone(app):
    inbox = Inbox(app, consumer="test.malformed", service="test", max_attempts=1,
                  failure_pause=0)
    a = str(uuid.uuid4())
    odd = {"event_id": "odd:1", "originator_id": "not-a-uuid", "originator_version": 1,
           "source": "test"}
    assert inbox.handle_batch([envelope(a, 1), odd, envelope(a, 2)], record) == \
        [APPLIED, PARKED_OUTCOME, APPLIED]
    assert positions(app, "test.malformed") == {a: 2}


# -- the org directory's folded batches (shared.directory.MemberRowsBatch) --------------
def member_event(member: str, version: int, kind: str, data: dict, at: str) -> dict:
    return {"event_id": f"{member}:{version}", "originator_id": member,
            "originator_version": version, "position": None, "source": "organizations",
            "type": kind, "data": data, "occurred_at": at}


def registered(member: str, name: str, branch: str) -> dict:
    return member_event(member, 1, "member_registered",
                        {"name": name, "branch_id": branch, "category": "teacher",
                         "status": "probationary", "double_leader": False},
                        "2026-01-01T00:00:00+00:00")


def directory_rows(app) -> dict:
    return {str(r["id"]): (r["name"], str(r["branch_id"]), r["category"], r["status"],
                           r["double_leader"], r["active"], r["updated_at"].isoformat())
            for r in app.query("SELECT * FROM dir_members")}


def test_a_directory_batch_folds_member_rows_and_keeps_every_effect_in_order(app):
    directory = app.directory
    a, b, old = (str(uuid.uuid4()) for _ in range(3))
    one, two = str(uuid.uuid4()), str(uuid.uuid4())
    assert directory.handle_batch([registered(old, "老党员", one)]) == [APPLIED]
    seen = []  # what a listener of category changes reads: the rows of the events before it
    directory.listen(lambda curs, env: seen.append(curs.execute(
        "SELECT double_leader, branch_id FROM dir_members WHERE id = %s",
        (env["originator_id"],)).fetchone()), types=("member_category_changed",))
    batch = [
        registered(a, "张三", one),
        member_event(a, 2, "member_double_leader_set", {"double_leader": True},
                     "2026-02-01T00:00:00+00:00"),
        member_event(old, 2, "member_converted_to_full", {}, "2026-02-02T00:00:00+00:00"),
        member_event(old, 3, "member_double_leader_set", {"double_leader": True},
                     "2026-02-03T00:00:00+00:00"),
        # a transfer is applied as it is: what was folded before it is written first
        member_event(a, 3, "member_transferred",
                     {"from_branch_id": one, "to_branch_id": two, "effective_on": "2026-03-01"},
                     "2026-03-01T00:00:00+00:00"),
        member_event(a, 4, "member_category_changed", {"category": "student"},
                     "2026-04-01T00:00:00+00:00"),
        registered(b, "李四", two),
        member_event(old, 4, "member_left", {}, "2026-05-01T00:00:00+00:00"),
        member_event(a, 5, "member_double_leader_set", {"double_leader": False},
                     "2026-06-01T00:00:00+00:00"),
    ]
    assert directory.handle_batch(batch) == [APPLIED] * len(batch)
    assert directory_rows(app) == {
        a: ("张三", two, "student", "probationary", False, True, "2026-06-01T00:00:00+00:00"),
        b: ("李四", two, "teacher", "probationary", False, True, "2026-01-01T00:00:00+00:00"),
        old: ("老党员", one, "teacher", "full", True, False, "2026-05-01T00:00:00+00:00"),
    }
    assert [(r["double_leader"], str(r["branch_id"])) for r in seen] == [(True, two)]
    assert [(str(r["member_id"]), str(r["to_branch_id"])) for r in app.query(
        "SELECT member_id, to_branch_id FROM dir_member_moves")] == [(a, two)]
    assert positions(app, "notifications.org_directory") == {a: 5, b: 1, old: 4}


def test_a_folded_event_that_fails_is_found_and_the_rest_of_the_batch_applied(app):
    directory = app.directory
    good, bad = str(uuid.uuid4()), str(uuid.uuid4())
    branch = str(uuid.uuid4())
    batch = [registered(good, "张三", branch), registered(bad, "李四", branch),
             member_event(good, 2, "member_double_leader_set", {"double_leader": True},
                          "2026-02-01T00:00:00+00:00"),
             # not a boolean: the folded write fails, then each event is applied alone
             member_event(bad, 2, "member_double_leader_set", {"double_leader": "maybe"},
                          "2026-02-01T00:00:00+00:00")]
    directory.inbox.failure_pause = 0
    outcomes = directory.handle_batch(batch)
    assert outcomes == [APPLIED, DEFERRED, APPLIED, DEFERRED]
    assert set(directory_rows(app)) == {good}
    assert directory_rows(app)[good][4] is True
    assert [r["event_id"] for r in app.query("SELECT event_id FROM inbox_failures")] == \
        [f"{bad}:2"]
