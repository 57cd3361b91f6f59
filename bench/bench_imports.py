"""Import benchmark: 30,000 members from one .xlsx (preview, then apply) beside a
raw psycopg COPY of the same rows in the same run.

  raw: openpyxl read-only read + COPY into a plain table (and COPY alone)
  ours: preview (read, resolve, run the domain on every row in memory: nothing written)
        apply as the service runs it (``apply_import`` is a command: ``run_command``
        under a key): the same, then one atomic save of every aggregate with the
        Import record and the recorded answer; then the read models brought up to
        date, page by page

Run: .venv/bin/python -m bench.bench_imports [N]   (needs local PostgreSQL)
"""
import os
import warnings

warnings.filterwarnings("ignore", message=r"(?s).*Eventlet is deprecated")
import eventlet  # noqa: E402

if os.environ.get("BENCH_GREEN", "1") == "1":  # as the services run
    eventlet.monkey_patch()

import shared  # noqa: E402,F401

import datetime as dt  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import psycopg  # noqa: E402

from bench.common import bench_db  # noqa: E402
from services.organizations.application import OrganizationsApplication  # noqa: E402
from shared.identity import Caller  # noqa: E402
from shared.imports import ImportFile  # noqa: E402
from shared.spreadsheets import MAX_ROWS, Table, read_sheet, write_tables  # noqa: E402
from services.organizations.imports.sheets import MEMBERS  # noqa: E402

ADMIN = Caller("bench", "org_admin")
COLLEGES, BRANCHES_PER_COLLEGE = 12, 25
HEADERS = [c.header for c in MEMBERS][:9]


def xlsx(headers, rows) -> bytes:
    return write_tables([Table("Sheet", headers, rows)])


def tree_file() -> bytes:
    rows = [["学校党委", "学校党委", None, None]]
    for c in range(COLLEGES):
        rows.append([f"第{c:02d}学院党委", "二级学院党委", "学校党委", None])
        for b in range(BRANCHES_PER_COLLEGE):
            rows.append([f"第{c:02d}学院第{b:02d}党支部", "教师党支部" if b % 2 else "学生党支部",
                         f"第{c:02d}学院党委", None])
    return xlsx(["组织名称", "组织类型", "上级组织", "网络e支部依托"], rows)


def member_rows(n: int) -> list[list]:
    rows = []
    for i in range(n):
        c, b = i % COLLEGES, (i // COLLEGES) % BRANCHES_PER_COLLEGE
        teacher = b % 2
        rows.append([f"党员{i:05d}", f"{'T' if teacher else 'S'}{i:06d}", f"第{c:02d}学院党委",
                     f"第{c:02d}学院第{b:02d}党支部", "教师" if teacher else "学生",
                     "正式党员" if i % 5 else "预备党员",
                     dt.date(1990 + i % 35, 1 + i % 12, 1 + i % 28), None,
                     "是" if i % 97 == 0 else "否"])
    return rows


def raw_copy(settings, data: bytes, rows: list[list]) -> tuple[float, float]:
    """(read + COPY, COPY alone) seconds for the same rows into a plain table."""
    with psycopg.connect(settings.conninfo()) as conn:
        conn.execute("DROP TABLE IF EXISTS raw_members")
        conn.execute("CREATE TABLE raw_members (name text, staff_no text PRIMARY KEY, "
                     "college text, branch text, category text, status text, joined_on date, "
                     "full_on date, double_leader text)")
        conn.commit()
        started = time.perf_counter()
        sheet = read_sheet(data, MEMBERS, max_rows=MAX_ROWS)
        read = time.perf_counter() - started
        keys = [c.key for c in MEMBERS][:9]
        started = time.perf_counter()
        with conn.cursor() as curs:
            with curs.copy("COPY raw_members FROM STDIN") as copy:
                for row in sheet.rows:
                    copy.write_row([row.values[k] for k in keys])
        conn.commit()
        copied = time.perf_counter() - started
        assert conn.execute("SELECT count(*) FROM raw_members").fetchone()[0] == len(rows)
    return read + copied, copied


def main(n: int = 30_000):
    settings = bench_db("imports")
    app = OrganizationsApplication(settings)
    try:
        app.imports.apply(ADMIN, {"kind": "org_tree", "file_name": "tree.xlsx",
                                  "content": __import__("base64").b64encode(
                                      tree_file()).decode()})
        rows = member_rows(n)
        data = xlsx(HEADERS, rows)
        print(f"{n} members, {COLLEGES} colleges × {BRANCHES_PER_COLLEGE} branches; "
              f"file {len(data) / 1e6:.1f} MB")

        raw_total, raw_copy_only = raw_copy(settings, data, rows)

        cmd = ImportFile(kind="members", file_name="roster.xlsx", content="-")
        started = time.perf_counter()
        preview = app.imports.importer.preview_bytes(ADMIN, cmd, data)
        t_preview = time.perf_counter() - started
        assert preview["valid"] and preview["created"] == {"党员 member": n}, preview["errors"][:3]

        phases = {}

        def timed_phase(name, func):
            def wrapper(*args, **kwargs):
                s = time.perf_counter()
                try:
                    return func(*args, **kwargs)
                finally:
                    phases[name] = phases.get(name, 0) + time.perf_counter() - s
            return wrapper

        save_phase = "the one save (events, Import record, answer; committed)"
        catch_up = "read models caught up (after it, page by page)"
        app.save = timed_phase(save_phase, app.save)
        app.projector.catch_up = timed_phase(catch_up, app.projector.catch_up)
        started = time.perf_counter()
        applied = app.run_command("bench:import", "apply_import", ADMIN,
                                  lambda: app.imports.importer.apply_bytes(ADMIN, cmd, data))
        t_apply = time.perf_counter() - started
        assert applied["applied"]
        events = app.recorder.max_notification_id()
        assert app.query("SELECT count(*) AS n FROM member_view")[0]["n"] == n

        print(f"{'measurement':52} {'seconds':>8} {'x raw':>7}")
        print(f"{'raw: openpyxl read + psycopg COPY':52} {raw_total:8.2f} {1:7.2f}")
        print(f"{'raw: psycopg COPY alone':52} {raw_copy_only:8.2f} {'':>7}")
        print(f"{'preview (nothing written)':52} {t_preview:8.2f} {t_preview / raw_total:7.2f}")
        print(f"{'apply (one recorded import)':52} {t_apply:8.2f} {t_apply / raw_total:7.2f}")
        for name, seconds in phases.items():
            print(f"{'  of which ' + name:52} {seconds:8.2f}")
        print(f"{'  of which read, resolve, domain in memory':52} "
              f"{t_apply - phases[save_phase] - phases.get(catch_up, 0):8.2f}")
        print(f"events in the store: {events} "
              f"({events / phases[save_phase]:.0f} events/s saved, "
              f"{events / phases.get(catch_up, float('nan')):.0f} events/s projected)")
    finally:
        app.close()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 30_000)
