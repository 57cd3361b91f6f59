"""A member transfer committed in organizations reaches a consumer in another
service exactly once, even though that consumer is restarted mid-stream."""
import eventlet
import pytest

from shared.errors import Forbidden
from tests.conftest import wait_for
from tests.helpers import build_tree, event_store, rows


def test_transfers_reach_notifications_once_across_a_consumer_restart(start_service, rpc_as,
                                                                      clean_databases):
    start_service("organizations")
    consumer = start_service("notifications")
    admin = rpc_as("org_admin").organizations
    tree = build_tree(admin, branches=2, members_per_branch=10)
    ndb = clean_databases["notifications"]
    wait_for(lambda: rows(ndb, "SELECT count(*) AS n FROM dir_members")[0]["n"] == 20)

    def transfer_all():
        for round_ in range(3):
            for i, member in enumerate(tree["members"]):
                target = tree["branches"][(i // 10 + round_ + 1) % 2]
                admin.transfer_member(member_id=member, to_branch_id=target,
                                      effective_on="2026-09-01")

    writer = eventlet.spawn(transfer_all)
    wait_for(lambda: rows(ndb, "SELECT count(*) AS n FROM dir_member_moves")[0]["n"] >= 10,
             timeout=20)
    consumer.kill()  # mid-stream: unacknowledged messages go back to the queue
    applied_at_kill = rows(ndb, "SELECT count(*) AS n FROM dir_member_moves")[0]["n"]
    eventlet.sleep(0.3)
    start_service("notifications")
    writer.wait()
    wait_for(lambda: rows(ndb, "SELECT count(*) AS n FROM dir_member_moves")[0]["n"] >= 60,
             timeout=30)
    eventlet.sleep(0.5)
    per_event = rows(ndb, "SELECT event_id, count(*) AS n FROM dir_member_moves GROUP BY event_id")
    assert applied_at_kill < 60, "the restart must happen mid-stream"
    assert len(per_event) == 60 and all(r["n"] == 1 for r in per_event)
    truth = {m: admin.get_member(m)["branch_id"] for m in tree["members"]}
    seen = {str(r["id"]): str(r["branch_id"]) for r in rows(ndb, "SELECT * FROM dir_members")}
    assert seen == truth


def test_a_consumer_that_joined_late_catches_up_from_the_source_log(start_service, rpc_as,
                                                                    clean_databases):
    orgs = start_service("organizations")
    admin = rpc_as("org_admin").organizations
    tree = build_tree(admin, branches=2, members_per_branch=3)
    admin.transfer_member(member_id=tree["members"][0], to_branch_id=tree["branches"][1],
                          effective_on="2026-09-01")
    app = event_store(orgs).app
    wait_for(lambda: event_store(orgs).relay.position() == app.recorder.max_notification_id())
    # notifications starts only now: everything above was published before its queue existed
    late = start_service("notifications")
    ndb = clean_databases["notifications"]
    eventlet.sleep(0.5)
    assert rows(ndb, "SELECT count(*) AS n FROM dir_members")[0]["n"] == 0
    ops = rpc_as("ops").organizations
    directory = event_store(late).app.directory
    counts = directory.backfill(lambda after, limit: ops.read_events(after_position=after,
                                                                     limit=limit), page_size=7)
    total = len(ops.read_events(after_position=0, limit=5000))
    # events the relay had not yet published when the queue appeared arrive live
    # as well; whichever path comes first applies them, the other skips them
    assert counts["applied"] + counts["duplicate"] == total and counts["applied"] > total / 2
    assert rows(ndb, "SELECT count(*) AS n FROM dir_member_moves")[0]["n"] == 1
    # live events after the catch-up apply on top; a second backfill changes nothing
    admin.transfer_member(member_id=tree["members"][1], to_branch_id=tree["branches"][1],
                          effective_on="2026-09-02")
    wait_for(lambda: rows(ndb, "SELECT count(*) AS n FROM dir_member_moves")[0]["n"] == 2)
    again = directory.backfill(lambda after, limit: ops.read_events(after_position=after,
                                                                    limit=limit))
    assert again["applied"] == 0
    assert rows(ndb, "SELECT count(*) AS n FROM dir_member_moves")[0]["n"] == 2
    seen = {str(r["id"]): str(r["branch_id"]) for r in rows(ndb, "SELECT * FROM dir_members")}
    assert seen == {m: admin.get_member(m)["branch_id"] for m in tree["members"]}


def test_ops_backfill_notifications_directory_over_rpc(start_service, rpc_as, clean_databases):
    orgs = start_service("organizations")
    admin = rpc_as("org_admin").organizations
    tree = build_tree(admin, branches=1, members_per_branch=2)
    app = event_store(orgs).app
    wait_for(lambda: event_store(orgs).relay.position() == app.recorder.max_notification_id())
    start_service("notifications")
    ops = rpc_as("ops").notifications
    assert ops.consumer_status()["org_directory"]["members"] == 0
    counts = ops.backfill_directory()
    assert counts["applied"] > 0
    status = ops.consumer_status()["org_directory"]
    assert (status["organizations"], status["members"]) == (3, 2)
    with pytest.raises(Forbidden):
        rpc_as("auditor").notifications.backfill_directory()
    assert {m["id"] for m in admin.list_members(org_id=tree["college"])["members"]} == \
        set(tree["members"])


def test_a_late_consumer_fills_gaps_from_the_source_by_itself(start_service, rpc_as,
                                                              clean_databases):
    orgs = start_service("organizations")
    admin = rpc_as("org_admin").organizations
    tree = build_tree(admin, branches=2, members_per_branch=2)
    app = event_store(orgs).app
    wait_for(lambda: event_store(orgs).relay.position() == app.recorder.max_notification_id())
    start_service("notifications")  # never saw any of the above
    ndb = clean_databases["notifications"]
    member = tree["members"][0]
    admin.transfer_member(member_id=member, to_branch_id=tree["branches"][1],
                          effective_on="2026-09-01")
    # the transfer (version 2) arrives without version 1: the consumer reads the
    # member's earlier events from organizations and applies them first
    wait_for(lambda: rows(ndb, "SELECT count(*) AS n FROM dir_member_moves")[0]["n"] == 1,
             timeout=15, message="the transfer applied after its gap was filled")
    seen = rows(ndb, "SELECT * FROM dir_members WHERE id = %s", (member,))
    assert [str(r["branch_id"]) for r in seen] == [tree["branches"][1]]
    # both branches' rosters changed too: their whole history is filled in as well
    wait_for(lambda: set(tree["branches"]) <= {
        str(r["id"]) for r in rows(ndb, "SELECT id FROM dir_orgs")}, timeout=15,
        message="both branches filled in")
    assert rows(ndb, "SELECT count(*) AS n FROM inbox_failures")[0]["n"] == 0
