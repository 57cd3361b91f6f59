"""The HTTP gateway (HTTP 网关): the OpenAPI document, auth and typed errors as statuses."""
import json
import uuid

import requests

from services.organizations.application import CreateOrganization, RegisterMember
from tests.conftest import token
from shared.identity import mint_token


def post(base, path, body=None, tok=None, **kwargs):
    headers = {"Authorization": f"Bearer {tok}"} if tok else {}
    return requests.post(f"{base}/api/v1/{path}", json=body, headers=headers, timeout=30,
                         **kwargs)



def test_openapi_document_is_built_from_the_command_models(gateway):
    doc = requests.get(f"{gateway}/api/v1/openapi.json", timeout=30).json()
    assert doc["openapi"] == "3.1.0"
    op = doc["paths"]["/api/v1/organizations/create_organization"]["post"]
    schema = op["requestBody"]["content"]["application/json"]["schema"]
    expected = CreateOrganization.model_json_schema()
    assert schema["properties"].keys() == expected["properties"].keys() | {"command_id"}
    assert schema["required"] == expected["required"] == ["name", "kind"]
    assert schema["additionalProperties"] is False
    member = doc["paths"]["/api/v1/organizations/register_member"]["post"]
    assert member["requestBody"]["content"]["application/json"]["schema"]["title"] == \
        RegisterMember.__name__
    # queries are described from their signatures; every documented service is there
    tree = doc["paths"]["/api/v1/organizations/get_organization"]["post"]
    assert tree["requestBody"]["content"]["application/json"]["schema"]["required"] == ["org_id"]
    assert "/api/v1/evaluation/star_distribution" in doc["paths"]
    assert "/api/v1/notifications/list_inbox" in doc["paths"]
    assert not any(p.endswith("/describe_api") for p in doc["paths"])
    assert {"400", "401", "403", "404", "409", "413", "503"} <= set(op["responses"])
    # nested models land in components under the service's name
    submit = doc["paths"]["/api/v1/evaluation/open_cycle"]["post"]
    refs = json.dumps(submit)
    for ref in [r.split('"')[0] for r in refs.split("#/components/schemas/")[1:]]:
        assert ref in doc["components"]["schemas"], ref


def test_a_call_through_the_gateway_is_the_rpc_call(gateway, rpc_as):
    admin = token("org_admin", sub="alice")
    created = post(gateway, "organizations/create_organization",
                   {"name": "学校党委", "kind": "committee"}, admin)
    assert created.status_code == 200, created.text
    org = created.json()
    got = post(gateway, "organizations/get_organization", {"org_id": org["id"]}, admin)
    assert got.status_code == 200
    assert got.json() == rpc_as("org_admin").organizations.get_organization(org["id"])
    assert got.headers["Content-Type"].startswith("application/json")


def test_command_id_makes_a_repeated_http_command_apply_once(gateway):
    admin = token("org_admin")
    body = {"name": "学校党委", "kind": "committee", "command_id": "portal-7f3a"}
    first = post(gateway, "organizations/create_organization", body, admin)
    again = post(gateway, "organizations/create_organization", body, admin)
    assert first.status_code == again.status_code == 200
    assert first.json()["id"] == again.json()["id"]
    tree = post(gateway, "organizations/get_tree", {}, admin).json()
    assert len(tree) == 1
    bad = post(gateway, "organizations/create_organization", {**body, "command_id": "?"}, admin)
    assert bad.status_code == 400 and bad.json()["fields"][0]["field"] == "command_id"


def test_authentication(gateway):
    body = {"name": "学校党委", "kind": "committee"}
    missing = post(gateway, "organizations/create_organization", body)
    assert missing.status_code == 401 and missing.json()["error"] == "Unauthenticated"
    forged = post(gateway, "organizations/create_organization", body,
                  mint_token("another-secret-entirely-0123456789", sub="x", role="org_admin"))
    assert forged.status_code == 401
    expired = post(gateway, "organizations/create_organization", body,
                   token("org_admin", ttl=-10))
    assert expired.status_code == 401 and "expired" in expired.json()["message"]
    basic = requests.post(f"{gateway}/api/v1/organizations/list_departments", json={},
                          headers={"Authorization": "Basic dXNlcjpwYXNz"}, timeout=30)
    assert basic.status_code == 401


def test_typed_errors_become_statuses(gateway):
    admin = token("org_admin")
    bad = post(gateway, "organizations/create_organization", {"kind": "nonsense"}, admin)
    assert bad.status_code == 400
    fields = {f["field"] for f in bad.json()["fields"]}
    assert {"name", "kind"} <= fields
    # the service's own pydantic check speaks the same way (a rule beyond the schema)
    dup = post(gateway, "organizations/create_organization",
               {"name": "学校党委", "kind": "college"}, admin)
    assert dup.status_code == 400 and dup.json()["fields"]
    forbidden = post(gateway, "organizations/create_organization",
                     {"name": "学校党委", "kind": "committee"}, token("auditor"))
    assert forbidden.status_code == 403 and forbidden.json()["error"] == "Forbidden"
    missing = post(gateway, "organizations/get_organization", {"org_id": str(uuid.uuid4())},
                   admin)
    assert missing.status_code == 404 and missing.json()["error"] == "NotFound"
    assert post(gateway, "organizations/no_such_method", {}, admin).status_code == 404
    assert post(gateway, "payroll/get_tree", {}, admin).status_code == 404
    not_uuid = post(gateway, "organizations/get_path", {"org_id": "not-a-uuid"}, admin)
    assert not_uuid.status_code == 400 and not_uuid.json()["fields"][0]["field"] == "org_id"
    not_json = requests.post(f"{gateway}/api/v1/organizations/get_tree", data=b"{nope",
                             headers={"Authorization": f"Bearer {admin}",
                                      "Content-Type": "application/json"}, timeout=30)
    assert not_json.status_code == 400 and not_json.json()["fields"][0]["field"] == "body"
    array = post(gateway, "organizations/get_tree", [1, 2], admin)
    assert array.status_code == 400


def test_request_size_limit(start_service, start_gateway):
    start_service("organizations")
    base = start_gateway(max_body_bytes=2048, services=["organizations"])
    big = {"name": "党" * 2000, "kind": "committee"}
    response = post(base, "organizations/create_organization", big, token("org_admin"))
    assert response.status_code == 413 and response.json()["error"] == "PayloadTooLarge"
    small = post(base, "organizations/list_departments", {}, token("org_admin"))
    assert small.status_code == 200


def test_a_service_that_is_not_running_is_503(start_service, start_gateway):
    start_service("organizations")
    base = start_gateway()  # evaluation and notifications are not running
    response = post(base, "evaluation/list_cycles", {}, token("org_admin"))
    assert response.status_code == 503 and response.json()["error"] == "Unavailable"
    assert requests.get(f"{base}/api/v1/openapi.json", timeout=30).status_code == 503
    assert post(base, "organizations/list_departments", {}, token("org_admin")).status_code == 200


def test_dashboard_login_cookie_and_refusals(gateway):
    first = requests.get(f"{gateway}/dashboard", allow_redirects=False, timeout=30)
    assert first.status_code == 303 and first.headers["Location"].endswith("/login")
    form = requests.get(f"{gateway}/login", timeout=30)
    assert "令牌" in form.text and "<script" not in form.text
    assert "default-src 'none'" in form.headers["Content-Security-Policy"]
    bad = requests.post(f"{gateway}/login", data={"token": "nonsense"}, allow_redirects=False,
                        timeout=30)
    assert bad.status_code == 401 and "令牌无效" in bad.text
    auditor = requests.post(f"{gateway}/login", data={"token": token("auditor")},
                            allow_redirects=False, timeout=30)
    assert auditor.status_code == 403 and "Set-Cookie" not in auditor.headers
    admin = token("org_admin", sub="zuzhibu.chen")
    ok = requests.post(f"{gateway}/login", data={"token": admin}, allow_redirects=False,
                       timeout=30)
    assert ok.status_code == 303 and ok.headers["Location"].endswith("/dashboard")
    cookie = ok.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    # an empty programme renders (no cycle yet), with no script on the page
    page = requests.get(f"{gateway}/dashboard", cookies={"lianchuang_token": admin}, timeout=30)
    assert page.status_code == 200 and "没有考评周期" in page.text and "<script" not in page.text
    member = requests.get(f"{gateway}/dashboard", cookies={"lianchuang_token": token("member")},
                          timeout=30)
    assert member.status_code == 403
    out = requests.post(f"{gateway}/logout", cookies={"lianchuang_token": admin},
                        allow_redirects=False, timeout=30)
    assert out.status_code == 303 and "lianchuang_token=;" in out.headers["Set-Cookie"]
