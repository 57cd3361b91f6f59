"""A whole evaluation cycle for N branches (default 1,000), notices included
(issue 12: under 60 s end to end), beside its baselines measured in the same run.

Two evaluation instances (relays on: one leads) and one notifications instance,
in this process, on a throw-away vhost and ``lcbench_cycle_*`` databases; both
directories hold the same tree (40 colleges × 25 branches, each with a
secretary (书记)). Through RPC, as the portals would, by ``--callers``
concurrent callers:

1. 组织部 opens a level-3 cycle of every branch (one call);
2. every branch secretary submits its self-assessment (自评, N calls);
3. 组织部 reviews every branch (审核, N calls);
4. 组织部 approves college by college (审定, 25 branches a call);
5. the publicity windows (公示, ``--publicity-seconds``) end and 组织部 closes them
   college by college (as the minute timer would, without waiting for it):
   each result becomes final and each branch's rating changes;
6. the clock stops when notifications has applied every event evaluation stored
   (its inbox has reached every aggregate's last version): the notices of the
   cycle (cycle opened, publicity opened, rating changed, rectification
   required) are in the inboxes.

Baselines, same run: the no-op Nameko RPC with the same callers over two
instances (the floor under any of these calls), a raw psycopg INSERT + COMMIT.

Run: .venv/bin/python -m bench.bench_cycle [--branches 1000] [--callers 20]
"""
import warnings

warnings.filterwarnings("ignore", message=r"(?s).*Eventlet is deprecated")
import eventlet  # noqa: E402

eventlet.monkey_patch()

import shared  # noqa: E402,F401

import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import time  # noqa: E402

import psycopg  # noqa: E402
from nameko.containers import ServiceContainer  # noqa: E402
from nameko.standalone.rpc import ClusterRpcProxy  # noqa: E402

from bench.bench_evaluation import BRANCHES_PER_COLLEGE, entries, seed_directory  # noqa: E402
from bench.bench_foundation import raw_insert  # noqa: E402
from bench.bench_rpc import store_of  # noqa: E402
from bench.common import PG, bench_db, summary  # noqa: E402
from bench.run_all import SECRET, NoopService, Vhost, rpc_rate  # noqa: E402
from shared.config import DatabaseSettings  # noqa: E402
from shared.identity import mint_token  # noqa: E402

TARGET_SECONDS = 60.0
DIRECTORY_TABLES = ("dir_orgs", "dir_members", "dir_roles")


def copy_directory(source, target) -> None:
    """The same org tree in another service's directory (the columns both have)."""
    with source.transaction() as src, target.transaction() as dst:
        for table in DIRECTORY_TABLES:
            dst.execute(f"SELECT * FROM {table} LIMIT 0")
            wanted = {c.name for c in dst.description}
            src.execute(f"SELECT * FROM {table}")
            rows = src.fetchall()
            if not rows:
                continue
            columns = [c for c in rows[0] if c in wanted]
            dst.executemany(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
                f"({', '.join(['%s'] * len(columns))}) ON CONFLICT DO NOTHING",
                [[row[c] for c in columns] for row in rows])


def in_parallel(callers: int, work: list, call) -> list[float]:
    """``call(proxy, item)`` for every item, by ``callers`` green threads with a
    proxy each; the samples (seconds per call)."""
    queue = list(reversed(work))
    samples: list[float] = []
    errors: list[BaseException] = []

    def caller(proxy_cm):
        rpc = proxy_cm.start()
        try:
            while queue and not errors:
                item = queue.pop()
                started = time.perf_counter()
                try:
                    call(proxy_cm, rpc, item)
                except BaseException as exc:  # noqa: B036 - reported below
                    errors.append(exc)
                    return
                samples.append(time.perf_counter() - started)
        finally:
            proxy_cm.stop()

    pool = eventlet.GreenPool(callers)
    for _ in range(callers):
        pool.spawn(caller, ClusterRpcProxy(CONFIG["rpc"], context_data={}, timeout=120))
    pool.waitall()
    if errors:
        raise errors[0]
    return samples


CONFIG: dict = {}


def as_caller(proxy_cm, role, sub, org=None):
    proxy_cm._worker_ctx.data["auth_token"] = mint_token(SECRET, sub=sub, role=role, org=org,
                                                         ttl=3600)


def applied_everything(eval_app, notes_app) -> tuple[int, int]:
    """(events evaluation stored, events notifications' inbox has applied)."""
    stored = eval_app.query_one(
        f"SELECT count(*) AS n FROM {eval_app.recorder.events_table_name}")["n"]
    applied = notes_app.query_one(
        "SELECT coalesce(sum(last_version), 0) AS n FROM inbox_positions "
        "WHERE consumer NOT LIKE '%%org_directory'")["n"]
    return int(stored), int(applied)


def run(args, vhost: Vhost) -> dict:
    base = {"AMQP_URI": vhost.uri, "AUTH_SECRET": SECRET, "max_workers": 10,
            "WEB_SERVER_ADDRESS": "127.0.0.1:0"}
    CONFIG["rpc"] = {"AMQP_URI": vhost.uri}
    containers = []

    def start(cls, config):
        c = ServiceContainer(cls, config)
        c.start()
        containers.append(c)
        return c

    out: dict = {}
    try:
        eval_db, notes_db = bench_db("cycle_evaluation"), bench_db("cycle_notifications")
        raw = summary(raw_insert(eval_db, 300))
        out["raw psycopg INSERT + COMMIT (baseline)"] = f"{1000 / raw['median_ms']:,.0f}/s"
        start(NoopService, {**base, "INSTANCE": "noop-a"})
        start(NoopService, {**base, "INSTANCE": "noop-b"})
        proxies = [ClusterRpcProxy(base) for _ in range(args.callers)]
        rpcs = [p.start() for p in proxies]
        noop = rpc_rate(lambda k: rpcs[k].noop.ping(), args.callers * 20, callers=args.callers)
        for p in proxies:
            p.stop()
        out[f"no-op Nameko RPC, {args.callers} callers, 2 instances (baseline)"] = \
            f"{noop['rate']:,.0f} calls/s"

        from services.evaluation.service import EvaluationService
        from services.notifications.service import NotificationsService

        def db(settings):
            return {"dbname": settings.dbname, **PG, "pool_size": 4, "max_overflow": 20}

        # notifications first: its durable queue exists before evaluation publishes
        notes = start(NotificationsService, {**base, "INSTANCE": "notes-a",
                                             "DATABASE": db(notes_db),
                                             "RELAY": {"enabled": False}})
        evals = [start(EvaluationService, {**base, "INSTANCE": f"eval-{i}",
                                           "DATABASE": db(eval_db)}) for i in "ab"]
        eval_app, notes_app = store_of(evals[0]), store_of(notes)
        tree = seed_directory(eval_app, args.branches)
        copy_directory(eval_app, notes_app)
        branches, colleges = tree["branches"], tree["colleges"]
        secretaries = tree["secretaries"]
        admin_token = mint_token(SECRET, sub="bench-admin", role="org_admin", ttl=3600)
        with ClusterRpcProxy(CONFIG["rpc"], context_data={"auth_token": admin_token},
                             timeout=120) as rpc:
            scheme = rpc.evaluation.get_scheme("model_branch")["definition"]
        rng = random.Random(7)
        payloads = {b: (entries(scheme, rng), entries(scheme, rng)) for b, _ in branches}
        phases: dict = {}
        soon = dt.datetime.now(dt.timezone.utc)
        print(f"cycle bench: {len(branches)} branches, {args.callers} callers; load "
              f"{' / '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)

        started = time.perf_counter()
        cycle = {}

        def open_cycle(proxy_cm, rpc, _):
            as_caller(proxy_cm, "org_admin", "bench-admin")
            cycle.update(rpc.evaluation.open_cycle(
                name="bench 2026年度考评", level=3, period="2026",
                publicity_days=args.publicity_seconds / 86400,
                deadlines={"self_assessment": (soon + dt.timedelta(days=10)).isoformat(),
                           "review": (soon + dt.timedelta(days=20)).isoformat(),
                           "approval": (soon + dt.timedelta(days=30)).isoformat()}))

        def phase(name, callers, work, call):
            t = time.perf_counter()
            samples = in_parallel(callers, work, call)
            elapsed = time.perf_counter() - t
            phases[name] = {**summary(samples), "calls": len(samples), "seconds": elapsed,
                            "rate": len(samples) / elapsed}
            print(f"  {name:44} {len(samples):>5} calls in {elapsed:6.1f} s "
                  f"({len(samples) / elapsed:6.1f}/s, p50 {phases[name]['median_ms']:.0f} ms, "
                  f"p99 {phases[name]['p99_ms']:.0f} ms)", flush=True)

        phase("open_cycle (组织部)", 1, [None], open_cycle)

        def submit(proxy_cm, rpc, item):
            branch, _ = item
            as_caller(proxy_cm, "branch_secretary", secretaries[branch], str(branch))
            rpc.evaluation.submit_self_assessment(cycle_id=cycle["id"], org_id=str(branch),
                                                  **payloads[branch][0])

        phase("submit_self_assessment (书记, 自评)", args.callers, branches, submit)

        def review(proxy_cm, rpc, item):
            branch, _ = item
            as_caller(proxy_cm, "org_admin", "bench-admin")
            rpc.evaluation.submit_review(cycle_id=cycle["id"], org_id=str(branch),
                                         **payloads[branch][1])

        phase("submit_review (组织部, 审核)", args.callers, branches, review)
        by_college = [[str(b) for b, c in branches if c == college] for college in colleges]

        def approve(proxy_cm, rpc, ids):
            as_caller(proxy_cm, "org_admin", "bench-admin")
            rpc.evaluation.approve(cycle_id=cycle["id"], org_ids=ids)

        phase(f"approve (审定, {BRANCHES_PER_COLLEGE} a call)", min(args.callers, 4),
              by_college, approve)

        def close(proxy_cm, rpc, ids):
            as_caller(proxy_cm, "org_admin", "bench-admin")
            while True:
                try:
                    return rpc.evaluation.close_publicity(cycle_id=cycle["id"], org_ids=ids,
                                                          reason="公示期满")
                except Exception as exc:  # a window not over yet: wait for it
                    if "runs until" not in str(exc):
                        raise
                    eventlet.sleep(0.2)

        phase("close_publicity (公示期满, per college)", min(args.callers, 4), by_college,
              close)
        commands_done = time.perf_counter()
        stored = applied = 0
        while time.perf_counter() - commands_done < 600:
            stored, applied = applied_everything(eval_app, notes_app)
            if applied >= stored:
                break
            eventlet.sleep(0.1)
        finished = time.perf_counter()
        notices = notes_app.query("SELECT event_type, count(*) AS n FROM notices "
                                  "GROUP BY 1 ORDER BY 1")
        total = finished - started
        out["phases"] = phases
        out["publicity window (s)"] = args.publicity_seconds
        out["events stored / applied by notifications"] = f"{stored:,} / {applied:,}"
        out["notices by event"] = {r["event_type"]: r["n"] for r in notices}
        out["notices after the last command (s)"] = round(finished - commands_done, 1)
        out["end to end (s)"] = round(total, 1)
        out["target"] = (f"{'met' if total < TARGET_SECONDS else 'missed'}: "
                         f"< {TARGET_SECONDS:.0f} s")
        commands = sum(p["calls"] for p in phases.values())
        out["commands/s over the cycle"] = f"{commands / (commands_done - started):,.1f}"
        out["× no-op under the same callers"] = \
            f"{commands / (commands_done - started) / noop['rate']:.2f}"
    finally:
        for c in containers:
            c.kill()
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--branches", type=int, default=1000)
    parser.add_argument("--callers", type=int, default=20)
    parser.add_argument("--publicity-seconds", type=float, default=2.0)
    args = parser.parse_args()
    vhost = Vhost()
    try:
        out = run(args, vhost)
    finally:
        vhost.delete()
        with psycopg.connect(DatabaseSettings(dbname="postgres", **PG).conninfo(),
                             autocommit=True) as conn:
            for name in ("cycle_evaluation", "cycle_notifications"):
                conn.execute(f'DROP DATABASE IF EXISTS "lcbench_{name}" WITH (FORCE)')
    for key, value in out.items():
        if key != "phases":
            print(f"{key}: {value}")
    print(f"load at the end: {' / '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return out


if __name__ == "__main__":
    main()
