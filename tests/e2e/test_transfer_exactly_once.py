"""A member transfer committed in organizations reaches a consumer in another
service exactly once, even though that consumer is restarted mid-stream."""
import eventlet

from tests.conftest import wait_for
from tests.helpers import build_tree, rows


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
