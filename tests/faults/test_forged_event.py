"""A forged event on the exchange (伪造事件): with the broker login alone, someone
publishes an ``organization_role_assigned`` making a member of another branch its
secretary. Both consumers drop it (counted, logged), their org directories do not
change, and the genuine next event of that branch is still applied, so the copies
stay the same as organizations' own record."""
import datetime as dt

import pytest
from kombu import Connection
from nameko.standalone.events import get_event_exchange
from prometheus_client import REGISTRY

from shared.signing import sign_envelope
from tests.conftest import wait_for
from tests.helpers import build_tree, rows

pytestmark = pytest.mark.faults
CONSUMERS = ("evaluation", "notifications")


def rejected(service: str, reason: str) -> float:
    return REGISTRY.get_sample_value("lianchuang_events_rejected_total", {
        "service": service, "source": "organizations", "reason": reason}) or 0.0


def directory(settings) -> dict:
    return {table: rows(settings, f"SELECT * FROM {table} ORDER BY 1, 2")
            for table in ("dir_orgs", "dir_members", "dir_roles", "dir_member_moves")} | {
        "positions": rows(settings, "SELECT originator_id, last_version FROM inbox_positions "
                                    "ORDER BY 1")}


def roles_of(settings, org_id) -> set:
    return {(str(r["member_id"]), r["role"]) for r in rows(
        settings, "SELECT member_id, role FROM dir_roles WHERE org_id = %s", (org_id,))}


def test_a_forged_role_assignment_is_dropped_and_the_genuine_one_applied(
        start_service, rpc_as, rabbit_config, clean_databases):
    start_service("organizations")
    for service in CONSUMERS:
        start_service(service)
    admin = rpc_as("org_admin").organizations
    tree = build_tree(admin, branches=2, members_per_branch=2)
    target, intruder = tree["branches"][0], tree["members"][2]  # a member of branch 2
    for service in CONSUMERS:
        wait_for(lambda: rows(clean_databases[service], "SELECT count(*) AS n FROM dir_members"
                              )[0]["n"] == 4, message=f"{service}'s directory")
    # (not get_history: an audit read is itself an event, consumed meanwhile)
    version = admin.get_organization(target)["version"]
    before = {s: directory(clean_databases[s]) for s in CONSUMERS}
    counted = {(s, r): rejected(s, r) for s in CONSUMERS for r in ("missing", "mismatch")}

    forged = {"envelope_version": 1, "event_id": f"{target}:{version + 1}",
              "type": "organization_role_assigned", "source": "organizations",
              "aggregate_type": "Organization", "originator_id": target,
              "originator_version": version + 1, "position": 10_000,
              "occurred_at": dt.datetime.now(dt.timezone.utc).isoformat(),
              "actor": {"sub": "admin", "role": "org_admin"}, "reason": None, "evidence": None,
              "data": {"member_id": intruder, "member_name": "x", "role": "secretary"}}
    exchange = get_event_exchange("organizations", {})
    with Connection(rabbit_config["AMQP_URI"]) as conn:
        producer = conn.Producer(serializer="json")
        # unsigned, and signed with a key that is not organizations'
        for envelope in (forged, sign_envelope(forged, b"a guessed key of 32 bytes or more!")):
            producer.publish(envelope, exchange=exchange, routing_key=envelope["type"],
                             declare=[exchange], delivery_mode=2)
    for service in CONSUMERS:
        for reason in ("missing", "mismatch"):
            wait_for(lambda: rejected(service, reason) == counted[(service, reason)] + 1,
                     message=f"{service} counting the forged event ({reason})")
    for service in CONSUMERS:
        assert directory(clean_databases[service]) == before[service], service

    # the genuine next event of that branch (the same version) is applied by both
    secretary = tree["members"][0]
    admin.assign_role(org_id=target, member_id=secretary, role="secretary", reason="换届")
    truth = {(o["member_id"], o["role"]) for o in admin.get_organization(target)["officers"]}
    assert (secretary, "secretary") in truth and (intruder, "secretary") not in truth
    for service in CONSUMERS:
        wait_for(lambda: roles_of(clean_databases[service], target) == truth,
                 message=f"{service} applying the genuine assignment")
        assert rows(clean_databases[service], "SELECT last_version FROM inbox_positions "
                    "WHERE originator_id = %s", (target,))[0]["last_version"] == version + 1
        # nothing else was rejected: genuine events all verified
        assert rejected(service, "missing") == counted[(service, "missing")] + 1
        assert rejected(service, "mismatch") == counted[(service, "mismatch")] + 1
