"""Benchmark of the notifications service (issue 4).

A real notifications container (nameko, RabbitMQ, PostgreSQL) in a throw-away
RabbitMQ vhost and database; an org tree of 20 colleges × 25 branches, each with
a secretary, plus 5 org_admin contacts. Evaluation-shaped events are published
to ``evaluation.events`` as its relay would:

1. burst: 10,000 ``rating_changed`` events (20 versions for each of 500 branches),
   published as fast as possible — throughput of event → inbox notice;
2. paced: 1,000 ``rating_changed`` events at a steady rate below capacity —
   latency from the event's commit (its ``occurred_at``, stamped when published)
   to the notice's insertion in the inbox;
3. fan-out: 1,000 ``rating_fell_to_three_or_below`` events, each to the branch
   secretary, the college secretary and 5 org_admin contacts (7 notices).

Beside the foundation's baselines (``bench.bench_foundation``): a raw psycopg
``INSERT`` + ``COMMIT`` (the floor under any write) and a raw kombu request/reply
round trip (the floor under any hop over RabbitMQ; commit → inbox is one hop plus
one transaction). Usage: ``.venv/bin/python -m bench.bench_notifications [--events N]``.
"""
import warnings

warnings.filterwarnings("ignore", message=r"(?s).*Eventlet is deprecated")

import eventlet  # noqa: E402

eventlet.monkey_patch()

import shared  # noqa: E402,F401

import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402

import psycopg  # noqa: E402
import requests  # noqa: E402
from kombu import Connection  # noqa: E402
from kombu.pools import producers  # noqa: E402
from nameko.containers import ServiceContainer  # noqa: E402
from nameko.standalone.events import get_event_exchange  # noqa: E402

from bench.bench_foundation import kombu_round_trip, raw_insert  # noqa: E402
from bench.common import bench_db, print_table, summary  # noqa: E402
from shared.secrets import event_signing_key  # noqa: E402
from shared.signing import sign_envelope  # noqa: E402
from shared.config import DatabaseSettings  # noqa: E402

MANAGEMENT = "http://127.0.0.1:15672/api"
AUTH = ("guest", "guest")
COLLEGES, BRANCHES_PER_COLLEGE, ORG_ADMINS = 20, 25, 5


def seed_directory(settings: DatabaseSettings) -> dict:
    """The org tree as the directory holds it (the bench measures fan-out, not the
    directory's own consumption, which the organizations e2e tests cover)."""
    now = dt.datetime.now(dt.timezone.utc)
    committee = uuid.uuid4()
    branches, colleges = [], []
    with psycopg.connect(settings.conninfo()) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO dir_orgs VALUES (%s,'学校党委','committee',1,NULL,NULL,'active',%s)",
                    (committee, now))
        for c in range(COLLEGES):
            college = uuid.uuid4()
            colleges.append(college)
            cur.execute("INSERT INTO dir_orgs VALUES (%s,%s,'general_branch',2,%s,NULL,'active',%s)",
                        (college, f"第{c + 1}学院党总支", committee, now))
            for b in range(BRANCHES_PER_COLLEGE):
                branch = uuid.uuid4()
                branches.append((branch, college, f"第{c + 1}学院第{b + 1}党支部"))
                cur.execute("INSERT INTO dir_orgs VALUES (%s,%s,'teacher_branch',3,%s,NULL,"
                            "'active',%s)", (branch, branches[-1][2], college, now))
                sec = uuid.uuid4()
                cur.execute("INSERT INTO dir_members VALUES (%s,%s,%s,'teacher','full',false,true,%s)",
                            (sec, f"书记{c}-{b}", branch, now))
                cur.execute("INSERT INTO dir_roles VALUES (%s,%s,'secretary')", (branch, sec))
                if b == 0:  # the first branch's secretary also leads the college
                    cur.execute("INSERT INTO dir_roles VALUES (%s,%s,'secretary')", (college, sec))
        for i in range(ORG_ADMINS):
            cur.execute("INSERT INTO contacts (recipient_id, contact_id, name, kind, groups, "
                        "active, updated_at, version) VALUES (%s,%s,%s,'staff',%s,true,%s,1)",
                        (f"zzb{i}", uuid.uuid4(), f"组织部{i}", ["org_admin"], now))
        conn.commit()
    return {"branches": branches}


class Source:
    def __init__(self, amqp_uri: str):
        self.conn = Connection(amqp_uri)
        self.exchange = get_event_exchange("evaluation", {"AMQP_URI": amqp_uri})
        self.versions: dict = {}
        self.position = 0
        self.key = event_signing_key("evaluation")  # as evaluation's relay signs

    def publish(self, event_type: str, originator, data: dict) -> None:
        version = self.versions.get(originator, 0) + 1
        self.versions[originator] = version
        self.position += 1
        envelope = {"envelope_version": 1, "event_id": f"{originator}:{version}",
                    "type": event_type, "source": "evaluation", "aggregate_type": "Rating",
                    "originator_id": str(originator), "originator_version": version,
                    "position": self.position,
                    "occurred_at": dt.datetime.now(dt.timezone.utc).isoformat(),
                    "actor": {"sub": "bench", "role": "org_admin"}, "reason": None,
                    "evidence": None, "data": data}
        envelope = sign_envelope(envelope, self.key)
        with producers[self.conn].acquire(block=True) as producer:
            producer.publish(envelope, exchange=self.exchange, routing_key=event_type,
                             serializer="json", declare=[self.exchange], retry=True)


def wait_notices(settings, event_type, expected, timeout=600):
    deadline = time.time() + timeout
    with psycopg.connect(settings.conninfo(), autocommit=True) as conn:
        while time.time() < deadline:
            n = conn.execute("SELECT count(*) FROM notices WHERE event_type = %s",
                             (event_type,)).fetchone()[0]
            if n >= expected:
                return
            eventlet.sleep(0.1)
    raise SystemExit(f"timed out: {event_type} notices {n}/{expected}")


def latencies(settings, event_type, since):
    with psycopg.connect(settings.conninfo(), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT extract(epoch FROM created_at - occurred_at), created_at FROM notices "
            "WHERE event_type = %s AND occurred_at >= %s", (event_type, since)).fetchall()
    return [float(r[0]) for r in rows], max(r[1] for r in rows)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--paced", type=int, default=1_000)
    parser.add_argument("--rate", type=float, default=200.0, help="paced events per second")
    parser.add_argument("--fanout", type=int, default=1_000)
    args = parser.parse_args()

    run = f"lcbench_{uuid.uuid4().hex[:8]}"
    settings = bench_db("notifications")
    requests.put(f"{MANAGEMENT}/vhosts/{run}", auth=AUTH).raise_for_status()
    requests.put(f"{MANAGEMENT}/permissions/{run}/guest", auth=AUTH,
                 json={"configure": ".*", "write": ".*", "read": ".*"}).raise_for_status()
    amqp_uri = f"pyamqp://guest:guest@127.0.0.1:5672/{run}"
    config = {"AMQP_URI": amqp_uri, "AUTH_SECRET": "bench-secret-0123456789-0123456789-abcdef",
              "WEB_SERVER_ADDRESS": "127.0.0.1:0",
              "DATABASE": {"dbname": settings.dbname, "pool_size": 4, "max_overflow": 8},
              "RELAY": {"poll_interval": 0.2}, "max_workers": 10,
              "NOTIFICATIONS": {"webhook": {"secret": "bench"},
                                "deadline": {"check_interval": 3600}}}
    from services.notifications.service import NotificationsService

    container = ServiceContainer(NotificationsService, config)
    container.start()
    try:
        raw = summary(raw_insert(settings, 500))
        kombu = summary(kombu_round_trip(500))
        world = seed_directory(settings)
        source = Source(amqp_uri)
        branches = world["branches"]

        def rating(i, before, after):
            branch, _, name = branches[i % len(branches)]
            return branch, {"org_id": str(branch), "org_name": name, "stars_before": before,
                            "stars_after": after, "score": 70 + i % 30, "cause": "年度考评",
                            "scheme_version": 1, "cycle_id": "bench"}

        # 1. burst
        started = dt.datetime.now(dt.timezone.utc)
        t0 = time.perf_counter()
        for i in range(args.events):
            source.publish("rating_changed", *rating(i, 4, 3))
        published = time.perf_counter() - t0
        wait_notices(settings, "rating_changed", args.events)
        burst, last = latencies(settings, "rating_changed", started)
        elapsed = (last - started).total_seconds()

        # 2. paced
        paced_start = dt.datetime.now(dt.timezone.utc)
        for i in range(args.paced):
            t = time.perf_counter()
            source.publish("rating_changed", *rating(i, 3, 4))
            eventlet.sleep(max(0.0, 1 / args.rate - (time.perf_counter() - t)))
        wait_notices(settings, "rating_changed", args.events + args.paced)
        paced, _ = latencies(settings, "rating_changed", paced_start)

        # 3. fan-out to 7 recipients per event
        fan_start = dt.datetime.now(dt.timezone.utc)
        for i in range(args.fanout):
            branch, _, name = branches[i % len(branches)]
            source.publish("rating_fell_to_three_or_below", uuid.uuid4(), {
                "org_id": str(branch), "org_name": name, "stars": 3, "previous_stars": 4,
                "rectification_due": "2027-01-31"})
        per_event = 2 + ORG_ADMINS  # branch secretary, college secretary, org_admin contacts
        wait_notices(settings, "rating_fell_to_three_or_below", args.fanout * per_event - (
            args.fanout // BRANCHES_PER_COLLEGE))  # a college's first branch: one secretary twice
        fan, fan_last = latencies(settings, "rating_fell_to_three_or_below", fan_start)
        fan_elapsed = (fan_last - fan_start).total_seconds()

        print(f"notifications bench ({dt.datetime.now():%Y-%m-%d %H:%M}, "
              f"{len(branches)} branches, max_workers=10)")
        print(f"burst: {args.events} rating_changed published in {published:.1f} s; all in "
              f"inboxes after {elapsed:.1f} s → {args.events / elapsed:.0f} events/s")
        print(f"fan-out: {args.fanout} rating_fell events → {len(fan)} notices in "
              f"{fan_elapsed:.1f} s → {len(fan) / fan_elapsed:.0f} notices/s")
        print_table([
            ("raw psycopg INSERT + COMMIT (baseline)", raw, None),
            ("raw kombu request/reply round trip (baseline)", kombu, None),
            (f"paced {args.rate:.0f}/s: commit → inbox", summary(paced), kombu),
            (f"burst {args.events}: commit → inbox (with queueing)", summary(burst), kombu),
            ("fan-out ×7: commit → inbox (with queueing)", summary(fan), kombu),
        ])
        p95 = summary(paced)["p95_ms"]
        print(f"paced commit → inbox p95 {p95:.1f} ms (target < 500 ms: "
              f"{'met' if p95 < 500 else 'NOT met'})")
    finally:
        container.stop()
        requests.delete(f"{MANAGEMENT}/vhosts/{run}", auth=AUTH)
        with psycopg.connect(settings.conninfo("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{settings.dbname}" WITH (FORCE)')


if __name__ == "__main__":
    main()
