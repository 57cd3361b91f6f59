"""Parking benchmark: what applying each projector batch in a savepoint (so that
one failing event can be parked) costs beside a raw replay without it.

  raw replay: every event applied to the read models in one transaction, no
  savepoint, no parked-event lookup (the projector before parking)    vs
  rebuild_read_models with nothing parked (one savepoint per batch)   and
  rebuild with one parked record whose events are spread over the log (every
  batch then goes event by event, a savepoint each: the worst case).

Run: .venv/bin/python -m bench.bench_parking [EVENTS] [RUNS]   (needs local PostgreSQL)
"""
import warnings

warnings.filterwarnings("ignore", message=r"(?s).*Eventlet is deprecated")
import eventlet  # noqa: E402

eventlet.monkey_patch()

import shared  # noqa: E402,F401

import sys  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402

from bench.common import bench_db, print_table, small_tree, summary  # noqa: E402
from services.organizations.application import OrganizationsApplication  # noqa: E402
from services.organizations.domain import Member  # noqa: E402
from shared.identity import Caller  # noqa: E402

ACTOR = {"sub": "bench", "role": "org_admin"}


def fill(app, branch_id: str, events: int) -> Member:
    """``events`` member registrations, with one poisoned member's changes spread
    among them (one every 400 events, so every batch of 500 holds one)."""
    poisoned = Member(id=uuid.uuid4(), name="毒\x00药", branch_id=uuid.UUID(branch_id),
                      category="teacher", status="full", joined_on="2010-07-01",
                      full_on="2010-07-01", double_leader=False, staff_no=None, actor=ACTOR)
    app.save(poisoned)
    written = 1
    while written < events:
        members = [Member(id=uuid.uuid4(), name=f"党员{written + i}",
                          branch_id=uuid.UUID(branch_id), category="teacher", status="full",
                          joined_on="2010-07-01", full_on="2010-07-01", double_leader=False,
                          staff_no=None, actor=ACTOR) for i in range(399)]
        poisoned.set_double_leader(not poisoned.double_leader, ACTOR)
        app.save(*members, poisoned)
        written += 400
    return poisoned


class _Discard(Exception):
    pass


def raw_replay(app, poisoned: Member) -> float:
    """Without parking a poisoned event would stop the replay: leave it out."""
    projector = app.projector
    started = time.perf_counter()
    try:
        with app.transaction() as curs:
            for projection in projector.projections:
                for table in projection.tables:
                    curs.execute(f"TRUNCATE {table} CASCADE")
            position = 0
            while notifications := app.notifications_in(curs, position, projector.batch_size):
                for notification in notifications:
                    if (notification.originator_id, notification.originator_version) == (
                            poisoned.id, 1):
                        continue
                    event = app.mapper.to_domain_event(notification)
                    for projection in projector.projections:
                        projection.apply(curs, event)
                position = notifications[-1].id
            elapsed = time.perf_counter() - started
            raise _Discard  # measure only: the read models stay as they were
    except _Discard:
        return elapsed


def rebuild(app, caller) -> float:
    started = time.perf_counter()
    app.rebuild_read_models(caller)
    return time.perf_counter() - started


def main(events: int = 20_000, runs: int = 5):
    app = OrganizationsApplication(bench_db("parking"))
    admin = Caller("bench", "org_admin")
    branch = small_tree(app, admin)[2]
    poisoned = fill(app, branch["id"], events)
    total = app.recorder.max_notification_id()
    app.projector.catch_up()
    parked = app.list_parked(admin, {"status": "parked"})["items"]
    assert [p["originator_id"] for p in parked] == [str(poisoned.id)]

    # Healthy log: the poisoned member's first event skipped, nothing held.
    # Worst case: it parked, its later events held in every batch. Interleaved
    # runs, so that drift on a shared machine falls on all three alike.
    app.skip_parked(admin, {"parked_id": parked[0]["parked_id"], "reason": "bench"})
    head = f"{poisoned.id}:1"
    raw, healthy, worst = [], [], []
    for _ in range(runs):
        raw.append(raw_replay(app, poisoned))
        with app.transaction() as curs:
            curs.execute("UPDATE parked_events SET status = 'skipped' WHERE event_id = %s",
                         (head,))
        healthy.append(rebuild(app, admin))
        with app.transaction() as curs:
            curs.execute("UPDATE parked_events SET status = 'parked' WHERE event_id = %s",
                         (head,))
        worst.append(rebuild(app, admin))
    raw, healthy, worst = summary(raw), summary(healthy), summary(worst)
    app.close()
    print(f"\nParking benchmark: replaying {total} events, {runs} runs each "
          f"(ratios against the raw replay)\n")
    print_table([("raw replay, no savepoints (baseline)", raw, None),
                 ("rebuild_read_models, nothing parked", healthy, raw),
                 ("rebuild, one parked record held in every batch", worst, raw)])


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
