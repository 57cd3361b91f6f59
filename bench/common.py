"""Shared bench helpers: timing, percentiles, a table printer, bench databases."""
import os
import statistics
import time

import psycopg

from shared.config import DatabaseSettings
from shared.store import ensure_database

# Benchmarks run in development mode: the services they start use the public
# development keys (shared/secrets.py), unless keys are set in the environment.
os.environ.setdefault("LIANCHUANG_DEV_MODE", "1")

PG = dict(host="127.0.0.1", port=5432, user="postgres", password="postgres")


def bench_db(service: str) -> DatabaseSettings:
    """A fresh database for a bench run (dropped and recreated)."""
    settings = DatabaseSettings(dbname=f"lcbench_{service}", pool_size=4, max_overflow=6, **PG)
    with psycopg.connect(settings.conninfo("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{settings.dbname}" WITH (FORCE)')
    ensure_database(settings)
    return settings


def timed(func, n: int, warmup: int = 20) -> list[float]:
    for _ in range(warmup):
        func()
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        func()
        samples.append(time.perf_counter() - started)
    return samples


def summary(samples: list[float]) -> dict:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return {"n": len(samples), "median_ms": statistics.median(samples) * 1000,
            "p95_ms": p95 * 1000, "p99_ms": p99 * 1000}


def print_table(rows: list[tuple[str, dict, dict | None]]) -> None:
    """rows: (name, summary, baseline summary or None)."""
    print(f"{'measurement':58} {'n':>6} {'median ms':>10} {'p99 ms':>9} {'x median':>9} {'x p99':>7}")
    for name, s, base in rows:
        ratio_m = f"{s['median_ms'] / base['median_ms']:.2f}" if base else "1.00"
        ratio_p = f"{s['p99_ms'] / base['p99_ms']:.2f}" if base else "1.00"
        print(f"{name:58} {s['n']:>6} {s['median_ms']:>10.3f} {s['p99_ms']:>9.3f} "
              f"{ratio_m:>9} {ratio_p:>7}")


def small_tree(app, admin) -> tuple[dict, dict, dict]:
    """A committee, one college and one teacher branch, through the application."""
    committee = app.create_organization(admin, {"name": "学校党委", "kind": "committee"})
    college = app.create_organization(admin, {"name": "机电学院党总支", "kind": "general_branch",
                                              "parent_id": committee["id"]})
    branch = app.create_organization(admin, {"name": "教工一支部", "kind": "teacher_branch",
                                             "parent_id": college["id"]})
    return committee, college, branch
