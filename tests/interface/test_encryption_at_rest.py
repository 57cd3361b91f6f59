"""Stored events are encrypted at rest (加密存储): PostgreSQL holds ciphertext, the
owning service reads the records back."""
import json

from tests.helpers import build_tree, stored_events

NAME = "郑秘密Zheng-Mimi"


def forms(text: str) -> list[bytes]:
    """How a name could appear in a stored event's bytes (raw UTF-8 or JSON-escaped)."""
    return [text.encode("utf-8"), json.dumps(text).strip('"').encode("ascii"), b"Zheng-Mimi"]


def test_a_members_name_is_not_in_the_stored_events_but_reads_back(start_service, rpc_as,
                                                                   clean_databases):
    start_service("organizations")
    admin = rpc_as("org_admin").organizations
    tree = build_tree(admin, branches=1, members_per_branch=1)
    member = admin.register_member(name=NAME, branch_id=tree["branches"][0], category="teacher",
                                   status="full", joined_on="2012-07-01")
    raw = stored_events(clean_databases["organizations"], "organizations")
    assert len(raw) >= 4
    for row in raw:
        state = bytes(row["state"])
        assert not any(form in state for form in forms(NAME)), row["topic"]
        assert b"member_registered" not in state and b"branch_id" not in state
    assert admin.get_member(member["id"])["name"] == NAME
    history = admin.get_history(member["id"])
    assert history[0]["data"]["name"] == NAME
