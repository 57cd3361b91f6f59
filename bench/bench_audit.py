"""Verifying the hash chain over 1,000,000 stored events (target ≥ 200,000 events/s),
beside a raw sequential read of the same rows in the same run.

The store is set up as in production (``shared.dbsetup``: service role, append-only
trigger, chain trigger) and filled as the service role, the chain trigger computing
every link. The raw read fetches every event over a binary server-side cursor and
only touches each row; the default verify has PostgreSQL recompute every SHA-256
link and return only broken ones; ``--independent`` reads every event and link the
way the raw read does and hashes each in Python.

    python -m bench.bench_audit [events]
"""
import sys
import time
from dataclasses import replace

import shared  # noqa: F401
import psycopg
from psycopg.rows import tuple_row

from bench.common import bench_db
from shared.chain import verify
from shared.dbsetup import service_role, setup_service_database

EVENTS = "organizations_events"
BATCH = 50_000


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


def main(total: int = 1_000_000):
    settings = replace(bench_db("audit"), role=service_role("organizations"))
    setup_service_database(settings, "organizations")
    print(f"filling {total:,} events (chain trigger on)…", flush=True)
    seconds = fill(settings, total)
    print(f"  filled in {seconds:.1f}s ({total / seconds:,.0f} events/s with the chain trigger)")
    with psycopg.connect(settings.admin().conninfo(), autocommit=True) as conn:
        conn.execute(f"VACUUM ANALYZE {EVENTS}")
        conn.execute("VACUUM ANALYZE event_chain")
    raw_read(settings)  # warm the cache for both
    count, raw_s = raw_read(settings)
    seconds = {}
    for independent in (False, True):
        with psycopg.connect(settings.conninfo()) as conn:
            report = verify(conn, EVENTS, independent=independent)
        assert report["ok"] and report["checked"] == count == total, report["problems"][:5]
        seconds[independent] = report["seconds"]
    print(f"{'measurement':58} {'events':>10} {'seconds':>8} {'events/s':>10} {'x raw':>6}")
    rows = [("raw sequential read of the events (server-side cursor)", raw_s),
            ("verify, links recomputed in PostgreSQL (default)", seconds[False]),
            ("verify --independent, every event hashed in Python", seconds[True])]
    for name, s in rows:
        print(f"{name:58} {count:>10,} {s:>8.2f} {count / s:>10,.0f} {s / raw_s:>6.2f}")
    target = 200_000
    print(f"target ≥ {target:,} events/s (default verify): "
          f"{'met' if count / seconds[False] >= target else 'NOT met'}")
    with psycopg.connect(settings.admin().conninfo("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{settings.dbname}" WITH (FORCE)')


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
