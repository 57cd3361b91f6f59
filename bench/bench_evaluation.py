"""Evaluation benchmark (issue 3), beside the foundation's raw baselines.

1. Workflow through RPC: one cycle of N branches (default 1,000: 40 colleges ×
   25 branches); every branch secretary submits its self-assessment (自评), its
   college secretary reviews (审核), org_admin approves (审定) college by college
   (25 per call, quota ranked per college).
2. As-of rating lookups through RPC with M events (default 1,000,000) in the
   store: ``get_rating(org_id, as_of=…)`` (indexed read model) and
   ``get_rating(…, replay=True)`` (the state rebuilt from the event store:
   snapshot every 100 events + the events after it).

Baselines (from bench_foundation): a raw psycopg INSERT + COMMIT, and a raw
kombu request/reply round trip. The relay is disabled here so that publishing
to RabbitMQ does not compete with what is measured (its cost is the
foundation's).

Run: .venv/bin/python -m bench.bench_evaluation [--branches 1000] [--events 1000000]
"""
import warnings

warnings.filterwarnings("ignore", message=r"(?s).*Eventlet is deprecated")
import eventlet  # noqa: E402

eventlet.monkey_patch()

import shared  # noqa: E402,F401

import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import random  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402

import requests  # noqa: E402
from nameko.containers import ServiceContainer  # noqa: E402
from nameko.standalone.rpc import ClusterRpcProxy  # noqa: E402

from bench.bench_foundation import kombu_round_trip, raw_insert  # noqa: E402
from bench.common import PG, bench_db, print_table, summary  # noqa: E402
from services.evaluation.application import EvaluationApplication  # noqa: E402
from services.evaluation.ratings.cycles import SYSTEM_ACTOR  # noqa: E402
from services.evaluation.ratings.domain import Rating  # noqa: E402
from services.evaluation.service import EvaluationService  # noqa: E402
from shared.identity import mint_token  # noqa: E402
from shared.secrets import event_cipher_key  # noqa: E402

MANAGEMENT = "http://127.0.0.1:15672/api"
AUTH = ("guest", "guest")
SECRET = "bench-secret-0123456789-0123456789-abcdef"
BRANCHES_PER_COLLEGE = 25


def seed_directory(app, branches: int) -> dict:
    """The org tree as evaluation's directory holds it (consuming organizations'
    events is covered by the e2e tests; here it is the evaluation work)."""
    colleges = [uuid.uuid4() for _ in range(max(1, branches // BRANCHES_PER_COLLEGE))]
    tree = {"colleges": colleges, "branches": [], "secretaries": {}}

    def secretary(curs, org, branch):
        """A member in ``branch`` holding the secretary role (书记) of ``org``: a
        secretary's token is honoured only for the member the records show."""
        member = uuid.uuid4()
        curs.execute("INSERT INTO dir_members (id, name, branch_id, category, status, active, "
                     "updated_at) VALUES (%s,%s,%s,'teacher','full',true,now())",
                     (member, f"书记{len(tree['secretaries']) + 1}", branch))
        curs.execute("INSERT INTO dir_roles (org_id, member_id, role) VALUES (%s,%s,'secretary')",
                     (org, member))
        tree["secretaries"][org] = str(member)

    with app.transaction() as curs:
        committee = uuid.uuid4()
        curs.execute("INSERT INTO dir_orgs VALUES (%s,'学校党委','committee',1,NULL,NULL,"
                     "'active',now())", (committee,))
        for c, college in enumerate(colleges):
            curs.execute("INSERT INTO dir_orgs VALUES (%s,%s,'general_branch',2,%s,NULL,"
                         "'active',now())", (college, f"第{c + 1}学院党总支", committee))
        for b in range(branches):
            branch, college = uuid.uuid4(), colleges[b % len(colleges)]
            curs.execute("INSERT INTO dir_orgs VALUES (%s,%s,'teacher_branch',3,%s,NULL,"
                         "'active',now())", (branch, f"第{b + 1}党支部", college))
            tree["branches"].append((branch, college))
            secretary(curs, branch, branch)
            if college not in tree["secretaries"]:
                secretary(curs, college, branch)
    return tree


def entries(scheme: dict, rng: random.Random) -> dict:
    fraction = rng.uniform(0.6, 1.0)
    return {"scores": {i["code"]: round(i["max_score"] * fraction, 1)
                       for i in scheme["indicators"]},
            "evidence": {i["code"]: [f"doc://{i['code']}"] for i in scheme["indicators"]
                         if i["evidence"]},
            "appraisal": round(rng.uniform(70, 100), 1)}


def as_token(proxy_cm, role, sub, org=None):
    # One proxy, many callers: the token travels in the proxy's context data.
    proxy_cm._worker_ctx.data["auth_token"] = mint_token(SECRET, sub=sub, role=role, org=org,
                                                         ttl=24 * 3600)


def call_timed(samples, func):
    started = time.perf_counter()
    out = func()
    samples.append(time.perf_counter() - started)
    return out


def workflow(proxy_cm, rpc, tree, rows):
    as_token(proxy_cm, "org_admin", "bench-admin")
    scheme = rpc.evaluation.get_scheme("model_branch")["definition"]
    soon = dt.datetime.now(dt.timezone.utc)
    started = time.perf_counter()
    opened = []
    cycle = call_timed(opened, lambda: rpc.evaluation.open_cycle(
        name="bench 2026年度考评", level=3, period="2026",
        deadlines={"self_assessment": (soon + dt.timedelta(days=10)).isoformat(),
                   "review": (soon + dt.timedelta(days=20)).isoformat(),
                   "approval": (soon + dt.timedelta(days=30)).isoformat()}))
    rng = random.Random(7)
    submits, reviews, approvals = [], [], []
    for branch, _ in tree["branches"]:
        as_token(proxy_cm, "branch_secretary", tree["secretaries"][branch], str(branch))
        payload = entries(scheme, rng)
        call_timed(submits, lambda: rpc.evaluation.submit_self_assessment(
            cycle_id=cycle["id"], org_id=str(branch), **payload))
    for branch, college in tree["branches"]:
        as_token(proxy_cm, "college_secretary", tree["secretaries"][college], str(college))
        payload = entries(scheme, rng)
        call_timed(reviews, lambda: rpc.evaluation.submit_review(
            cycle_id=cycle["id"], org_id=str(branch), **payload))
    as_token(proxy_cm, "org_admin", "bench-admin")
    for college in tree["colleges"]:
        ids = [str(b) for b, c in tree["branches"] if c == college]
        call_timed(approvals, lambda: rpc.evaluation.approve(cycle_id=cycle["id"], org_ids=ids))
    total = time.perf_counter() - started
    board = []
    call_timed(board, lambda: rpc.evaluation.progress_board(cycle["id"]))
    n = len(tree["branches"])
    rows += [(f"open_cycle RPC ({n} organisations, one save)", summary(opened), None),
             ("submit_self_assessment RPC", summary(submits), None),
             ("submit_review RPC", summary(reviews), None),
             (f"approve RPC ({BRANCHES_PER_COLLEGE} branches per call)", summary(approvals), None),
             (f"progress_board RPC ({n} rows)", summary(board), None)]
    return total


def fill_store(app, orgs: list, events: int) -> tuple[float, float]:
    """Rating changes for ``orgs`` until the store holds ``events`` events; each
    change is 2 events (underlying set + changed, plus a fall now and then).
    Saved in batches of one change per organisation (no projector per save);
    the read models catch up afterwards (measured separately)."""
    ratings = [Rating.open_for(o, f"org {i}", 3, SYSTEM_ACTOR) for i, o in enumerate(orgs)]
    rng = random.Random(11)
    saved = app.recorder.max_notification_id() or 0
    started = time.perf_counter()
    last_report = started
    while saved < events:
        for r in ratings:
            stars = rng.randint(1, 5)
            r.apply_result(stars, round(rng.uniform(50, 100), 2), "cycle", None, "model_branch",
                           1, {"bench": True}, dt.date.today(), 90, SYSTEM_ACTOR)
        app.save(*ratings)
        saved = app.recorder.max_notification_id()
        if time.perf_counter() - last_report > 15:
            last_report = time.perf_counter()
            rate = saved / (last_report - started)
            print(f"  … {saved:,} events ({rate:,.0f}/s)", flush=True)
    append_s = time.perf_counter() - started
    started = time.perf_counter()
    app.projector.catch_up()
    return append_s, time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--branches", type=int, default=1000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--lookups", type=int, default=2000)
    parser.add_argument("--rating-orgs", type=int, default=2000,
                        help="organisations whose ratings fill the store")
    args = parser.parse_args()

    # A throw-away vhost: the bench never touches queues of services running on "/".
    vhost = f"bench-evaluation-{uuid.uuid4().hex[:8]}"
    requests.put(f"{MANAGEMENT}/vhosts/{vhost}", auth=AUTH).raise_for_status()
    requests.put(f"{MANAGEMENT}/permissions/{vhost}/guest", auth=AUTH,
                 json={"configure": ".*", "write": ".*", "read": ".*"}).raise_for_status()
    amqp = f"pyamqp://guest:guest@127.0.0.1:5672/{vhost}"
    try:
        run(args, amqp)
    finally:
        requests.delete(f"{MANAGEMENT}/vhosts/{vhost}", auth=AUTH)


def run(args, amqp):
    # The service started below encrypts its stored events (development key):
    # this process reads and writes the same store, so it needs the same key.
    settings = bench_db("evaluation").with_cipher(event_cipher_key("evaluation", {}))
    app = EvaluationApplication(settings)
    tree = seed_directory(app, args.branches)
    rows = []
    raw = summary(raw_insert(settings, 500))
    rows.append(("raw psycopg INSERT + COMMIT (baseline)", raw, None))

    config = {"AMQP_URI": amqp, "AUTH_SECRET": SECRET, "WEB_SERVER_ADDRESS": "127.0.0.1:18002",
              "DATABASE": {"dbname": settings.dbname, **PG}, "RELAY": {"enabled": False},
              "max_workers": 10}
    container = ServiceContainer(EvaluationService, config)
    container.start()
    kombu = summary(kombu_round_trip(500))
    rows.append(("raw kombu request/reply round trip (baseline)", kombu, None))
    proxy_cm = ClusterRpcProxy({"AMQP_URI": amqp}, context_data={}, timeout=120)
    rpc = proxy_cm.start()
    try:
        wall = workflow(proxy_cm, rpc, tree, rows)
        print(f"workflow: {args.branches} branches submitted, reviewed and approved in "
              f"{wall:.1f} s", flush=True)

        orgs = [uuid.uuid4() for _ in range(args.rating_orgs)]
        moment_before = dt.datetime.now(dt.timezone.utc)
        append_s, project_s = fill_store(app, orgs, args.events)
        total = app.recorder.max_notification_id()
        moment_after = dt.datetime.now(dt.timezone.utc)
        print(f"store: {total:,} events; appended in {append_s:.0f} s "
              f"({total / append_s:,.0f}/s), read models caught up in {project_s:.0f} s",
              flush=True)
        rng = random.Random(3)
        span = (moment_after - moment_before).total_seconds()

        def lookup_args():
            org = rng.choice(orgs)
            moment = moment_before + dt.timedelta(seconds=rng.uniform(0, span))
            return str(org), moment.isoformat()

        as_token(proxy_cm, "auditor", "bench-auditor")
        samples, replayed = [], []
        for _ in range(args.lookups):
            org, moment = lookup_args()
            call_timed(samples, lambda: rpc.evaluation.get_rating(org, as_of=moment))
        for _ in range(args.lookups // 4):
            org, moment = lookup_args()
            out = call_timed(replayed, lambda: rpc.evaluation.get_rating(
                org, as_of=moment, replay=True))
            assert out.get("replayed", {"matches": True})["matches"], out
        rows += [(f"get_rating as_of RPC ({total:,} events in store)", summary(samples), kombu),
                 ("get_rating as_of replay=True RPC (snapshot + events)", summary(replayed),
                  kombu)]
    finally:
        proxy_cm.stop()
        container.stop()
        app.close()
    print(f"\nEvaluation benchmark ({args.branches} branches; ratios against the "
          "baseline named)\n")
    print_table(rows)


if __name__ == "__main__":
    main()
