"""JSON logs of an e2e run (结构化日志): one object a line, one command followed
from the gateway into the services and to the events it caused, and no token
or personal field (name, staff number, email) anywhere."""
import io
import json
import logging

import pytest
import requests

from shared.logs import JsonFormatter
from tests.conftest import SERVICES, token, wait_for

pytestmark = pytest.mark.e2e
NAME, STAFF_NO, EMAIL = "欧阳明远", "T7345921", "ouyang.mingyuan@example.edu.cn"
CONTACT_NAME = "组织部欧阳老师"


@pytest.fixture
def json_log():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter(service="e2e"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)


def test_one_command_followed_across_services_without_personal_fields(
        start_service, start_gateway, rpc_as, json_log):
    for name in SERVICES:
        start_service(name)
    base = start_gateway()
    admin_token = token("org_admin", sub="alice")
    headers = {"Authorization": f"Bearer {admin_token}"}

    def post(path, **body):
        response = requests.post(f"{base}/api/v1/{path}", json=body, headers=headers, timeout=30)
        assert response.status_code in (200, 400, 404), response.text
        return response

    committee = post("organizations/create_organization", name="学校党委", kind="committee").json()
    college = post("organizations/create_organization", name="机电学院党总支",
                   kind="general_branch", parent_id=committee["id"]).json()
    branch = post("organizations/create_organization", name="机电教工第一党支部",
                  kind="teacher_branch", parent_id=college["id"]).json()
    member = post("organizations/register_member", name=NAME, branch_id=branch["id"],
                  category="teacher", status="full", joined_on="2015-07-01",
                  staff_no=STAFF_NO, double_leader=True).json()
    # a refused command quoting the personal fields back must not leak them either
    refused = post("organizations/register_member", name=NAME, branch_id=committee["id"],
                   category="teacher", status="full", joined_on="2015-07-01",
                   staff_no=STAFF_NO)
    assert refused.status_code == 400
    post("notifications/register_contact", recipient_id="ouyang", name=CONTACT_NAME,
         kind="staff", email=EMAIL)
    requests.post(f"{base}/api/v1/organizations/get_tree", json={}, timeout=30,
                  headers={"Authorization": "Bearer not-a-token"})
    admin = rpc_as("org_admin")
    wait_for(lambda: admin.evaluation.consumer_status()["org_directory"]["organizations"] >= 3
             and admin.notifications.consumer_status()["org_directory"]["organizations"] >= 3,
             timeout=30, message="the directories to receive the tree")

    text = json_log.getvalue()
    lines = [json.loads(line) for line in text.splitlines()]  # every line is one JSON object
    assert lines and all({"ts", "level", "logger", "service", "message"} <= set(x) for x in lines)
    for secret in (admin_token, "eyJ", NAME, STAFF_NO, EMAIL, "ouyang.mingyuan", CONTACT_NAME):
        assert secret not in text, f"{secret!r} leaked into the logs"

    calls = [x for x in lines if x["logger"] == "lianchuang.calls"]
    gateway = next(x for x in calls if x["service"] == "gateway" and x["method"] == "call_method"
                   and x["http_status"] == 200 and x["call_id"] in
                   {c["call_id_stack"][0] for c in calls if c["method"] == "register_member"})
    assert gateway["sub"] == "alice" and gateway["role"] == "org_admin"
    registered = next(c for c in calls if c["service"] == "organizations"
                      and c["method"] == "register_member"
                      and c["call_id_stack"][0] == gateway["call_id"])
    assert registered["outcome"] == "ok" and registered["sub"] == "alice"
    assert registered["role"] == "org_admin" and registered["entrypoint"] == "rpc"
    assert registered["duration_ms"] > 0 and registered["instance"]
    # the event it caused, as evaluation and notifications applied it
    event_id = f"{member['id']}:1"
    assert registered["aggregate_id"] == member["id"]
    for service in ("evaluation", "notifications"):
        applied = [c for c in calls if c["service"] == service
                   and c.get("aggregate_id") == registered["aggregate_id"]]
        assert applied[0]["event_id"] == event_id
        assert applied and applied[0]["actor_sub"] == "alice", service
        assert applied[0]["event_type"] == "member_registered"
    assert any(c["outcome"] == "ValidationError" and c["service"] == "organizations"
               for c in calls)
    assert any(c["service"] == "gateway" and c.get("token") == "invalid" for c in calls) or \
        any(c["service"] == "gateway" and c["http_status"] == 401 for c in calls)
