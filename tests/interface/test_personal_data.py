"""Personal data stays off the bus (个人信息): what any subscriber of the exchanges
(or a reader of the log RPCs) sees carries no ID number, email address or
webhook URL; the auditors' history keeps the full record."""
import json

import pytest
from kombu import Connection, Queue
from nameko.standalone.events import get_event_exchange

from shared.errors import Forbidden
from tests.conftest import wait_for
from tests.interface.test_notifications_rpc import notifications_config

STAFF_NO = "T20260917"
EMAILS = ("zhang.sanfeng@example.edu", "zsf.new@example.edu")
WEBHOOK = "https://robot.example.edu/hook/secret-token-42"


def test_no_id_number_email_or_webhook_url_on_the_exchanges(start_service, rpc_as,
                                                            rabbit_config):
    start_service("organizations")
    start_service("notifications", **notifications_config())
    taps = {source: Queue(f"test-privacy-tap-{source}",
                          exchange=get_event_exchange(source, {}), routing_key="#",
                          durable=False) for source in ("organizations", "notifications")}
    admin = rpc_as("org_admin", sub="zuzhibu").organizations
    with Connection(rabbit_config["AMQP_URI"]) as conn:
        for queue in taps.values():
            queue(conn.default_channel).declare()
        committee = admin.create_organization(name="学校党委", kind="committee")
        college = admin.create_organization(name="机电学院党总支", kind="general_branch",
                                            parent_id=committee["id"])
        branch = admin.create_organization(name="教工一支部", kind="teacher_branch",
                                           parent_id=college["id"])
        member = admin.register_member(name="张三丰", branch_id=branch["id"], category="teacher",
                                       status="full", joined_on="2005-07-01", staff_no=STAFF_NO)
        admin.assign_role(org_id=branch["id"], member_id=member["id"], role="secretary")
        notifications = rpc_as("org_admin", sub="zuzhibu").notifications
        notifications.register_contact(recipient_id=member["id"], name="张三丰",
                                       email=EMAILS[0], webhook_url=WEBHOOK)
        notifications.update_contact(recipient_id=member["id"], email=EMAILS[1],
                                     groups=["org_admin"])
        received = []

        def drain():
            for queue in taps.values():
                while (message := queue(conn.default_channel).get(no_ack=True)) is not None:
                    received.append(message.payload)
            return {"member_registered", "organization_role_assigned", "contact_registered",
                    "contact_changed"} <= {e["type"] for e in received}

        wait_for(drain, timeout=15, message="the events on both exchanges")

    by_type = {e["type"]: e for e in received}
    # ids, not personal details; the name stays where notifications needs it (…同志)
    assert by_type["member_registered"]["data"]["name"] == "张三丰"
    assert "staff_no" not in by_type["member_registered"]["data"]
    assert by_type["organization_role_assigned"]["data"] == {"member_id": member["id"],
                                                             "role": "secretary"}
    assert by_type["contact_registered"]["data"]["recipient_id"] == member["id"]
    assert by_type["contact_changed"]["data"] == {"changes": {"groups": ["org_admin"]}}
    ops_org = rpc_as("ops").organizations
    # what gap filling and backfill read is the same public form
    logged = ops_org.read_events(after_position=0, limit=5000) + \
        ops_org.read_aggregate_events(aggregate_id=member["id"], after_version=0)
    for text in (json.dumps(received, ensure_ascii=False), json.dumps(logged, ensure_ascii=False)):
        for secret in (STAFF_NO, *EMAILS, WEBHOOK, "staff_no", "email", "webhook_url"):
            assert secret not in text

    # the auditors' history keeps the full record
    auditor = rpc_as("auditor", sub="jiwei")
    history = auditor.organizations.get_history(member["id"])
    assert history[0]["data"]["staff_no"] == STAFF_NO
    assigned = auditor.organizations.get_history(branch["id"])
    assert any(h["data"].get("member_name") == "张三丰" for h in assigned
               if h["type"] == "organization_role_assigned")
    contact = auditor.notifications.get_contact_history(recipient_id=member["id"])
    assert [h["type"] for h in contact] == ["contact_registered", "contact_changed"]
    assert (contact[0]["data"]["email"], contact[0]["data"]["webhook_url"]) == (EMAILS[0], WEBHOOK)
    assert contact[1]["data"]["changes"]["email"] == EMAILS[1]
    assert contact[1]["actor"]["sub"] == "zuzhibu"
    assert [h["label"] for h in contact] == ["登记联系人", "联系人信息变更"]
    # that look at a person's contact details is itself recorded, for 组织部 to read
    reads = rpc_as("org_admin").notifications.list_audit_reads(subject_id=member["id"])
    assert [(r["reader"]["sub"], r["query"]) for r in reads] == [("jiwei", "get_history")]
    with pytest.raises(Forbidden):
        auditor.notifications.list_audit_reads()
    # the owning services still use them
    assert rpc_as("org_admin").organizations.get_member(member["id"])["staff_no"] == STAFF_NO
    assert notifications.get_contact(recipient_id=member["id"])["email"] == EMAILS[1]
