"""Fault: an event that poisons a projection and the consumers of other services.

A member whose name holds a NUL (saved past command validation, as an older
event or another writer could) cannot be written by organizations' read models
nor by evaluation's and notifications' org directories. It is parked in each,
visibly (``consumer_status``, ``list_parked``, ``/metrics``); that member's next
event waits behind it; everything else is applied exactly once and in order;
ops skip (with a reason) and the held event applies.
"""
import uuid

import pytest
import requests

from services.organizations.domain import Member
from shared.errors import Forbidden, ValidationError
from tests.conftest import wait_for
from tests.helpers import build_tree, event_store, rows

pytestmark = pytest.mark.faults

CONSUMERS = {"CONSUMERS": {"max_attempts": 3, "failure_pause": 0.1}}


def metrics_text(container) -> str:
    return requests.get(f"http://{container.config['WEB_SERVER_ADDRESS']}/metrics",
                        timeout=5).text


def gauge(text: str, service: str, consumer: str, status: str) -> float | None:
    prefix = (f'lianchuang_parked_events{{consumer="{consumer}",service="{service}",'
              f'status="{status}"}} ')
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix):])
    return None


def test_a_poison_event_is_parked_and_everything_else_applies_once_in_order(
        start_service, rpc_as, clean_databases):
    orgs = start_service("organizations")
    evaluation = start_service("evaluation", **CONSUMERS)
    notifications = start_service("notifications", **CONSUMERS)
    admin = rpc_as("org_admin", sub="zuzhibu").organizations
    tree = build_tree(admin, branches=2, members_per_branch=2)

    # the poison: saved straight through organizations' store
    app = event_store(orgs).app
    actor = {"sub": "importer", "role": "org_admin"}
    poisoned = Member(id=uuid.uuid4(), name="毒\x00药", branch_id=uuid.UUID(tree["branches"][0]),
                      category="teacher", status="full", joined_on="2010-07-01",
                      full_on="2010-07-01", double_leader=False, staff_no=None, actor=actor)
    app.save(poisoned)
    poisoned.set_double_leader(True, actor)  # its next event must wait behind it
    app.save(poisoned)
    app.projector.catch_up()

    # everything else keeps going, in the same branch too
    later = [admin.register_member(name=f"后来者{i}", branch_id=tree["branches"][i % 2],
                                   category="student", status="probationary",
                                   joined_on="2025-06-01")["id"] for i in range(4)]
    for member in tree["members"][:2]:
        admin.transfer_member(member_id=member, to_branch_id=tree["branches"][1],
                              effective_on="2026-09-01", reason="工作调动")
    admin.set_double_leader(member_id=later[0], double_leader=True)

    consumers = {"evaluation": (rpc_as("ops").evaluation, evaluation),
                 "notifications": (rpc_as("ops").notifications, notifications)}
    for name, (ops, _) in consumers.items():
        wait_for(lambda: (ops.consumer_status()["org_directory"]["parked"]["held"] == 1
                          and ops.consumer_status()["org_directory"]["members"] == 8),
                 timeout=30, message=f"{name} parks the poison and applies the rest")

    # visible: consumer status (with the error), list_parked, metrics
    org_ops = rpc_as("ops").organizations
    read_models = org_ops.consumer_status()["read_models"]["parked"]
    assert (read_models["parked"], read_models["held"]) == (1, 1)
    assert "NUL" in read_models["events"][0]["error"]
    assert admin.list_members(org_id=tree["committee"])["total"] == 8
    for name, (ops, container) in consumers.items():
        status = ops.consumer_status()["org_directory"]
        assert status["failures"] == []
        head, held = status["parked"]["events"]
        assert (head["status"], head["event_id"], head["attempts"]) == (
            "parked", f"{poisoned.id}:1", 1)
        assert "NUL" in head["error"]
        assert (held["status"], held["waiting_behind"]) == ("held", head["event_id"])
        text = metrics_text(container)
        assert gauge(text, name, f"{name}.org_directory", "parked") == 1.0
        assert gauge(text, name, f"{name}.org_directory", "held") == 1.0
        assert "lianchuang_events_parked_total{" in text
    assert gauge(metrics_text(orgs), "organizations", "read_models", "parked") == 1.0

    # every other event applied exactly once and in order, by both consumers
    source = rows(clean_databases["organizations"],
                  "SELECT originator_id::text AS id, max(originator_version) AS version "
                  f"FROM {app.recorder.events_table_name} GROUP BY 1")
    expected = {r["id"]: r["version"] for r in source if r["id"] != str(poisoned.id)}
    for name in consumers:
        db = clean_databases[name]
        applied = {r["id"]: r["version"] for r in rows(
            db, "SELECT originator_id::text AS id, last_version AS version FROM inbox_positions "
                "WHERE consumer = %s", (f"{name}.org_directory",))}
        assert applied.pop(str(poisoned.id), 0) == 0
        for aggregate, version in applied.items():
            assert version == expected.get(aggregate, version)
        members = {str(r["id"]) for r in rows(db, "SELECT id FROM dir_members")}
        assert members == set(tree["members"]) | set(later)
        moves = rows(db, "SELECT event_id, count(*) AS n FROM dir_member_moves GROUP BY 1")
        assert len(moves) == 2 and all(m["n"] == 1 for m in moves)

    # ops skip it, with a reason; the held event applies after it
    ops, container = consumers["evaluation"]
    head_id = ops.consumer_status()["org_directory"]["parked"]["events"][0]["parked_id"]
    with pytest.raises(Forbidden):
        rpc_as("auditor").evaluation.skip_parked(parked_id=head_id, reason="看看")
    with pytest.raises(ValidationError):
        ops.skip_parked(parked_id=head_id)
    result = ops.skip_parked(parked_id=head_id, reason="姓名含NUL, 已在组织部更正")
    assert (result["skipped"], result["applied"], result["still_open"]) == (1, 1, 0)
    assert result["parked"]["resolved_by"] == "tester"
    assert ops.consumer_status()["org_directory"]["parked"]["events"] == []
    assert gauge(metrics_text(container), "evaluation", "evaluation.org_directory",
                 "parked") == 0.0
    last = rows(clean_databases["evaluation"], "SELECT last_version FROM inbox_positions "
                "WHERE consumer = 'evaluation.org_directory' AND originator_id = %s",
                (str(poisoned.id),))
    assert last == [{"last_version": 2}]
    listed = ops.list_parked(status="skipped")["items"]
    assert [(i["event_id"], i["actions"][0]["reason"]) for i in listed] == [
        (f"{poisoned.id}:1", "姓名含NUL, 已在组织部更正")]
    # organizations' read models: skipped too, the held one applied
    org_head = read_models["events"][0]["parked_id"]
    assert org_ops.skip_parked(parked_id=org_head, reason="姓名含NUL")["applied"] == 1
    assert org_ops.rebuild_read_models()["replayed_events"] > 0
    assert org_ops.consumer_status()["read_models"]["parked"]["parked"] == 0
