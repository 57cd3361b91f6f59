"""Members benchmark (issue 8): a year of organisational-life records for 30,000
members in 1,000 branches, then the pioneer index (锋领指数) for all of them and
the derived indicators for all branches, beside raw SQL baselines.

1. Load: the records arrive as organizations would publish them
   (``branch_life_*`` and ``member_file_*`` envelopes); the first branches' go
   through evaluation's inbox one transaction per event, exactly as the consumer
   does (the rate is printed), the rest through the same effect a branch per
   transaction, so that the load takes minutes, not an hour
   (each branch's meetings — 支部党员大会 ×4, 支委会 ×12 (the committee), 党小组会
   ×12, 党课 ×4, 主题党日 ×12 — and per member a 党性体检 twice, a 民主评议, a
   pledge, and for teachers a 攻坚团队 and sometimes a 课程思政 project: about 40
   records per member).
2. The index for every member (``MembersIndex.compute_all``: the facts read
   with two queries, then the pure computation with every point's records).
   Baseline: the same inputs aggregated per member by raw SQL (no breakdown).
3. The derived indicators for every branch (every provider, branch by branch).
   Baseline: one raw GROUP BY over the attendance.
4. The year's close: the 30,000 indices published as events (not in the target).

Target: 2 + 3 under 30 s on this machine.

Run: .venv/bin/python -m bench.bench_members [--branches 1000] [--members-per-branch 30]
     [--no-close]; then ``--reuse --no-close`` measures again without reloading.
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

from bench.common import PG, bench_db  # noqa: E402
from services.evaluation.application import EvaluationApplication  # noqa: E402
from services.evaluation.members.derived import PROVIDED, Derivations  # noqa: E402
from services.evaluation.schemes import DERIVATION_PROVIDERS  # noqa: E402
from shared.config import DatabaseSettings  # noqa: E402
from shared.domain import derived_id  # noqa: E402
from shared.identity import Caller  # noqa: E402

YEAR = dt.date.today().year - 1
BRANCHES_PER_COLLEGE = 25
ADMIN = Caller("bench", "org_admin")
ACTOR = {"sub": "bench", "role": "branch_secretary"}


def seed_directory(app, branches: int, per_branch: int) -> dict:
    """The org tree and members as evaluation's directory holds them."""
    tree = {"branches": [], "members": {}, "teachers": set()}
    with app.transaction() as curs:
        committee = uuid.uuid4()
        curs.execute("INSERT INTO dir_orgs VALUES (%s,'学校党委','committee',1,NULL,NULL,"
                     "'active',now())", (committee,))
        colleges = [uuid.uuid4() for _ in range(max(1, branches // BRANCHES_PER_COLLEGE))]
        for c, college in enumerate(colleges):
            curs.execute("INSERT INTO dir_orgs VALUES (%s,%s,'general_branch',2,%s,NULL,"
                         "'active',now())", (college, f"学院{c:03d}", committee))
        for b in range(branches):
            branch = uuid.uuid4()
            teacher = b % 2 == 0
            curs.execute("INSERT INTO dir_orgs VALUES (%s,%s,%s,3,%s,NULL,'active',now())",
                         (branch, f"支部{b:04d}", "teacher_branch" if teacher else
                          "student_branch", colleges[b % len(colleges)]))
            members = [uuid.uuid4() for _ in range(per_branch)]
            curs.executemany(
                "INSERT INTO dir_members (id, name, branch_id, category, status, "
                "double_leader, active, updated_at) VALUES (%s,%s,%s,%s,'full',%s,true,now())",
                [(m, f"党员{b}-{i}", branch, "teacher" if teacher else "student", i == 0)
                 for i, m in enumerate(members)])
            curs.execute("INSERT INTO dir_roles VALUES (%s,%s,'secretary')", (branch, members[0]))
            tree["branches"].append(str(branch))
            tree["members"][str(branch)] = [str(m) for m in members]
            if teacher:
                tree["teachers"].update(str(m) for m in members)
    return tree


def envelope(aggregate_id, version: int, kind: str, data: dict) -> dict:
    return {"envelope_version": 1, "event_id": f"{aggregate_id}:{version}", "type": kind,
            "source": "organizations", "aggregate_type": kind.split("_")[0],
            "originator_id": str(aggregate_id), "originator_version": version,
            "position": None, "occurred_at": dt.datetime.now(dt.timezone.utc).isoformat(),
            "actor": ACTOR, "reason": None, "evidence": None, "data": data}


def day(rng, month=None) -> str:
    month = month or rng.randint(1, 12)
    return dt.date(YEAR, month, rng.randint(1, 28)).isoformat()


def branch_events(rng, branch: str, members: list[str]):
    life = derived_id("branch-life", branch)
    yield envelope(life, 1, "branch_life_opened", {"branch_id": branch})
    version = 1
    plan = [("general_meeting", m) for m in (3, 6, 9, 12)] + \
           [("committee_meeting", m) for m in range(1, 13)] + \
           [("group_meeting", m) for m in range(1, 13)] + \
           [("party_lecture", m) for m in (3, 6, 9, 12)] + \
           [("theme_day", m) for m in range(1, 13)]
    for kind, month in plan:
        listed = members[:5] if kind == "committee_meeting" else members
        absent = [m for m in listed if rng.random() < 0.06]
        attendees = [m for m in listed if m not in absent]
        version += 1
        yield envelope(life, version, "branch_life_meeting_recorded", {
            "record_id": str(uuid.uuid4()), "branch_id": branch, "kind": kind,
            "held_on": day(rng, month), "topic": f"{month}月{kind}",
            "form": "volunteer" if kind == "theme_day" else None, "attendees": attendees,
            "absentees": [{"member_id": m, "kind": rng.choice(["leave", "absent"]),
                           "note": "出差"} for m in absent]})


def member_events(rng, member: str, branch: str, teacher: bool):
    file_id = derived_id("member-file", member)
    yield envelope(file_id, 1, "member_file_opened", {"member_id": member})
    records = [("checkup", {"period": f"{YEAR}H1", "items": {"理想信念": "坚定"},
                            "result": rng.choice(["excellent", "good", "good", "fair"])}),
               ("checkup", {"period": f"{YEAR}H2", "items": {"纪律规矩": "严守"},
                            "result": rng.choice(["excellent", "good", "good", "poor"])}),
               ("appraisal", {"grade": rng.choices(
                   ["excellent", "qualified", "basically_qualified", "unqualified"],
                   [20, 75, 4, 1])[0]}),
               ("pledge", {"content": "带头攻坚", "status": rng.choice(
                   ["fulfilled", "fulfilled", "unfulfilled"])})]
    if teacher:
        if rng.random() < 0.8:
            records.append(("team", {"team": "攻坚团队", "role": None}))
        if rng.random() < 0.4:
            records.append(("course_project", {"title": "课程思政示范课", "status": "completed",
                                               "professional_course": True}))
    if rng.random() < 0.002:
        records.append(("violation", {"line": "red_line", "description": "违纪",
                                      "finding": "纪委办"}))
    for version, (kind, details) in enumerate(records, start=2):
        on = day(rng)
        yield envelope(file_id, version, "member_file_recorded", {
            "record_id": str(uuid.uuid4()), "member_id": member, "branch_id": branch,
            "kind": kind, "on": on, "year": YEAR, "details": details})


def load(app, tree: dict, per_event_branches: int, seed: int = 8) -> None:
    """The first branches' events through the inbox one by one (one transaction
    each, as the consumer applies them); the rest with the same effect, a
    branch's events (its meetings and its members' records) per transaction."""
    rng = random.Random(seed)
    inbox, apply = app.directory.inbox, app.directory.apply

    def events(branch):
        members = tree["members"][branch]
        yield from branch_events(rng, branch, members)
        for member in members:
            yield from member_events(rng, member, branch, member in tree["teachers"])

    single, batched = tree["branches"][:per_event_branches], tree["branches"][per_event_branches:]
    count, started = 0, time.perf_counter()
    for branch in single:
        for env in events(branch):
            inbox.process(env, apply)
            count += 1
    elapsed = time.perf_counter() - started
    if count:
        print(f"load, one inbox transaction per event: {count} events in {elapsed:.1f} s "
              f"({count / elapsed:.0f} events/s)")
    count, started = 0, time.perf_counter()
    for branch in batched:
        with app.transaction() as curs:
            for env in events(branch):
                apply(curs, env)
                count += 1
    elapsed = time.perf_counter() - started
    if count:
        print(f"load, the same effect with a branch's events per transaction: {count} events "
              f"in {elapsed:.1f} s ({count / elapsed:.0f} events/s)")


def timed(label: str, func):
    started = time.perf_counter()
    value = func()
    elapsed = time.perf_counter() - started
    print(f"{label:70} {elapsed:9.2f} s")
    return value, elapsed


def raw_index_baseline(app):
    return app.query(
        "SELECT member_id, count(*) FILTER (WHERE status = 'attended') AS attended, "
        "count(*) FILTER (WHERE status = 'absent') AS absent, count(*) AS listed "
        "FROM pi_attendance WHERE year = %s GROUP BY member_id", (YEAR,)), app.query(
        "SELECT member_id, kind, count(*) AS n FROM pi_records WHERE year = %s "
        "GROUP BY member_id, kind", (YEAR,))


def raw_derived_baseline(app):
    return app.query(
        "SELECT branch_id, kind, count(DISTINCT record_id) AS held, "
        "count(*) FILTER (WHERE status = 'attended') AS attended, count(*) AS listed "
        "FROM pi_attendance WHERE year = %s GROUP BY branch_id, kind", (YEAR,))


def main(branches: int, per_branch: int, close: bool, per_event_branches: int,
         reuse: bool) -> None:
    if reuse:  # the records a previous run loaded (and did not close)
        settings = DatabaseSettings(dbname="lcbench_evaluation", pool_size=4, max_overflow=6,
                                    **PG)
    else:
        settings = bench_db("evaluation")
    app = EvaluationApplication(settings)
    try:
        if reuse:
            tree = {"branches": [r["id"] for r in app.query(
                "SELECT id::text AS id FROM dir_orgs WHERE level = 3 ORDER BY name")]}
            branches = len(tree["branches"])
        else:
            tree = seed_directory(app, branches, per_branch)
            load(app, tree, per_event_branches)
        members = app.query_one("SELECT count(*) AS n FROM dir_members")["n"]
        rows = app.query_one("SELECT (SELECT count(*) FROM pi_attendance) AS a, "
                             "(SELECT count(*) FROM pi_records) AS r")
        print(f"{rows['a'] + rows['r']} member records "
              f"({(rows['a'] + rows['r']) / members:.1f} per member)")
        app.query("ANALYZE")
        print(f"{'measurement':70} {'elapsed':>11}")
        timed("raw baseline: inputs aggregated per member (SQL GROUP BY)",
              lambda: raw_index_baseline(app))
        results, index_s = timed(f"pioneer index for all {members} members (with breakdown)",
                                 lambda: app.members.compute_all(YEAR))
        assert len(results) == members
        timed("raw baseline: attendance per branch and kind (SQL GROUP BY)",
              lambda: raw_derived_baseline(app))
        derived, derived_s = timed(f"derived indicators for all {branches} branches "
                                   f"({len(PROVIDED)} sources each, set-based)",
                                   lambda: Derivations(app).derive_all(YEAR))
        cycle = {"cycle_id": None, "period": str(YEAR)}
        sample = tree["branches"][:20]
        _, one_s = timed(f"  for comparison: one branch at a time, {len(sample)} branches "
                         "(as a submission asks)",
                         lambda: [{s: DERIVATION_PROVIDERS[s](b, cycle) for s in PROVIDED}
                                  for b in sample])
        total = index_s + derived_s
        print(f"{'index for all + derived for all (target < 30 s)':70} {total:9.2f} s")
        scores = sorted(r[0]["score"] for r in results.values())
        print(f"index: median {scores[len(scores) // 2]}, min {scores[0]}, max {scores[-1]}, "
              f"zeroed {sum(1 for r in results.values() if r[0]['zeroed'])}")
        sample = derived[tree["branches"][0]]
        print("derived, first branch: " + ", ".join(
            f"{k}={v['fraction'] if v else None}" for k, v in sample.items()))
        if close:
            out, _ = timed(f"year's close: {members} indices published as events",
                           lambda: app.members.close_year(ADMIN, {"year": YEAR}))
            print(f"published {out['published']}, zeroed {out['zeroed']}")
    finally:
        app.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--branches", type=int, default=1000)
    parser.add_argument("--members-per-branch", type=int, default=30)
    parser.add_argument("--per-event-branches", type=int, default=10,
                        help="branches whose events go through the inbox one by one")
    parser.add_argument("--no-close", action="store_true")
    parser.add_argument("--reuse", action="store_true",
                        help="measure on the records a previous --no-close run loaded")
    args = parser.parse_args()
    main(args.branches, args.members_per_branch, not args.no_close, args.per_event_branches,
         args.reuse)
