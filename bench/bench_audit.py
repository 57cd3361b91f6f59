"""Verifying the hash chain over 1,000,000 stored events (target ≥ 200,000 events/s),
beside a raw sequential read of the same rows in the same run.

The store is set up as in production (``shared.dbsetup``: service role, append-only
trigger, chain trigger) and filled as the service role, the chain trigger computing
every link. Both measurements read the same rows over the same kind of server-side
cursor; the raw read only touches each row, the verify recomputes every SHA-256 link.

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
    with psycopg.connect(settings.conninfo()) as conn:
        report = verify(conn, EVENTS)
    assert report["ok"] and report["checked"] == count == total, report["problems"][:5]
    verify_s = report["seconds"]
    print(f"{'measurement':52} {'events':>10} {'seconds':>8} {'events/s':>10} {'x raw':>6}")
    print(f"{'raw sequential read (server-side cursor)':52} {count:>10,} {raw_s:>8.2f} "
          f"{count / raw_s:>10,.0f} {1:>6.2f}")
    print(f"{'verify chain (join event_chain, SHA-256 per link)':52} {count:>10,} "
          f"{verify_s:>8.2f} {count / verify_s:>10,.0f} {verify_s / raw_s:>6.2f}")
    target = 200_000
    print(f"target ≥ {target:,} events/s: {'met' if count / verify_s >= target else 'NOT met'}")
    with psycopg.connect(settings.admin().conninfo("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{settings.dbname}" WITH (FORCE)')


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
