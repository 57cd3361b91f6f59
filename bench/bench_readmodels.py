"""Read-model benchmark (issue 12): the rating read model's catch-up and rebuild
beside a raw sequential read of the same rows, in the same run.

The store is filled with rating changes (评星结果) straight through the
application's ``save`` (big saves: one change per organisation per save), with
the service's cipher key as in production (stored events are encrypted at rest).
Then, each timed on its own:

* raw baseline: a psycopg sequential read of the events table (the same rows:
  id, originator, version, topic, state), nothing decoded;
* catch-up: the projector applies every event not yet applied (the live path);
* ``Projector.rebuild``: every read model emptied and replayed in one transaction;
* ``rebuild_read_models`` (``shared.rebuild.rebuild_compared``): the same, plus the
  comparison of every rebuilt row with the live one (it must find them identical);
* a command's own catch-up (``commit``: one rating change saved, then the read
  models brought up to date, 1-5 events) beside a raw INSERT + COMMIT.

Run: .venv/bin/python -m bench.bench_readmodels [--events 200000] [--orgs 2000] [--profile]
(``--profile`` prints cProfile's top entries for one rebuild.)
"""
import warnings

warnings.filterwarnings("ignore", message=r"(?s).*Eventlet is deprecated")
import eventlet  # noqa: E402

eventlet.monkey_patch()

import shared  # noqa: E402,F401

import argparse  # noqa: E402
import cProfile  # noqa: E402
import datetime as dt  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import pstats  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402

import psycopg  # noqa: E402

from bench.common import bench_db  # noqa: E402
from shared.rebuild import rebuild_compared  # noqa: E402
from shared.secrets import event_cipher_key  # noqa: E402


def _ratings():
    try:  # the ratings sub-domain package, where it has moved
        from services.evaluation.ratings.domain import Rating
    except ImportError:
        from services.evaluation.domain import Rating
    return Rating


def fill(app, orgs: int, events: int) -> float:
    """Rating changes until the store holds ``events`` events; returns events/s."""
    from services.evaluation.ratings.cycles import SYSTEM_ACTOR

    Rating = _ratings()
    ratings = [Rating.open_for(uuid.uuid4(), f"第{i + 1}党支部", 3, SYSTEM_ACTOR)
               for i in range(orgs)]
    rng = random.Random(11)
    start_id = app.recorder.max_notification_id() or 0
    saved = start_id
    started = time.perf_counter()
    today = dt.date.today()
    while saved - start_id < events:
        for r in ratings:
            r.apply_result(rng.randint(1, 5), round(rng.uniform(50, 100), 2), "cycle", None,
                           "model_branch", 1, {"党建工作": round(rng.uniform(10, 30), 1)},
                           today, 90, SYSTEM_ACTOR, reason="年度考评", evidence=["doc://1"])
        app.save(*ratings)
        saved = app.recorder.max_notification_id()
    return (saved - start_id) / (time.perf_counter() - started)


def raw_read(settings, table: str) -> tuple[int, float]:
    """Rows and seconds of a plain ordered read of the events table."""
    with psycopg.connect(settings.conninfo()) as conn:
        started = time.perf_counter()
        rows = 0
        with conn.cursor(name="scan") as cur:
            cur.itersize = 5000
            cur.execute(f"SELECT notification_id, originator_id, originator_version, topic, "
                        f"state FROM {table} ORDER BY notification_id")
            for _ in cur:
                rows += 1
        return rows, time.perf_counter() - started


def raw_insert_commit(settings, n: int) -> list[float]:
    with psycopg.connect(settings.conninfo()) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench_raw (id bigserial, v text)")
        conn.commit()
        samples = []
        for i in range(n):
            started = time.perf_counter()
            conn.execute("INSERT INTO bench_raw (v) VALUES (%s)", (str(i),))
            conn.commit()
            samples.append(time.perf_counter() - started)
        return samples


def command_catch_up(app, n: int) -> list[float]:
    """One rating change committed as a command does (events saved, read models
    caught up before answering)."""
    from services.evaluation.ratings.cycles import SYSTEM_ACTOR

    Rating = _ratings()
    rng = random.Random(5)
    rating = Rating.open_for(uuid.uuid4(), "命令党支部", 3, SYSTEM_ACTOR)
    app.commit(rating)
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        rating.apply_result(rng.randint(1, 5), 80.0, "cycle", None, "model_branch", 1, None,
                            dt.date.today(), 90, SYSTEM_ACTOR)
        app.commit(rating)
        samples.append(time.perf_counter() - started)
    return samples


def read_models_snapshot(app) -> dict:
    out = {}
    for table in ("eval_ratings", "eval_rating_history", "eval_problems"):
        row = app.query_one(f"SELECT count(*) AS n, md5(string_agg(to_jsonb(t)::text, ',' "
                            f"ORDER BY to_jsonb(t)::text)) AS digest FROM {table} t")
        out[table] = (int(row["n"]), row["digest"])
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--orgs", type=int, default=2000)
    parser.add_argument("--commands", type=int, default=200)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the filled database")
    args = parser.parse_args()
    from services.evaluation.application import EvaluationApplication

    settings = bench_db(f"readmodels_{os.getpid()}").with_cipher(event_cipher_key("evaluation", {}))
    app = EvaluationApplication(settings)
    results = []

    def report(name, value, unit, base=None, baseline=None):
        ratio = f"{value / base:.3f}×" if base else ""
        results.append({"name": name, "value": value, "unit": unit, "baseline": baseline})
        print(f"{name:62} {value:>12,.0f} {unit:14} {ratio}", flush=True)

    try:
        print(f"load average: {os.getloadavg()}", flush=True)
        report("fill: rating changes appended (big saves)", fill(app, args.orgs, args.events),
               "events/s")
        table = app.recorder.events_table_name
        total = app.recorder.max_notification_id()
        reads = [raw_read(settings, table) for _ in range(2)]
        raw_rate = max(n / s for n, s in reads)
        raw_name = "raw sequential read of the rating events (read-model bench)"
        report(raw_name, raw_rate, f"rows/s of {total:,}")

        started = time.perf_counter()
        applied = app.projector.catch_up()
        report("read models: catch-up of rating events",
               applied / (time.perf_counter() - started), f"events/s of {applied:,}", raw_rate,
               raw_name)
        live = read_models_snapshot(app)

        profiler = cProfile.Profile() if args.profile else None
        started = time.perf_counter()
        if profiler:
            profiler.enable()
        applied = app.projector.rebuild()
        if profiler:
            profiler.disable()
        report("read models: Projector.rebuild, rating events",
               applied / (time.perf_counter() - started), f"events/s of {applied:,}", raw_rate,
               raw_name)
        rebuilt = read_models_snapshot(app)
        assert rebuilt == live, ("rebuilt read models differ", live, rebuilt)

        started = time.perf_counter()
        compared = rebuild_compared(app.projector)
        elapsed = time.perf_counter() - started
        assert compared["identical"], {t: c for t, c in compared["tables"].items()
                                       if c["only_live"] or c["only_rebuilt"]}
        report("read models: rebuild_read_models (compared), rating events",
               compared["replayed_events"] / elapsed,
               f"events/s of {compared['replayed_events']:,}", raw_rate, raw_name)

        raw = statistics.median(raw_insert_commit(settings, args.commands))
        raw_commit = "raw psycopg INSERT + COMMIT, median (read-model bench)"
        report(raw_commit, 1 / raw, "/s")
        cmd = statistics.median(command_catch_up(app, args.commands))
        report("read models: commit one rating change + its catch-up, median", 1 / cmd, "/s",
               1 / raw, raw_commit)
        print(f"load average: {os.getloadavg()}", flush=True)
        print("RESULTS " + json.dumps(results, ensure_ascii=False), flush=True)
        if profiler:
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)
            print(out.getvalue())
    finally:
        app.close()
        if not args.keep:
            with psycopg.connect(settings.conninfo("postgres"), autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{settings.dbname}" WITH (FORCE)')
    return results


if __name__ == "__main__":
    main()
