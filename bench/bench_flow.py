"""Event flow benchmark (issue 12): the relay, and commit → another service's inbox.

Everything in a throw-away RabbitMQ vhost and ``lcbench_*`` databases, beside raw
baselines measured in the same run:

* raw kombu publish with confirms to a durable queue: one wait per message
  (``Producer.publish`` with ``confirm_publish``), and 1,000 publishes then one
  wait for all their confirms (plain kombu/py-amqp ``basic_publish``);
* raw psycopg ``INSERT`` + ``COMMIT`` (the floor under one transaction per event).

1. relay: ``--events`` events in the organizations store (``member_double_leader_set``,
   appended in bulk), decrypted, enveloped, signed, published to a durable queue
   with confirms and their position saved, by ``shared.relay.Relay``;
2. event flow: a burst of ``--burst`` events committed in organizations (appended
   in saves of 1,000) → its relay (in this process, the service's poll interval)
   → a real notifications container's org directory (``@consumes``, ``Inbox``),
   in a process of its own.
   Rate = events ÷ (last applied − first commit); latency of the k-th event = the
   moment the consumer's applied count (``sum(last_version)`` of its inbox
   positions, polled every 10 ms) reached it − its commit time. p50/p95/p99.

Usage: ``.venv/bin/python -m bench.bench_flow [--events N] [--burst N] [--json]``.
"""
import warnings

warnings.filterwarnings("ignore", message=r"(?s).*Eventlet is deprecated")
import eventlet  # noqa: E402

eventlet.monkey_patch()

import shared  # noqa: E402,F401

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402

import psycopg  # noqa: E402
import requests  # noqa: E402
from kombu import Connection, Exchange, Producer, Queue  # noqa: E402
from nameko.containers import ServiceContainer  # noqa: E402
from nameko.standalone.events import get_event_exchange  # noqa: E402

from bench.bench_foundation import raw_insert  # noqa: E402
from bench.common import PG, bench_db, summary  # noqa: E402

MANAGEMENT = "http://127.0.0.1:15672/api"
AUTH = ("guest", "guest")
SECRET = "bench-secret-0123456789-0123456789-abcdef"
BODY = {"envelope_version": 1, "type": "member_double_leader_set",
        "data": {"double_leader": True, "pad": "y" * 600}}  # about a relayed envelope's size


class Vhost:
    def __init__(self):
        self.name = f"lcbench_{uuid.uuid4().hex[:8]}"
        requests.put(f"{MANAGEMENT}/vhosts/{self.name}", auth=AUTH).raise_for_status()
        requests.put(f"{MANAGEMENT}/permissions/{self.name}/guest", auth=AUTH,
                     json={"configure": ".*", "write": ".*", "read": ".*"}).raise_for_status()
        self.uri = f"pyamqp://guest:guest@127.0.0.1:5672/{self.name}"

    def delete(self):
        requests.delete(f"{MANAGEMENT}/vhosts/{self.name}", auth=AUTH)


# -- baselines -------------------------------------------------------------------
def kombu_confirm_each(uri: str, n: int) -> float:
    """Messages/s: kombu ``Producer.publish`` with ``confirm_publish`` (one wait each)."""
    exchange = Exchange("bench-raw", type="topic", durable=True)
    queue = Queue("bench-raw-each", exchange, routing_key="#", durable=True)
    with Connection(uri, transport_options={"confirm_publish": True}) as conn:
        producer = Producer(conn.channel(), exchange=exchange, serializer="json")
        queue(producer.channel).declare()
        started = time.perf_counter()
        for _ in range(n):
            producer.publish(BODY, routing_key="raw", delivery_mode=2)
        elapsed = time.perf_counter() - started
        queue(producer.channel).purge()
    return n / elapsed


def kombu_confirm_batched(uri: str, n: int, batch: int = 1000) -> float:
    """Messages/s: plain kombu publishes, ``batch`` at a time, then one wait for
    all their confirms (the channel in confirm mode, acks counted)."""
    exchange = Exchange("bench-raw", type="topic", durable=True)
    queue = Queue("bench-raw-batched", exchange, routing_key="#", durable=True)
    acked = [0]
    with Connection(uri) as conn:
        channel = conn.channel()
        channel.confirm_select()
        channel.events["basic_ack"].add(lambda tag, multiple: acked.__setitem__(
            0, max(acked[0], tag)))
        producer = Producer(channel, exchange=exchange, serializer="json")
        queue(channel).declare()
        sent = 0
        started = time.perf_counter()
        while sent < n:
            for _ in range(min(batch, n - sent)):
                producer.publish(BODY, routing_key="raw", delivery_mode=2)
                sent += 1
            while acked[0] < sent:
                conn.drain_events(timeout=30)
        elapsed = time.perf_counter() - started
        queue(channel).purge()
    return n / elapsed


# -- the relay -----------------------------------------------------------------------
def organizations_app(settings):
    from services.organizations.application import OrganizationsApplication
    from shared.secrets import event_cipher_key

    return OrganizationsApplication(settings.with_cipher(event_cipher_key("organizations", {})))


def append_burst(app, members: list, n: int) -> list[float]:
    """``n`` double-leader events appended in saves of 1,000; each save's commit time."""
    from shared.identity import Caller

    actor = Caller("bench", "org_admin").as_actor()
    held = [app.repository.get(uuid.UUID(m)) for m in members]
    commits = []
    for k in range(0, n, 1000):
        for j in range(min(1000, n - k)):
            member = held[(k + j) % len(held)]
            member.set_double_leader(not member.double_leader, actor)
        app.save(*held)
        commits += [time.time()] * min(1000, n - k)
    return commits


def seed(app, members: int) -> list[str]:
    from bench.common import small_tree
    from shared.identity import Caller

    admin = Caller("bench", "org_admin")
    _, _, branch = small_tree(app, admin)
    return [app.register_member(admin, {
        "name": f"党员{i}", "branch_id": branch["id"], "category": "teacher",
        "status": "full", "joined_on": "2010-07-01"})["id"] for i in range(members)]


def relay_rate(vhost, events: int) -> tuple[float, int]:
    from shared.relay import Relay

    settings = bench_db("flow_relay")
    app = organizations_app(settings)
    try:
        append_burst(app, seed(app, 50), events)
        total = app.recorder.max_notification_id()
        with Connection(vhost.uri) as conn:
            exchange = get_event_exchange("organizations", {"AMQP_URI": vhost.uri})
            Queue("bench-evt-organizations", exchange, routing_key="#", durable=True)(
                conn.channel()).declare()
        relay = Relay(app, "organizations", {"AMQP_URI": vhost.uri}, "bench")
        started = time.perf_counter()
        while relay.step():
            pass
        elapsed = time.perf_counter() - started
        assert relay.position() == total, "the relay saved every position"
        relay.release()
        return total / elapsed, total
    finally:
        app.close()
        drop(settings)


# -- the event flow -------------------------------------------------------------------
def event_flow(vhost, burst: int) -> dict:
    from shared.relay import Relay

    org_settings = bench_db("flow_organizations")
    notes_settings = bench_db("flow_notifications")
    app = organizations_app(org_settings)
    config = {"AMQP_URI": vhost.uri, "AUTH_SECRET": SECRET, "WEB_SERVER_ADDRESS": "127.0.0.1:0",
              "DATABASE": {"dbname": notes_settings.dbname, **PG, "pool_size": 4,
                           "max_overflow": 8},
              "RELAY": {"enabled": False}, "max_workers": 10,
              "NOTIFICATIONS": {"deadline": {"check_interval": 3600}}}
    # The consumer in a process of its own, as it runs (not sharing this
    # process's interpreter with the committer and the relay).
    consumer_process = subprocess.Popen(
        [sys.executable, "-m", "bench.bench_flow", "--serve-notifications", json.dumps(config)],
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    wait_until(lambda: queue_exists(vhost, "evt-organizations-all--notifications."
                                           "on_organizations_event"), 120)
    stopping = eventlet.event.Event()
    relay = Relay(app, "organizations", {"AMQP_URI": vhost.uri}, "bench")
    relaying = eventlet.spawn(relay.run_forever, stopping)
    consumer = "notifications.org_directory"
    try:
        with psycopg.connect(notes_settings.conninfo(), autocommit=True) as conn:
            def applied() -> int:
                return conn.execute("SELECT coalesce(sum(last_version), 0) FROM "
                                    "inbox_positions WHERE consumer = %s",
                                    (consumer,)).fetchone()[0]

            members = seed(app, 50)
            published = app.recorder.max_notification_id()
            wait_until(lambda: relay.position() >= published, 120)
            before = wait_steady(applied)
            # The burst: commits in the background while the consumer's progress is polled.
            commits: list[float] = []
            committer = eventlet.spawn(lambda: commits.extend(append_burst(app, members, burst)))
            progress: list[tuple[float, int]] = []
            deadline = time.time() + 1800
            while time.time() < deadline:
                done = applied() - before
                progress.append((time.time(), done))
                if done >= burst:
                    break
                eventlet.sleep(0.01)
            committer.wait()
            if progress[-1][1] < burst:
                raise SystemExit(f"timed out: {progress[-1][1]}/{burst} applied")
        latencies, k = [], 0
        for at, done in progress:
            while k < min(done, burst):
                latencies.append(at - commits[k])
                k += 1
        elapsed = progress[-1][0] - commits[0]
        return {"rate": burst / elapsed, "elapsed": elapsed, **summary(latencies)}
    finally:
        stopping.send(True)
        relaying.wait()
        consumer_process.terminate()
        consumer_process.wait(timeout=60)
        app.close()
        drop(org_settings)
        drop(notes_settings)


def queue_exists(vhost, name: str) -> bool:
    return requests.get(f"{MANAGEMENT}/queues/{vhost.name}/{name}", auth=AUTH).status_code == 200


def serve_notifications(config: dict) -> None:
    """A notifications container until SIGTERM (the flow's consumer)."""
    import signal

    from services.notifications.service import NotificationsService

    container = ServiceContainer(NotificationsService, config)
    container.start()
    stopped = eventlet.event.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.send(True))
    profile = None
    if os.environ.get("BENCH_FLOW_PROFILE"):  # a cProfile of the consumer, to that file
        import cProfile
        profile = cProfile.Profile()
        profile.enable()
    while not stopped.ready():
        eventlet.sleep(0.2)
    if profile is not None:
        profile.disable()
        profile.dump_stats(os.environ["BENCH_FLOW_PROFILE"])
    container.stop()


def wait_until(predicate, timeout: float) -> None:
    deadline = time.time() + timeout
    while not predicate():
        if time.time() > deadline:
            raise SystemExit("timed out waiting for the seed events")
        eventlet.sleep(0.05)


def wait_steady(read) -> int:
    """The value once it stops moving for half a second (the seed events applied)."""
    last, since = read(), time.time()
    while time.time() - since < 0.5:
        eventlet.sleep(0.1)
        now = read()
        if now != last:
            last, since = now, time.time()
    return last


def drop(settings) -> None:
    with psycopg.connect(settings.conninfo("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{settings.dbname}" WITH (FORCE)')


def run(events: int, burst: int) -> dict:
    vhost = Vhost()
    raw_settings = bench_db("flow_raw")
    try:
        insert = summary(raw_insert(raw_settings, 500))
        out = {"load": os.getloadavg(),
               "raw_insert_commit_per_s": 1000 / insert["median_ms"],
               "raw_insert_commit_p95_ms": insert["p95_ms"],
               "kombu_confirm_each_per_s": kombu_confirm_each(vhost.uri, 2000),
               "kombu_confirm_batched_per_s": kombu_confirm_batched(vhost.uri, events)}
        out["relay_per_s"], out["relay_events"] = relay_rate(vhost, events)
        flow = event_flow(vhost, burst)
        out.update({"flow_per_s": flow["rate"], "flow_burst": burst,
                    "flow_p50_ms": flow["median_ms"], "flow_p95_ms": flow["p95_ms"],
                    "flow_p99_ms": flow["p99_ms"]})
        return out
    finally:
        vhost.delete()
        drop(raw_settings)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20_000, help="events the relay publishes")
    parser.add_argument("--burst", type=int, default=10_000, help="events of the flow burst")
    parser.add_argument("--json", action="store_true", help="one JSON line (for run_all)")
    parser.add_argument("--serve-notifications", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_notifications:
        return serve_notifications(json.loads(args.serve_notifications))
    out = run(args.events, args.burst)
    if args.json:
        print(json.dumps(out))
        return
    print(f"event flow bench, load {' / '.join(f'{x:.2f}' for x in out['load'])} at start")
    print(f"raw psycopg INSERT + COMMIT                 {out['raw_insert_commit_per_s']:>10,.0f} /s")
    print(f"raw kombu publish, confirm each             {out['kombu_confirm_each_per_s']:>10,.0f} msg/s")
    print(f"raw kombu publish, confirms per 1,000       {out['kombu_confirm_batched_per_s']:>10,.0f} msg/s")
    print(f"relay ({out['relay_events']:,} events, confirmed, saved)  {out['relay_per_s']:>10,.0f} "
          f"events/s = {out['relay_per_s'] / out['kombu_confirm_each_per_s']:.2f}x confirm each, "
          f"{out['relay_per_s'] / out['kombu_confirm_batched_per_s']:.2f}x confirms per 1,000 "
          f"(target 10,000/s)")
    print(f"event flow, burst of {args.burst:,}: {out['flow_per_s']:,.0f} events/s "
          f"= {out['flow_per_s'] / out['raw_insert_commit_per_s']:.2f}x raw INSERT+COMMIT "
          f"(target 5,000/s); commit → applied p50 {out['flow_p50_ms']:,.0f} ms, "
          f"p95 {out['flow_p95_ms']:,.0f} ms, p99 {out['flow_p99_ms']:,.0f} ms (target p95 < 500)")


if __name__ == "__main__":
    main()
