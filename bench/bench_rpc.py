"""Read and command RPCs against the no-op Nameko RPC measured in the same run
(issue 12: reads ≥ 0.80× the no-op, p99 < 5 ms; commands p99 < 15 ms
sequential, and with 20 concurrent callers over two instances ≥ 0.50× the
no-op under the same concurrency, conflicts only where two callers touch one
aggregate).

Everything in this process (as ``bench.run_all``): a throw-away vhost, two
instances of the no-op service, of organizations and of evaluation (relays
off: publishing is the relay bench's), ``lcbench_*`` databases.

Run: .venv/bin/python -m bench.bench_rpc [--n 300] [--callers 20] [--branches 200]
"""
import warnings

warnings.filterwarnings("ignore", message=r"(?s).*Eventlet is deprecated")
import eventlet  # noqa: E402

eventlet.monkey_patch()

import shared  # noqa: E402,F401

import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import itertools  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import time  # noqa: E402

import psycopg  # noqa: E402
from nameko.containers import ServiceContainer  # noqa: E402
from nameko.exceptions import RemoteError  # noqa: E402
from nameko.standalone.rpc import ClusterRpcProxy  # noqa: E402

from bench.bench_evaluation import entries, seed_directory  # noqa: E402
from bench.common import PG, bench_db  # noqa: E402
from bench.run_all import SECRET, NoopService, Vhost, rpc_rate  # noqa: E402
from shared.config import DatabaseSettings  # noqa: E402
from shared.identity import mint_token  # noqa: E402
from shared.runtime import EventStore  # noqa: E402

READ_TARGET, READ_P99_MS, COMMAND_P99_MS, CONCURRENT_TARGET = 0.80, 5.0, 15.0, 0.50


def store_of(container):
    return next(d for d in container.dependencies if isinstance(d, EventStore)).app


def service_config(base: dict, settings, instance: str) -> dict:
    return {**base, "INSTANCE": instance, "RELAY": {"enabled": False},
            "DATABASE": {"dbname": settings.dbname, **PG, "pool_size": 4, "max_overflow": 20}}


class Report:
    def __init__(self):
        self.rows: list[dict] = []

    def add(self, name, s, baseline=None, target=None):
        base = next((r for r in self.rows if r["name"] == baseline), None)
        ratio = s["rate"] / base["rate"] if base else None
        row = {"name": name, **s, "baseline": baseline, "ratio": ratio, "target": target}
        self.rows.append(row)
        print(f"{name:62} {s['rate']:>8.1f}/s  p50 {s['median_ms']:6.2f}  p99 "
              f"{s['p99_ms']:7.2f} ms  {'' if ratio is None else f'{ratio:.2f}x'}"
              f"{'' if not target else '  ' + target(row)}", flush=True)
        return row


def read_verdict(row):
    ok = row["ratio"] >= READ_TARGET and row["p99_ms"] < READ_P99_MS
    return f"[{'met' if ok else 'missed'}: ≥{READ_TARGET}x, p99<{READ_P99_MS}]"


def command_verdict(row):
    return f"[{'met' if row['p99_ms'] < COMMAND_P99_MS else 'missed'}: p99<{COMMAND_P99_MS}]"


def concurrent_verdict(row):
    return f"[{'met' if row['ratio'] >= CONCURRENT_TARGET else 'missed'}: ≥{CONCURRENT_TARGET}x]"


def run(args, vhost: Vhost, report: Report):
    base = {"AMQP_URI": vhost.uri, "AUTH_SECRET": SECRET, "max_workers": 10,
            "WEB_SERVER_ADDRESS": "127.0.0.1:0"}
    containers = []

    def start(cls, config):
        c = ServiceContainer(cls, config)
        c.start()
        containers.append(c)
        return c

    n, callers = args.n, args.callers
    try:
        # -- baselines: the no-op, sequential and 20 callers over two instances
        start(NoopService, {**base, "INSTANCE": "noop-a"})
        start(NoopService, {**base, "INSTANCE": "noop-b"})
        with ClusterRpcProxy(base) as proxy:
            noop_seq = report.add("no-op Nameko RPC, sequential (baseline)",
                                  rpc_rate(lambda: proxy.noop.ping(), n))
        proxies = [ClusterRpcProxy(base) for _ in range(callers)]
        rpcs = [p.start() for p in proxies]
        noop_conc = report.add(f"no-op Nameko RPC, {callers} callers, 2 instances (baseline)",
                               rpc_rate(lambda k: rpcs[k].noop.ping(), n * 4, callers=callers))
        for p in proxies:
            p.stop()

        admin = mint_token(SECRET, sub="bench", role="org_admin", ttl=24 * 3600)
        # -- organizations: two instances on one database
        from services.organizations.service import OrganizationsService

        orgs_db = bench_db("rpc_organizations")
        orgs = [start(OrganizationsService, service_config(base, orgs_db, f"orgs-{i}"))
                for i in "ab"]
        with ClusterRpcProxy(base, context_data={"auth_token": admin}, timeout=60) as rpc:
            o = rpc.organizations
            committee = o.create_organization(name="学校党委", kind="committee")
            colleges, branches = [], []
            for c in range(5):
                colleges.append(o.create_organization(
                    name=f"第{c + 1}学院党总支", kind="general_branch", parent_id=committee["id"]))
                for b in range(8):
                    branches.append(o.create_organization(
                        name=f"第{c + 1}学院第{b + 1}支部", kind="teacher_branch",
                        parent_id=colleges[-1]["id"]))
            members = [o.register_member(name=f"党员{i}", branch_id=branches[i % 40]["id"],
                                         category="teacher", status="full",
                                         joined_on="2010-07-01") for i in range(200)]
            o.assign_role(org_id=branches[0]["id"], member_id=members[0]["id"], role="secretary")
            reads = {
                "get_path (branch)": lambda: o.get_path(branches[5]["id"]),
                "get_organization (college)": lambda: o.get_organization(colleges[0]["id"]),
                "get_member": lambda: o.get_member(members[3]["id"]),
                "list_members (college, 40 members)": lambda: o.list_members(
                    org_id=colleges[1]["id"]),
                "get_tree (46 organisations)": lambda: o.get_tree(),
                "double_leader_coverage": lambda: o.double_leader_coverage(),
                "list_departments": lambda: o.list_departments(),
            }
            for name, call in reads.items():
                report.add(f"read organizations.{name}", rpc_rate(call, n), noop_seq["name"],
                           read_verdict)
            counter = itertools.count()
            report.add("command organizations.register_member, sequential", rpc_rate(
                lambda: o.register_member(
                    name=f"新党员{next(counter)}", branch_id=branches[next(counter) % 40]["id"],
                    category="student", status="probationary", joined_on="2024-06-01"), n // 2),
                noop_seq["name"], command_verdict)
        concurrent_commands(
            report, base, admin, callers, n, noop_conc["name"],
            "command organizations.register_member",
            lambda rpc, k, j: rpc.organizations.register_member(
                # caller k registers into its own branches only: no two callers
                # touch one branch (its roster), so no conflict is expected
                name=f"并发党员{k}-{j}", branch_id=branches[(k + callers * (j % 2)) % 40]["id"],
                category="student", status="probationary", joined_on="2024-06-01"))

        # -- evaluation: two instances, a directory of ``branches`` branches
        from services.evaluation.service import EvaluationService

        eval_db = bench_db("rpc_evaluation")
        evals = [start(EvaluationService, service_config(base, eval_db, f"eval-{i}"))
                 for i in "ab"]
        tree = seed_directory(store_of(evals[0]), args.branches)
        evaluation_benches(report, base, admin, tree, n, callers, noop_seq["name"],
                           noop_conc["name"])
    finally:
        for c in containers:
            c.kill()


def concurrent_commands(report, base, token, callers, n, baseline, name, call):
    """``call(rpc, k, j)`` from ``callers`` green threads, each with its own proxy;
    Conflicts counted (and the call not retried)."""
    proxies = [ClusterRpcProxy(base, context_data={"auth_token": token}, timeout=60)
               for _ in range(callers)]
    rpcs = [p.start() for p in proxies]
    counters = [itertools.count() for _ in range(callers)]
    conflicts = []

    def one(k):
        try:
            call(rpcs[k], k, next(counters[k]))
        except RemoteError as exc:
            if exc.exc_type != "Conflict":
                raise
            conflicts.append(k)

    s = rpc_rate(one, n, callers=callers)
    for p in proxies:
        p.stop()
    report.add(f"{name}, {callers} callers, 2 instances", s, baseline, concurrent_verdict)
    print(f"  conflicts: {len(conflicts)}", flush=True)
    return s


def evaluation_benches(report, base, admin, tree, n, callers, noop_seq, noop_conc):
    soon = dt.datetime.now(dt.timezone.utc)
    branches = tree["branches"]
    proxy_cm = ClusterRpcProxy(base, context_data={"auth_token": admin}, timeout=60)
    rpc = proxy_cm.start()
    try:
        e = rpc.evaluation
        scheme = e.get_scheme("model_branch")["definition"]
        cycle = e.open_cycle(
            name="bench 2026年度考评", level=3, period="2026",
            deadlines={"self_assessment": (soon + dt.timedelta(days=10)).isoformat(),
                       "review": (soon + dt.timedelta(days=20)).isoformat(),
                       "approval": (soon + dt.timedelta(days=30)).isoformat()})
        rng = random.Random(7)
        # submit_self_assessment, sequential: each branch's secretary once
        todo = iter(branches)

        def submit():
            branch, _ = next(todo)
            proxy_cm._worker_ctx.data["auth_token"] = mint_token(
                SECRET, sub=tree["secretaries"][branch], role="branch_secretary",
                org=str(branch), ttl=3600)
            e.submit_self_assessment(cycle_id=cycle["id"], org_id=str(branch),
                                     **entries(scheme, rng))

        samples = min(len(branches) - 20, n)
        report.add("command evaluation.submit_self_assessment, sequential",
                   rpc_rate(submit, samples), noop_seq, command_verdict)
        proxy_cm._worker_ctx.data["auth_token"] = admin
        i = itertools.count()
        report.add("command evaluation.record_major_problem, sequential", rpc_rate(
            lambda: e.record_major_problem(
                org_id=str(branches[next(i) % len(branches)][0]), description="重大问题 bench",
                reason="bench", evidence=["doc://bench"]), n // 2),
            noop_seq, command_verdict)
        org = str(branches[3][0])
        college = str(branches[3][1])
        reads = {
            "get_rating": lambda: e.get_rating(org),
            "rating_history": lambda: e.rating_history(org),
            f"star_distribution (college, {len(branches) // len(tree['colleges'])} branches)":
                lambda: e.star_distribution(college_id=college),
            "get_cycle": lambda: e.get_cycle(cycle["id"]),
            "list_cycles": lambda: e.list_cycles(),
        }
        for name, call in reads.items():
            report.add(f"read evaluation.{name}", rpc_rate(call, n), noop_seq, read_verdict)
    finally:
        proxy_cm.stop()
    # record_major_problem with 20 callers: caller k on its own branches
    per = max(1, len(branches) // callers)
    concurrent_commands(
        report, base, admin, callers, n, noop_conc, "command evaluation.record_major_problem",
        lambda r, k, j: r.evaluation.record_major_problem(
            org_id=str(branches[k * per + j % per][0]), description="并发重大问题",
            reason="bench", evidence=["doc://bench"]))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=300, help="samples per read")
    parser.add_argument("--callers", type=int, default=20)
    parser.add_argument("--branches", type=int, default=200)
    args = parser.parse_args()
    print(f"bench_rpc {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, load "
          f"{' / '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    vhost = Vhost()
    report = Report()
    started = time.perf_counter()
    try:
        run(args, vhost, report)
    finally:
        vhost.delete()
        with psycopg.connect(DatabaseSettings(dbname="postgres", **PG).conninfo(),
                             autocommit=True) as conn:
            for name in ("rpc_organizations", "rpc_evaluation"):
                conn.execute(f'DROP DATABASE IF EXISTS "lcbench_{name}" WITH (FORCE)')
    print(f"done in {time.perf_counter() - started:.0f} s; load "
          f"{' / '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    return report


if __name__ == "__main__":
    main()
