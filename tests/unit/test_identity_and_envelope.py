import datetime as dt
import uuid

import pytest

from services.organizations.domain import Organization
from shared.envelope import build_envelope, event_type_of
from shared.errors import Unauthenticated, ValidationError
from shared.identity import Caller, mint_token, verify_token
from shared.errors import Forbidden

SECRET = "unit-test-secret-0123456789-abcdefghijkl"


COLLEGE = "6f1c3b0e-8d2a-4c1e-9f3a-1b2c3d4e5f60"


def test_token_round_trip():
    tok = mint_token(SECRET, sub="li", role="college_secretary", org=COLLEGE, ttl=60)
    assert verify_token(SECRET, tok) == Caller("li", "college_secretary", COLLEGE)
    tok = mint_token(SECRET, sub="xcb-1", role="department_staff", org="publicity", ttl=60)
    assert verify_token(SECRET, tok) == Caller("xcb-1", "department_staff", "publicity")


@pytest.mark.parametrize("claims, message", [
    ({"sub": "li\x00", "role": "member"}, "printable"),
    ({"sub": "x" * 201, "role": "member"}, "printable"),
    ({"sub": "li", "role": "branch_secretary", "org": "not-an-id"}, "organisation id"),
    ({"sub": "li", "role": "department_staff", "org": "publicity\x00"}, "department code"),
    ({"sub": "li", "role": "department_staff", "org": COLLEGE}, "department code"),
])
def test_signed_tokens_with_hostile_claims_are_refused(claims, message):
    """Even a correctly signed token cannot carry a NUL or a non-id scope into
    the services' queries."""
    import time

    import jwt

    tok = jwt.encode({**claims, "exp": int(time.time()) + 60}, SECRET, algorithm="HS256")
    with pytest.raises(Unauthenticated, match=message):
        verify_token(SECRET, tok)


@pytest.mark.parametrize("token, message", [
    (None, "no token"),
    ("", "no token"),
    ("garbage", "not valid"),
    (["a", "list"], "not valid"),
    ({"a": "dict"}, "not valid"),
])
def test_missing_or_garbled_tokens(token, message):
    with pytest.raises(Unauthenticated) as e:
        verify_token(SECRET, token)
    assert message in str(e.value)


def test_bad_signature_and_expiry():
    other = mint_token("another-secret-0123456789-abcdefghijkl", sub="x", role="org_admin")
    with pytest.raises(Unauthenticated) as e:
        verify_token(SECRET, other)
    assert "signature" in str(e.value)
    old = mint_token(SECRET, sub="x", role="org_admin", ttl=10, now=1_000_000)
    with pytest.raises(Unauthenticated) as e:
        verify_token(SECRET, old)
    assert "expired" in str(e.value)


def test_a_remembered_token_still_expires(monkeypatch):
    """Tokens are checked once and remembered (issue 12); the expiry is checked
    on every call all the same."""
    import shared.identity as identity

    now = int(identity.time.time())
    tok = mint_token(SECRET, sub="x", role="org_admin", ttl=60, now=now)
    assert verify_token(SECRET, tok) == Caller("x", "org_admin")
    assert verify_token(SECRET, tok) == Caller("x", "org_admin")  # remembered
    monkeypatch.setattr(identity.time, "time", lambda: now + 60)
    with pytest.raises(Unauthenticated, match="expired"):
        verify_token(SECRET, tok)
    with pytest.raises(Unauthenticated, match="signature"):  # remembered per secret
        verify_token("another-secret-0123456789-abcdefghijkl", tok)


def test_scoped_roles_need_an_org():
    with pytest.raises(ValueError):
        mint_token(SECRET, sub="x", role="branch_secretary")
    with pytest.raises(ValueError):
        mint_token(SECRET, sub="x", role="emperor")


def test_require_role():
    caller = Caller("a", "auditor")
    assert caller.require_role("auditor", "org_admin") is caller
    with pytest.raises(Forbidden) as e:
        caller.require_role("org_admin")
    assert "auditor" in str(e.value)


def test_validation_error_names_fields():
    err = ValidationError({"name": "must not be empty", "kind": "unknown"})
    assert err.fields == ["name", "kind"]
    assert str(err) == "name: must not be empty; kind: unknown"


def test_envelope_of_a_domain_event():
    actor = {"sub": "admin", "role": "org_admin"}
    committee = Organization.found("学校党委", "committee", None, actor, reason="建立")
    college = Organization.found("机电学院党总支", "general_branch", committee, actor)
    event = college.collect_events()[0]
    env = build_envelope(event, position=7, source="organizations")
    assert env["type"] == "organization_created" == event_type_of(event)
    assert env["event_id"] == f"{college.id}:1"
    assert env["originator_version"] == 1 and env["position"] == 7
    assert env["actor"] == actor and env["reason"] is None
    assert env["data"] == {"name": "机电学院党总支", "kind": "general_branch", "level": 2,
                           "parent_id": str(committee.id), "basis": None}
    assert dt.datetime.fromisoformat(env["occurred_at"]).tzinfo is not None
    uuid.UUID(env["originator_id"])
