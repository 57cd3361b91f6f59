"""The shared platform against real PostgreSQL and RabbitMQ: green-thread
friendly database access, the relay, the ordered idempotent inbox, scale-out
with two instances, health and metrics."""
import json
from collections import Counter
import time
import uuid

import eventlet
import pytest
import requests
from kombu import Connection, Exchange, Queue

from services.notifications.application import NotificationsApplication
from services.organizations.application import OrganizationsApplication
from shared import metrics
from shared.consumer import APPLIED, DUPLICATE, Inbox, OutOfOrder
from tests.conftest import service_config, wait_for
from tests.helpers import build_tree, event_store, rows


def test_slow_queries_do_not_block_other_green_threads(clean_databases):
    app = OrganizationsApplication(clean_databases["organizations"])
    try:
        app.query("SELECT 1")  # warm the pool
        started = time.perf_counter()
        pool = eventlet.GreenPool()
        for _ in range(5):
            pool.spawn(app.query, "SELECT pg_sleep(0.5)")
        pool.waitall()
        elapsed = time.perf_counter() - started
    finally:
        app.close()
    # five 0.5 s queries one after another would take 2.5 s
    assert elapsed < 1.25, f"5 concurrent 0.5 s queries took {elapsed:.2f}s"


def test_inbox_applies_each_version_once_and_in_order(clean_databases):
    app = NotificationsApplication(clean_databases["notifications"])
    try:
        applied = []
        inbox = Inbox(app, consumer="test.inbox", service="test")
        aggregate = str(uuid.uuid4())

        def envelope(version):
            return {"event_id": f"{aggregate}:{version}", "originator_id": aggregate,
                    "originator_version": version, "position": version, "source": "test"}

        def effect(curs, env):
            applied.append(env["originator_version"])

        with pytest.raises(OutOfOrder):
            inbox.process(envelope(2), effect)
        assert inbox.process(envelope(1), effect) == APPLIED
        assert inbox.process(envelope(1), effect) == DUPLICATE
        assert inbox.process(envelope(2), effect) == APPLIED
        assert applied == [1, 2]

        def broken(curs, env):
            curs.execute("INSERT INTO inbox_positions (consumer, originator_id) "
                         "VALUES ('witness', %s)", (aggregate,))
            raise RuntimeError("template exploded")

        with pytest.raises(RuntimeError):
            inbox.process(envelope(3), broken)
        # the failed effect left nothing behind, and version 3 is still to do
        assert app.query("SELECT * FROM inbox_positions WHERE consumer = 'witness'") == []
        assert inbox.process(envelope(3), effect) == APPLIED
    finally:
        app.close()


def test_inbox_fills_a_gap_from_the_source_log(clean_databases):
    app = NotificationsApplication(clean_databases["notifications"])
    try:
        applied = []
        inbox = Inbox(app, consumer="test.gaps", service="test", gap_fill_after=0.05)
        aggregate = str(uuid.uuid4())

        def envelope(version):
            return {"event_id": f"{aggregate}:{version}", "originator_id": aggregate,
                    "originator_version": version, "position": None, "source": "test"}

        def effect(curs, env):
            applied.append(env["originator_version"])

        asked = []

        def source_log(originator_id, after_version):
            asked.append((originator_id, after_version))
            return [envelope(v) for v in range(after_version + 1, 6)]  # the source has 1-5

        assert inbox.handle(envelope(1), effect) == APPLIED
        # version 4 arrives; 2 and 3 never will: they are read from the source first
        assert inbox.handle(envelope(4), effect, fill_gap=source_log) == APPLIED
        assert applied == [1, 2, 3, 4] and asked == [(aggregate, 1)]
        # without a source to read, a gap still goes back to the queue
        with pytest.raises(OutOfOrder):
            Inbox(app, consumer="test.gaps", service="test", wait_for_predecessor=0.05).handle(
                envelope(6), effect)
    finally:
        app.close()


def test_relay_publishes_every_event_in_order_with_its_envelope(start_service, rpc_as,
                                                                 rabbit_config):
    exchange = Exchange("organizations.events", type="topic", durable=True)
    queue = Queue("test-tap", exchange=exchange, routing_key="#", durable=False)
    with Connection(rabbit_config["AMQP_URI"]) as conn:
        queue(conn.default_channel).declare()
        start_service("organizations")
        admin = rpc_as("org_admin", sub="zuzhibu").organizations
        tree = build_tree(admin, branches=2, members_per_branch=2)
        admin.transfer_member(member_id=tree["members"][0], to_branch_id=tree["branches"][1],
                              effective_on="2026-09-01", reason="工作调动")
        received = []

        def drain():
            while True:
                message = queue(conn.default_channel).get(no_ack=True)
                if message is None:
                    return any(key == "member_transferred" for key, *_ in received)
                received.append((message.delivery_info["routing_key"], message.payload,
                                 message.properties.get("delivery_mode")))

        wait_for(drain, timeout=10, message="the transfer, last event, on the exchange")
    envelopes = [payload for _, payload, _ in received]
    positions = [e["position"] for e in envelopes]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    assert all(key == e["type"] for key, e, _ in received)
    assert all(mode == 2 for *_, mode in received)  # persistent
    # every event once: 4 organisations, 4 members admitted to their branches, one
    # transfer between two branch rosters; the 5 name claims (one for the single
    # committee) are internal: stored, never published (docs/events.md)
    assert Counter(key for key, *_ in received) == {
        "organization_created": 4, "member_registered": 4,
        "organization_member_admitted": 5, "organization_member_released": 1,
        "member_transferred": 1}
    transfer = [e for e in envelopes if e["type"] == "member_transferred"][0]
    assert transfer["actor"] == {"sub": "zuzhibu", "role": "org_admin"}
    assert transfer["reason"] == "工作调动"
    assert transfer["data"]["to_branch_id"] == tree["branches"][1]
    assert transfer["event_id"] == f"{tree['members'][0]}:2"
    assert set(json.loads(json.dumps(transfer))) >= {
        "event_id", "type", "occurred_at", "actor", "reason", "data", "source", "position"}


def test_relay_wakes_on_a_commit_not_its_next_poll(clean_databases, rabbit_config):
    """The leader LISTENs on the recorder's channel: an event committed while it
    idles is published at once, not after ``poll_interval`` (here 30 s)."""
    from shared.identity import Caller
    from shared.relay import Relay

    app = OrganizationsApplication(clean_databases["organizations"])
    exchange = Exchange("organizations.events", type="topic", durable=True)
    queue = Queue("test-wake", exchange=exchange, routing_key="#", durable=False)
    stopping = eventlet.event.Event()
    relay = Relay(app, "organizations", service_config(rabbit_config, app.settings), "test",
                  poll_interval=30)
    running = None
    try:
        with Connection(rabbit_config["AMQP_URI"]) as conn:
            queue(conn.default_channel).declare()
            running = eventlet.spawn(relay.run_forever, stopping)
            wait_for(lambda: relay.is_leader, timeout=10, message="the relay leading")
            eventlet.sleep(0.3)  # its first (empty) step done: now it waits
            committed = time.monotonic()
            app.create_organization(Caller("zuzhibu", "org_admin"),
                                    {"name": "学校党委", "kind": "committee"})
            wait_for(lambda: queue(conn.default_channel).get(no_ack=True) is not None,
                     timeout=5, message="the event published before the next poll")
            assert time.monotonic() - committed < 5
    finally:
        stopping.send(True)
        if running is not None:
            running.wait()
        app.close()


def test_relay_killed_after_confirm_before_saving_position(start_service, rpc_as,
                                                           clean_databases):
    orgs = start_service("organizations")
    start_service("notifications")
    admin = rpc_as("org_admin").organizations
    tree = build_tree(admin, branches=2, members_per_branch=3)
    wait_for(lambda: rows(clean_databases["notifications"],
                          "SELECT count(*) AS n FROM dir_members")[0]["n"] == 6)
    crashed = eventlet.event.Event()
    published_before = metrics.EVENTS_PUBLISHED.labels("organizations", "member_transferred")._value.get()

    def crash_once(batch):
        if not crashed.ready():
            crashed.send([e["event_id"] for e in batch])
            raise SystemError("relay killed between broker confirm and saving its position")

    event_store(orgs).relay.after_confirm = crash_once
    for member in tree["members"][:3]:
        admin.transfer_member(member_id=member, to_branch_id=tree["branches"][1],
                              effective_on="2026-09-01")
    lost_batch = crashed.wait(timeout=10)
    assert any(e.endswith(":2") for e in lost_batch)
    orgs.kill()  # the position was never saved
    start_service("organizations")  # a new instance takes over and re-publishes the batch
    ndb = clean_databases["notifications"]
    wait_for(lambda: rows(ndb, "SELECT count(*) AS n FROM dir_member_moves")[0]["n"] >= 3)
    eventlet.sleep(0.5)  # would any second application show up?
    moves = rows(ndb, "SELECT event_id, count(*) AS n FROM dir_member_moves GROUP BY event_id")
    assert len(moves) == 3 and all(m["n"] == 1 for m in moves)
    published = metrics.EVENTS_PUBLISHED.labels("organizations", "member_transferred")._value.get()
    transfers_in_lost_batch = len([e for e in lost_batch if e.endswith(":2")])
    assert published - published_before >= 3 + transfers_in_lost_batch  # some went twice


def test_two_instances_spread_rpc_and_one_relays_at_a_time(start_service, rpc_as,
                                                           clean_databases):
    a = start_service("organizations", INSTANCE="org-a")
    b = start_service("organizations", INSTANCE="org-b")
    start_service("notifications")
    admin = rpc_as("org_admin").organizations
    tree = build_tree(admin, branches=2, members_per_branch=4)
    for _ in range(20):
        admin.get_organization(tree["college"])
    handled = [next(d for d in c.dependencies if type(d).__name__ == "RpcMetrics").handled
               for c in (a, b)]
    assert all(n > 5 for n in handled), handled
    wait_for(lambda: event_store(a).relay.is_leader or event_store(b).relay.is_leader)
    eventlet.sleep(0.3)
    leaders = [c for c in (a, b) if event_store(c).relay.is_leader]
    assert len(leaders) == 1
    leader, follower = leaders[0], ({a, b} - {leaders[0]}).pop()
    leader.kill()
    started = time.time()
    wait_for(lambda: event_store(follower).relay.is_leader, timeout=5,
             message="the other instance takes over the relay")
    takeover = time.time() - started
    # events written after the takeover still reach consumers
    admin.transfer_member(member_id=tree["members"][0], to_branch_id=tree["branches"][1],
                          effective_on="2026-09-01")
    wait_for(lambda: rows(clean_databases["notifications"],
                          "SELECT count(*) AS n FROM dir_member_moves")[0]["n"] == 1)
    assert takeover < 5


def test_two_consumer_instances_apply_exactly_once_in_order(start_service, rpc_as,
                                                            clean_databases):
    start_service("organizations")
    start_service("notifications", INSTANCE="n-a")
    start_service("notifications", INSTANCE="n-b")
    admin = rpc_as("org_admin").organizations
    tree = build_tree(admin, branches=3, members_per_branch=5)
    branches, members = tree["branches"], tree["members"]
    # every member moves three times: the order decides where they end up
    expected = {}
    for round_ in range(3):
        for i, member in enumerate(members):
            target = branches[(i // 5 + round_ + 1) % 3]
            admin.transfer_member(member_id=member, to_branch_id=target,
                                  effective_on=f"2026-0{round_ + 1}-01")
            expected[member] = target
    ndb = clean_databases["notifications"]
    wait_for(lambda: rows(ndb, "SELECT count(*) AS n FROM dir_member_moves")[0]["n"] >= 45,
             timeout=20)
    eventlet.sleep(0.3)
    per_event = rows(ndb, "SELECT event_id, count(*) AS n FROM dir_member_moves GROUP BY event_id")
    assert len(per_event) == 45 and {r["n"] for r in per_event} == {1}
    final = {str(r["id"]): str(r["branch_id"]) for r in rows(ndb, "SELECT * FROM dir_members")}
    assert final == expected
    # each member's moves were applied in version order
    for member in members:
        versions = [int(r["event_id"].split(":")[1]) for r in rows(
            ndb, "SELECT event_id FROM dir_member_moves WHERE member_id = %s ORDER BY id",
            (member,))]
        assert versions == [2, 3, 4]


def test_health_and_metrics_endpoints(start_service, rpc_as):
    container = start_service("organizations")
    admin = rpc_as("org_admin").organizations
    build_tree(admin, branches=1, members_per_branch=2)
    with pytest.raises(Exception):
        admin.get_organization(str(uuid.uuid4()))
    base = f"http://{container.config['WEB_SERVER_ADDRESS']}"
    health = requests.get(f"{base}/health", timeout=5)
    assert health.status_code == 200
    assert health.json()["checks"] == {"database": "ok", "broker": "ok"}
    text = requests.get(f"{base}/metrics", timeout=5).text
    assert 'lianchuang_rpc_calls_total{method="create_organization",outcome="ok",' \
           'service="organizations"}' in text
    assert 'method="get_organization",outcome="NotFound"' in text
    assert 'lianchuang_members{category="teacher",status="full"} 2.0' in text
    assert 'lianchuang_organizations{kind="teacher_branch",level="3",status="active"} 1.0' in text
    assert "lianchuang_relay_lag_events" in text


def test_health_reports_an_unreachable_broker(clean_databases):
    from shared.runtime import check_health

    app = OrganizationsApplication(clean_databases["organizations"])
    try:
        ok, checks = check_health(app, "pyamqp://guest:guest@127.0.0.1:1/")
    finally:
        app.close()
    assert not ok and checks["database"] == "ok" and checks["broker"].startswith("error")


def test_a_burst_on_one_aggregate_is_applied_in_order_by_two_instances(start_service, rpc_as,
                                                                       clean_databases):
    start_service("organizations")
    start_service("notifications", INSTANCE="n-a")
    start_service("notifications", INSTANCE="n-b")
    admin = rpc_as("org_admin").organizations
    tree = build_tree(admin, branches=1, members_per_branch=30)  # the branch: 31 events
    ndb = clean_databases["notifications"]
    started = time.time()
    wait_for(lambda: rows(ndb, "SELECT count(*) AS n FROM dir_members")[0]["n"] == 30
             and rows(ndb, "SELECT last_version FROM inbox_positions WHERE originator_id = %s",
                      (tree["branches"][0],))[0]["last_version"] == 31, timeout=20)
    assert time.time() - started < 20
    assert rows(ndb, "SELECT count(*) AS n FROM inbox_failures")[0]["n"] == 0


def test_a_cipher_secret_in_the_environment_does_not_reach_the_library(clean_databases,
                                                                       monkeypatch):
    """k8s hands the secret in as ORGANIZATIONS_CIPHER_KEY; the library looks up
    "<APP>_CIPHER_KEY" in the process environment before the env it is given,
    and would take the raw secret for its AES key (a start-up failure)."""
    from shared.identity import SYSTEM, Caller
    from shared.secrets import event_cipher_key

    secret = "k8s-secret-for-the-organizations-store-0123456789"
    monkeypatch.setenv("ORGANIZATIONS_CIPHER_KEY", secret)
    settings = clean_databases["organizations"].with_cipher(
        event_cipher_key("organizations", env={"ORGANIZATIONS_CIPHER_KEY": secret}))
    app = OrganizationsApplication(settings)
    try:
        committee = app.create_organization(SYSTEM, {"name": "学校党委", "kind": "committee"})
        auditor = Caller(sub="auditor-1", role="auditor")
        assert app.get_organization(auditor, committee["id"])["name"] == "学校党委"
    finally:
        app.close()
