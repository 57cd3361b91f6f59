"""The creation programme's (三级联创) school-wide dashboard through RPC, beside a
no-op RPC in the same run (issue 9).

A university of 50 colleges, 1,000 branches and 30,000 members (evaluation's
directory copy); every college and branch a candidate at the school tier at some
stage, a fifth of those that passed climbing to the provincial tier, 60 brands,
two milestones per task-book measure (a third overdue and recorded by the timer),
and three finished branch cycles (every branch rated in each: the star trend).
Measured: ``programme_dashboard()`` (org_admin, the whole school) repeated with
nothing changing (the answer is reused) and with an event appended before each
call (computed afresh), ``programme_dashboard(college_id)`` (one college),
``programme_progress()``, ``star_trend()`` and ``no_op()`` on a one-method nameko
service on the same broker — the RPC floor.

Run: .venv/bin/python -m bench.bench_programme [--colleges 50] [--branches 1000] [--calls 300]
(``--reuse``: measure again on the database the last run seeded)
"""
import warnings

warnings.filterwarnings("ignore", message=r"(?s).*Eventlet is deprecated")
import eventlet  # noqa: E402

eventlet.monkey_patch()

import shared  # noqa: E402,F401

import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402

import requests  # noqa: E402
from nameko.containers import ServiceContainer  # noqa: E402
from nameko.rpc import rpc  # noqa: E402
from nameko.standalone.rpc import ClusterRpcProxy  # noqa: E402

from bench.common import PG, bench_db, print_table, summary, timed  # noqa: E402
from shared.config import DatabaseSettings  # noqa: E402
from services.evaluation.application import EvaluationApplication  # noqa: E402
from services.evaluation.ratings.cycles import SYSTEM_ACTOR  # noqa: E402
from services.evaluation.programme.domain import Brand, Candidacy, Task  # noqa: E402
from services.evaluation.ratings.domain import Cycle, Rating  # noqa: E402
from services.evaluation.service import EvaluationService  # noqa: E402
from shared.identity import mint_token  # noqa: E402
from shared.secrets import event_cipher_key  # noqa: E402

MANAGEMENT = "http://127.0.0.1:15672/api"
AUTH = ("guest", "guest")
SECRET = "bench-secret-0123456789-0123456789-abcdef"
ROUTE = ("applied", "accepted", "acceptance_review")


class NoOpService:
    """The floor: one RPC that does nothing."""

    name = "bench_noop"

    @rpc
    def no_op(self):
        return None


def seed_directory(app, colleges: int, branches: int, members: int) -> dict:
    tree = {"colleges": [uuid.uuid4() for _ in range(colleges)], "branches": []}
    with app.transaction() as curs:
        committee = uuid.uuid4()
        tree["committee"] = committee
        curs.execute("INSERT INTO dir_orgs VALUES (%s,'学校党委','committee',1,NULL,NULL,"
                     "'active',now())", (committee,))
        for c, college in enumerate(tree["colleges"]):
            curs.execute("INSERT INTO dir_orgs VALUES (%s,%s,'general_branch',2,%s,NULL,"
                         "'active',now())", (college, f"第{c + 1}学院党总支", committee))
        for b in range(branches):
            branch, college = uuid.uuid4(), tree["colleges"][b % colleges]
            curs.execute("INSERT INTO dir_orgs VALUES (%s,%s,'teacher_branch',3,%s,NULL,"
                         "'active',now())", (branch, f"第{b + 1}党支部", college))
            tree["branches"].append(branch)
        curs.execute(
            "INSERT INTO dir_members (id, name, branch_id, category, status, active, updated_at) "
            "SELECT gen_random_uuid(), '党员' || i, b.ids[1 + i %% %s], 'teacher', 'full', true, "
            "now() FROM generate_series(1, %s) i, (SELECT array_agg(id) AS ids FROM dir_orgs "
            "WHERE level = 3) b", (branches, members))
    return tree


def candidacies(app, tree) -> int:
    """Every college and branch a candidate at school tier; a fifth of the passed
    climb to provincial. Saved in batches (the programme's commands are measured
    by the tests; here it is the read side)."""
    rng = random.Random(9)
    rows = {r["id"]: r for r in app.query("SELECT * FROM dir_orgs")}
    pending, count = [], 0
    for org_id in [*tree["colleges"], *tree["branches"]]:
        org = rows[org_id]
        c = Candidacy.nominate(org, "school", 1, "2021-03-01", org["parent_id"], None,
                               SYSTEM_ACTOR, "bench", [])
        steps = rng.randint(0, 4)
        for i, stage in enumerate(ROUTE[:steps]):
            c.move(stage, f"2021-0{i + 4}-01", SYSTEM_ACTOR, "bench", ["x"])
        if steps == 4:
            c.move(rng.choice(("passed", "passed", "failed")), "2021-09-01", SYSTEM_ACTOR,
                   "bench", ["x"])
        pending.append(c)
        if c.stage == "passed" and rng.random() < 0.2:
            p = Candidacy.nominate(org, "provincial", 1, "2022-01-10", org["parent_id"],
                                   {"passed_candidacy_id": str(c.id), "tier": "school"},
                                   SYSTEM_ACTOR, "bench", [])
            for i, stage in enumerate(ROUTE[:rng.randint(0, 3)]):
                p.move(stage, f"2022-0{i + 2}-01", SYSTEM_ACTOR, "bench", ["x"])
            pending.append(p)
        if len(pending) >= 200:
            count += len(pending)
            app.save(*pending)
            pending = []
    count += len(pending)
    app.save(*pending)
    return count


def rated_cycles(app, tree, cycles: int = 3) -> None:
    """``cycles`` finished branch cycles: each branch's rating set by each cycle's
    result (the events a closed 公示 records), for the star trend."""
    rng = random.Random(3)
    rows = {r["id"]: r for r in app.query("SELECT * FROM dir_orgs WHERE level = 3")}
    ratings = {b: Rating.open_for(b, rows[b]["name"], 3, SYSTEM_ACTOR) for b in tree["branches"]}
    now = dt.datetime.now(dt.timezone.utc)
    deadlines = {s: (now + dt.timedelta(days=d)).isoformat()
                 for s, d in (("self_assessment", 1), ("review", 2), ("approval", 3))}
    for year in range(2023, 2023 + cycles):
        cycle = Cycle.open(uuid.uuid4(), f"{year}年度党支部星级考评", 3, str(year),
                           tree["branches"], deadlines, "model_branch", 1, 7, 10, False, None,
                           now, SYSTEM_ACTOR)
        app.save(cycle)
        batch = []
        for b, rating in ratings.items():
            stars = rng.choice((5, 4, 4, 4, 3, 3, 2))
            rating.apply_result(stars, 50.0 + 10 * stars, "cycle", str(cycle.id), "model_branch",
                                1, {}, now.date(), 60, SYSTEM_ACTOR, "bench")
            batch.append(rating)
            if len(batch) >= 200:
                app.save(*batch)
                batch = []
        app.save(*batch)
    app.projector.catch_up()


def brands_and_milestones(app, tree) -> None:
    rows = {r["id"]: r for r in app.query("SELECT * FROM dir_orgs")}
    brands = []
    for i, college in enumerate(tree["colleges"][:30] + tree["branches"][:30]):
        org = rows[college]
        kind = "college_brand" if org["level"] == 2 else "branch_feature"
        b = Brand.register(uuid.uuid4(), f"品牌{i}", kind, org, SYSTEM_ACTOR, None, [])
        b.recognise("provincial" if i % 3 == 0 else "school", "2022-05-01", SYSTEM_ACTOR,
                    None, ["认定文件"])
        brands.append(b)
    app.save(*brands)
    tasks = [app.load(r["id"], Task, "measure") for r in app.query("SELECT id FROM prog_tasks")]
    today = dt.date.today()
    for i, t in enumerate(tasks):
        t.set_milestone("a", "年度计划", today.year, today - dt.timedelta(days=10 if i % 3 == 0
                                                                       else -30),
                        SYSTEM_ACTOR, None)
        t.set_milestone("b", "年度总结", today.year, today + dt.timedelta(days=90),
                        SYSTEM_ACTOR, None)
    app.save(*tasks)
    app.projector.catch_up()
    app.programme.detect_overdue()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--colleges", type=int, default=50)
    parser.add_argument("--branches", type=int, default=1000)
    parser.add_argument("--members", type=int, default=30000)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--reuse", action="store_true",
                        help="measure on the database the last run seeded (no seeding)")
    args = parser.parse_args()
    vhost = f"bench-programme-{uuid.uuid4().hex[:8]}"
    requests.put(f"{MANAGEMENT}/vhosts/{vhost}", auth=AUTH).raise_for_status()
    requests.put(f"{MANAGEMENT}/permissions/{vhost}/guest", auth=AUTH,
                 json={"configure": ".*", "write": ".*", "read": ".*"}).raise_for_status()
    try:
        run(args, f"pyamqp://guest:guest@127.0.0.1:5672/{vhost}")
    finally:
        requests.delete(f"{MANAGEMENT}/vhosts/{vhost}", auth=AUTH)


def run(args, amqp):
    # its own database (other benches may run); encrypted as the service's (dev key)
    if args.reuse:
        settings = DatabaseSettings(dbname="lcbench_programme", pool_size=4, max_overflow=6,
                                    **PG).with_cipher(event_cipher_key("evaluation", {}))
        app = EvaluationApplication(settings)
        tree = {"colleges": [r["id"] for r in app.query(
            "SELECT id FROM dir_orgs WHERE level = 2 ORDER BY name")]}
        n = app.query_one("SELECT count(*) AS n FROM prog_candidacies")["n"]
        print(f"reusing the last run's database: {n:,} candidacies", flush=True)
    else:
        settings = bench_db("programme").with_cipher(event_cipher_key("evaluation", {}))
        app = EvaluationApplication(settings)
        started = time.perf_counter()
        tree = seed_directory(app, args.colleges, args.branches, args.members)
        n = candidacies(app, tree)
        app.projector.catch_up()
        brands_and_milestones(app, tree)
        rated_cycles(app, tree)
        print(f"seeded {args.colleges} colleges, {args.branches} branches, "
              f"{args.members:,} members, {n:,} candidacies in "
              f"{time.perf_counter() - started:.0f} s", flush=True)

    config = {"AMQP_URI": amqp, "AUTH_SECRET": SECRET, "WEB_SERVER_ADDRESS": "127.0.0.1:18012",
              "DATABASE": {"dbname": settings.dbname, **PG}, "RELAY": {"enabled": False},
              "max_workers": 10}
    evaluation = ServiceContainer(EvaluationService, config)
    noop = ServiceContainer(NoOpService, {"AMQP_URI": amqp})
    evaluation.start()
    noop.start()
    token = mint_token(SECRET, sub="bench-admin", role="org_admin", ttl=24 * 3600)
    proxy_cm = ClusterRpcProxy({"AMQP_URI": amqp}, context_data={"auth_token": token},
                               timeout=120)
    proxy = proxy_cm.start()
    rows = []
    try:
        board = proxy.evaluation.programme_dashboard()
        size = len(json.dumps(board, ensure_ascii=False).encode())
        behind = sum(tier["total"] for t in board["candidacies"] for tier in t["tiers"])
        assert behind == n, (behind, n)
        college = str(tree["colleges"][0])
        base = summary(timed(lambda: proxy.bench_noop.no_op(), args.calls))
        rows.append(("no_op RPC (baseline, same broker and run)", base, None))
        print(f"school-wide answer: {n:,} candidacies behind its numbers, {size // 1024} KiB")
        rows.append(("programme_dashboard RPC (school; unchanged: answer reused)",
                     summary(timed(lambda: proxy.evaluation.programme_dashboard(), args.calls)),
                     base))
        tasks = [app.load(r["id"], Task, "measure") for r in app.query(
            "SELECT id FROM prog_tasks")]

        def change():
            """An event between reads (untimed): the answer must be computed afresh."""
            task = random.choice(tasks)
            task.set_milestone(f"c{task.version}", "临时节点", 2099, "2099-01-01", SYSTEM_ACTOR,
                               None)
            app.save(task)
            app.projector.catch_up()

        cold = []
        for _ in range(args.calls // 2):
            change()
            cold += timed(lambda: proxy.evaluation.programme_dashboard(), 1, warmup=0)
        rows.append(("programme_dashboard RPC (school; a change before each call)",
                     summary(cold), base))
        rows.append(("programme_dashboard(college_id) RPC (one college)",
                     summary(timed(lambda: proxy.evaluation.programme_dashboard(college),
                                   args.calls)), base))
        rows.append(("star_trend RPC (school, three cycles)",
                     summary(timed(lambda: proxy.evaluation.star_trend(), args.calls)), base))
        rows.append(("programme_progress RPC (default plan)",
                     summary(timed(lambda: proxy.evaluation.programme_progress(), args.calls)),
                     base))
    finally:
        proxy_cm.stop()
        evaluation.stop()
        noop.stop()
        app.close()
    print(f"\nProgramme dashboard benchmark ({args.colleges} colleges, {args.branches} branches, "
          f"{args.members:,} members; ratios against the no-op RPC)\n")
    print_table(rows)


if __name__ == "__main__":
    main()
