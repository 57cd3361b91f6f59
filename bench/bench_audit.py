"""Audit benchmarks (issue 11), each beside its raw baseline measured in the same run.

1. **Verify the hash chain over 1,000,000 stored events** (target ≥ 200,000
   events/s), beside a raw sequential read of the same rows. The store is set
   up as in production (``shared.dbsetup``: service role, append-only trigger,
   chain trigger) and filled as the service role, the chain trigger computing
   every link. The raw read fetches every event over a binary server-side
   cursor and only touches each row. The default verify has PostgreSQL
   recompute every SHA-256 link in ranges checked at once (one exported
   snapshot) and return only broken ones; also measured: the same query as one
   range on one connection, and ``--independent`` (every event read and hashed
   in Python). The CPU seconds the one-range check costs its PostgreSQL
   backend are printed too: the rate one free core would give.

2. **As-of lookups through RPC with 1,000,000 events in the store** (target: p99
   under 5 ms), beside a no-op Nameko RPC measured in the same run, interleaved
   call by call with the lookups (so both see the same load). Evaluation's
   store is filled through the application with big saves (a round of rating
   changes for every branch per save; pioneer indices published and revised),
   encrypted at rest with the cipher key the service itself gets
   (``shared.secrets.event_cipher_key``, development key in bench runs); the
   read models catch up; then a real evaluation container answers
   ``get_rating(as_of)``, ``get_member_index(as_of)`` (which also records the
   audit read, a write) and ``star_distribution(college_id, as_of)``.

Every figure is printed as a ``RESULT`` line too (``bench/run_all.py`` reads them).

    python -m bench.bench_audit [--events 1000000] [--part verify|asof|all] [--profile tottime]
"""
import warnings

warnings.filterwarnings("ignore", message=r"(?s).*Eventlet is deprecated")
import eventlet  # noqa: E402

eventlet.monkey_patch()

import shared  # noqa: E402,F401

import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from dataclasses import replace  # noqa: E402

import psycopg  # noqa: E402
from psycopg.rows import tuple_row  # noqa: E402

from bench.common import PG, bench_db, summary  # noqa: E402
from shared.chain import verify  # noqa: E402
from shared.dbsetup import service_role, setup_service_database  # noqa: E402

EVENTS = "organizations_events"
BATCH = 50_000
SECRET = "bench-secret-0123456789-0123456789-abcdef"


def result(name: str, kind: str, value: float, unit: str, baseline: str | None = None,
           median: float | None = None, p99: float | None = None) -> None:
    """One figure, machine-readable, for ``bench/run_all.py``."""
    print("RESULT " + json.dumps({"name": name, "kind": kind, "value": value, "unit": unit,
                                  "baseline": baseline, "median_ms": median, "p99_ms": p99},
                                 ensure_ascii=False), flush=True)


# -- 1. the chain ---------------------------------------------------------------------
def fill(settings, total: int) -> float:
    """``total`` events of ~330 bytes of state each, inserted as the service role
    under the library's table lock, in batches; returns seconds."""
    started = time.perf_counter()
    with psycopg.connect(settings.conninfo()) as conn:
        done = 0
        while done < total:
            n = min(BATCH, total - done)
            conn.execute(f"LOCK TABLE {EVENTS} IN EXCLUSIVE MODE")
            conn.execute(
                f"INSERT INTO {EVENTS} (originator_id, originator_version, topic, state) "
                "SELECT gen_random_uuid(), 1, "
                "'services.organizations.domain:Member.Registered', convert_to("
                "json_build_object('name', '党员' || g, 'branch_id', gen_random_uuid(), "
                "'category', 'teacher', 'status', 'full', 'joined_on', '2010-07-01', "
                "'actor', json_build_object('sub', 'bench', 'role', 'org_admin'), "
                "'reason', '批量导入', 'timestamp', now())::text, 'UTF8') "
                "FROM generate_series(1, %s) g", (n,))
            conn.commit()
            done += n
    return time.perf_counter() - started


def raw_read(settings) -> tuple[int, float]:
    started = time.perf_counter()
    count = 0
    with psycopg.connect(settings.conninfo()) as conn, conn.transaction(), \
            conn.cursor(name="raw", row_factory=tuple_row, binary=True) as cur:
        cur.itersize = 20000
        cur.execute(f"SELECT notification_id, originator_id, originator_version, topic, state "
                    f"FROM {EVENTS} ORDER BY notification_id")
        for _ in cur:
            count += 1
    return count, time.perf_counter() - started


def _backend_cpu(pid: int) -> float | None:
    """CPU seconds a local PostgreSQL backend has used (None if not on this host)."""
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def chain_verify(total: int) -> None:
    settings = replace(bench_db("audit"), role=service_role("organizations"))
    setup_service_database(settings, "organizations")
    print(f"filling {total:,} events (chain trigger on)…", flush=True)
    seconds = fill(settings, total)
    print(f"  filled in {seconds:.1f}s ({total / seconds:,.0f} events/s with the chain trigger)")
    with psycopg.connect(settings.admin().conninfo(), autocommit=True) as conn:
        conn.execute(f"VACUUM ANALYZE {EVENTS}")
        conn.execute("VACUUM ANALYZE event_chain")
    conninfo = settings.conninfo()
    raw_read(settings)  # warm the cache for all
    load = os.getloadavg()
    count, raw_s = raw_read(settings)
    timings, cpu = {}, None
    for mode in ("ranges", "one range", "independent"):
        with psycopg.connect(conninfo) as conn:
            pid = conn.info.backend_pid
            before = _backend_cpu(pid)
            report = verify(conn, EVENTS, independent=mode == "independent",
                            connect=(lambda: psycopg.connect(conninfo)) if mode == "ranges"
                            else None)
            if mode == "one range" and before is not None:
                cpu = _backend_cpu(pid) - before
        assert report["ok"] and report["checked"] == count == total, report["problems"][:5]
        timings[mode] = report["seconds"]
    raw_again = raw_read(settings)[1]  # the baseline again after: the load moves
    print(f"\nload average at start {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} "
          f"({os.cpu_count()} cores)")
    print(f"{'measurement':62} {'events':>10} {'seconds':>8} {'events/s':>10} {'× raw':>6}")
    rows = [("raw sequential read of the events (server-side cursor)", raw_s),
            ("verify (default): ranges checked at once in PostgreSQL", timings["ranges"]),
            ("verify, one range on one connection", timings["one range"]),
            ("verify --independent, every event hashed in Python", timings["independent"]),
            ("raw sequential read again, after the verifies", raw_again)]
    for name, s in rows:
        print(f"{name:62} {count:>10,} {s:>8.2f} {count / s:>10,.0f} {raw_s / s:>6.2f}")
    if cpu:
        print(f"one-range verify: {cpu:.2f} CPU seconds in its PostgreSQL backend → "
              f"{count / cpu:,.0f} events per CPU second (what one free core gives)")
    target = 200_000
    rate = count / timings["ranges"]
    print(f"target ≥ {target:,} events/s (default verify): "
          f"{'met' if rate >= target else 'NOT met'} ({rate:,.0f}/s)")
    base = f"raw sequential read of {total:,} events"
    result(base, "baseline", count / raw_s, "events/s")
    result(f"audit verify over {total:,} events (ranges at once, in PostgreSQL)", "rate",
           rate, "events/s", base)
    result(f"audit verify over {total:,} events, one range", "rate",
           count / timings["one range"], "events/s", base)
    result(f"audit verify --independent over {total:,} events", "rate",
           count / timings["independent"], "events/s", base)
    with psycopg.connect(settings.admin().conninfo("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{settings.dbname}" WITH (FORCE)')


# -- 2. as-of lookups ---------------------------------------------------------------------
def copy_events(app, rows) -> int:
    """Stored events (``originator_id, originator_version, topic, state``) into the
    store in one COPY under the library's table lock, as one big save would
    insert them (the chain trigger links each)."""
    table = app.recorder.events_table_name
    n = 0
    with app.datastore.get_connection() as conn, conn.transaction():
        conn.execute(f'LOCK TABLE "{table}" IN EXCLUSIVE MODE')
        with conn.cursor().copy(f'COPY "{table}" (originator_id, originator_version, topic, '
                                'state) FROM STDIN') as copy:
            for row in rows:
                copy.write_row(row)
                n += 1
    return n


def fill_evaluation(app, tree: dict, members: list, total: int, year: int) -> dict:
    """Evaluation's store filled to ``total`` events with big saves (each a COPY of
    events made by the domain and encoded by the application's mapper, so encrypted
    with the service's key): ten rounds of rating changes for every branch (2 events
    each), every member's pioneer index published and later revised, and audit
    reads (纪委办's recorded reads, one event each) for the rest. Returns the
    moments between which everything was recorded."""
    from eventsourcing.utils import get_topic

    from services.evaluation.ratings.cycles import SYSTEM_ACTOR
    from services.evaluation.ratings.rating import Rating
    from services.evaluation.members.domain import PioneerIndex
    from shared.history import AuditRead

    mapper = app.mapper
    branches = [b for b, _ in tree["branches"]]
    rng = random.Random(11)
    first = dt.datetime.now(dt.timezone.utc)
    started = time.perf_counter()

    def stored(aggregates) -> list:
        out = []
        for aggregate in aggregates:
            for e in aggregate.collect_events():
                s = mapper.to_stored_event(e)
                out.append((s.originator_id, s.originator_version, s.topic, s.state))
        return out

    saved = 0
    breakdown = {"base": 60, "positive": {"applied": 6}, "negative": {"applied": 0},
                 "score": 66.0, "zeroed": False, "zeroed_by": []}
    indices = [PioneerIndex(id=PioneerIndex.id_for(m, year), member_id=str(m), member_name=None,
                            year=year, branch_id=str(branches[i % len(branches)]),
                            college_id=None, score=66.0, zeroed=False, zeroed_by=[],
                            breakdown=breakdown, scheme_id="pioneer_index", scheme_version=1,
                            actor=SYSTEM_ACTOR, reason="bench")
               for i, m in enumerate(members)]
    saved += copy_events(app, stored(indices))
    ratings = [Rating.open_for(b, f"第{i + 1}党支部", 3, SYSTEM_ACTOR)
               for i, b in enumerate(branches)]
    for round_ in range(10):
        for r in ratings:
            r.apply_result(rng.randint(1, 5), round(rng.uniform(50, 100), 2), "cycle", None,
                           "model_branch", 1, {"bench": True}, dt.date.today(), 90,
                           SYSTEM_ACTOR)
        saved += copy_events(app, stored(ratings))
        if round_ == 0:
            # Lookups ask for moments from here on: every index is published and
            # every branch rated by then (earlier moments would be NotFound).
            first = dt.datetime.now(dt.timezone.utc)
    # Audit reads up to ``total``: one template state, encrypted afresh for each event.
    actor = {"sub": "bench-auditor", "role": "auditor"}
    template = AuditRead(subject_id=str(branches[0]), query="get_rating",
                         filters={"as_of": first.isoformat()}, actor=actor)
    (event,) = template.collect_events()
    template_state = mapper.to_stored_event(event).state
    plain = mapper.cipher.decrypt(template_state) if mapper.cipher else template_state
    topic = get_topic(type(event))
    encrypt = mapper.cipher.encrypt if mapper.cipher else (lambda b: b)
    revised = False
    while saved < total:
        n = min(50_000, total - saved - (0 if revised else len(members)))
        saved += copy_events(app, ((uuid.uuid4(), 1, topic, encrypt(plain)) for _ in range(n)))
        if not revised and saved >= total // 2:  # half way: every index revised once
            for index in indices:
                index.revise({**breakdown, "score": 58.0}, index.branch_id, None,
                             {"type": "bench"}, SYSTEM_ACTOR, "bench")
            saved += copy_events(app, stored(indices))
            revised = True
        print(f"  … {saved:,} events ({saved / (time.perf_counter() - started):,.0f}/s)",
              flush=True)
    print(f"  {saved:,} events appended in {time.perf_counter() - started:.0f} s "
          f"({saved / (time.perf_counter() - started):,.0f}/s)", flush=True)
    return {"first": first, "last": dt.datetime.now(dt.timezone.utc)}


def as_of_lookups(total: int, lookups: int, profile: str | None = None) -> None:
    from nameko.containers import ServiceContainer
    from nameko.standalone.rpc import ClusterRpcProxy

    from bench.bench_evaluation import seed_directory
    from bench.run_all import NoopService, Vhost
    from services.evaluation.application import EvaluationApplication
    from services.evaluation.service import EvaluationService
    from shared.identity import mint_token
    from shared.secrets import event_cipher_key

    settings = bench_db("audit_asof")
    # Encrypted at rest with the key the service derives for itself.
    app = EvaluationApplication(settings.with_cipher(event_cipher_key("evaluation", {})))
    vhost = Vhost()
    containers = []
    try:
        tree = seed_directory(app, 1000)
        members = [uuid.uuid4() for _ in range(2000)]
        year = dt.date.today().year
        print(f"filling evaluation's store to {total:,} events…", flush=True)
        span = fill_evaluation(app, tree, members, total, year)
        started = time.perf_counter()
        app.projector.catch_up()
        stored = app.recorder.max_notification_id()
        print(f"  read models caught up in {time.perf_counter() - started:.0f} s", flush=True)
        app.close()
        # Measured in the steady state of a store this size, not in the wake of its
        # bulk fill: the tables vacuumed and analysed and the fill's dirty pages
        # written (else autovacuum and a checkpoint run during the lookups).
        with psycopg.connect(settings.conninfo(), autocommit=True) as conn:
            started = time.perf_counter()
            conn.execute("VACUUM ANALYZE")
            conn.execute("CHECKPOINT")
            print(f"  vacuumed, analysed, checkpointed in {time.perf_counter() - started:.0f} s",
                  flush=True)
        config = {"AMQP_URI": vhost.uri, "AUTH_SECRET": SECRET, "max_workers": 10,
                  "WEB_SERVER_ADDRESS": "127.0.0.1:0",
                  "DATABASE": {"dbname": settings.dbname, **PG}, "RELAY": {"enabled": False},
                  "CHAIN": {"publish_interval": 0}}
        for cls in (NoopService, EvaluationService):
            containers.append(ServiceContainer(cls, config))
            containers[-1].start()
        token = mint_token(SECRET, sub="bench-auditor", role="auditor", ttl=3600)
        rng = random.Random(3)
        seconds = (span["last"] - span["first"]).total_seconds()

        def moment() -> str:
            return (span["first"] + dt.timedelta(seconds=rng.uniform(0, seconds))).isoformat()

        with ClusterRpcProxy({"AMQP_URI": vhost.uri}, context_data={"auth_token": token},
                             timeout=120) as rpc:
            ev = rpc.evaluation
            kinds = {
                "get_rating(org_id, as_of)": lambda: ev.get_rating(
                    str(rng.choice(tree["branches"])[0]), as_of=moment()),
                "get_member_index(member_id, year, as_of) (+ audit read recorded)":
                    lambda: ev.get_member_index(member_id=str(rng.choice(members)), year=year,
                                                as_of=moment()),
                "star_distribution(college_id, as_of) (25 branches)":
                    lambda: ev.star_distribution(college_id=str(rng.choice(tree["colleges"])),
                                                 as_of=moment()),
            }
            load = os.getloadavg()
            rows = []
            for name, lookup in kinds.items():
                noop, looked = [], []
                for i in range(lookups + 20):  # interleaved: both under the same load
                    t = time.perf_counter()
                    rpc.noop.ping()
                    t2 = time.perf_counter()
                    lookup()
                    t3 = time.perf_counter()
                    if i >= 20:  # warm-up
                        noop.append(t2 - t)
                        looked.append(t3 - t2)
                rows.append((name, summary(looked), summary(noop)))
                if profile:  # where the time of a lookup goes (client and service: one process)
                    import cProfile
                    import pstats
                    cpu, prof = time.process_time(), cProfile.Profile()
                    prof.enable()
                    for _ in range(lookups):
                        lookup()
                    prof.disable()
                    print(f"\n{name}: {(time.process_time() - cpu) / lookups * 1e3:.2f} ms CPU "
                          "per call (client and service, profiled)")
                    pstats.Stats(prof).sort_stats(profile).print_stats(35)
        print(f"\nas-of lookups through RPC, {stored:,} events in evaluation's store; "
              f"load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} "
              f"({os.cpu_count()} cores)")
        print(f"{'lookup':66} {'n':>5} {'median ms':>9} {'p99 ms':>8} "
              f"{'no-op med':>9} {'no-op p99':>9} {'× p99':>6}")
        for name, s, n in rows:
            print(f"{name:66} {s['n']:>5} {s['median_ms']:>9.2f} {s['p99_ms']:>8.2f} "
                  f"{n['median_ms']:>9.2f} {n['p99_ms']:>9.2f} "
                  f"{s['p99_ms'] / n['p99_ms']:>6.2f}")
            base = f"no-op Nameko RPC, interleaved with {name.split('(')[0]}"
            result(base, "baseline", 1000 / n["median_ms"], "calls/s", median=n["median_ms"],
                   p99=n["p99_ms"])
            result(f"as-of RPC {name}, {stored:,} events in store", "rate",
                   1000 / s["median_ms"], "calls/s", base, median=s["median_ms"],
                   p99=s["p99_ms"])
        for name, s, _ in rows:
            print(f"target p99 < 5 ms, {name.split('(')[0]}: "
                  f"{'met' if s['p99_ms'] < 5 else 'NOT met'} ({s['p99_ms']:.2f} ms)")
    finally:
        for c in containers:
            c.kill()
        vhost.delete()
        with psycopg.connect(settings.conninfo("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{settings.dbname}" WITH (FORCE)')


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--lookups", type=int, default=500)
    parser.add_argument("--part", choices=("verify", "asof", "all"), default="all")
    parser.add_argument("--profile", metavar="SORT", default=None,
                        help="after each as-of lookup's timing, cProfile as many more calls "
                             "and print the top entries sorted by SORT (tottime, cumtime)")
    args = parser.parse_args()
    if args.part in ("verify", "all"):
        chain_verify(args.events)
    if args.part in ("asof", "all"):
        as_of_lookups(args.events, args.lookups, args.profile)


if __name__ == "__main__":
    main()
