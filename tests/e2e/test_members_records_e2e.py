"""Organisational-life records entered in organizations reach evaluation over
RabbitMQ (relay → inbox) and become members' pioneer indices (锋领指数), read
through RPC by the member and refused to others."""
import datetime as dt

import pytest

from shared.errors import Forbidden, ValidationError
from tests.conftest import wait_for
from tests.helpers import build_tree


def test_records_flow_to_the_index_over_rabbitmq(start_service, rpc_as):
    start_service("organizations")
    start_service("evaluation")
    admin = rpc_as("org_admin")
    tree = build_tree(admin.organizations, branches=2, members_per_branch=3)
    branch, other = tree["branches"]
    members = tree["members"][:3]
    admin.organizations.assign_role(org_id=other, member_id=tree["members"][3],
                                    role="secretary")
    admin.organizations.assign_role(org_id=branch, member_id=members[0], role="secretary")
    secretary = rpc_as("branch_secretary", sub=members[0], org=branch)
    held = (dt.date.today() - dt.timedelta(days=3)).isoformat()
    meeting = secretary.organizations.record_meeting(
        branch_id=branch, kind="party_lecture", held_on=held, topic="党课：学习党章",
        attendees=members[:2], absentees=[{"member_id": members[2], "kind": "absent"}])
    assert meeting["kind_zh"] == "党课"
    with pytest.raises(ValidationError) as e:  # a member of another branch
        secretary.organizations.record_meeting(
            branch_id=branch, kind="theme_day", held_on=held, topic="主题党日",
            attendees=[members[0], tree["members"][3]])
    assert e.value.fields == ["attendees[1]"]
    with pytest.raises(Forbidden):
        rpc_as("auditor").organizations.record_meeting(
            branch_id=branch, kind="theme_day", held_on=held, topic="主题党日",
            attendees=[members[0]])

    year = dt.date.today().year
    own = rpc_as("member", sub=members[0]).evaluation
    index = wait_for(lambda: (lambda r: r if r["score"] == 66.0 else None)(
        own.get_member_index(member_id=members[0], year=year)), timeout=30)
    attendance = index["breakdown"]["positive"]["items"][0]
    assert attendance["records"][0]["record_id"] == meeting["record_id"]
    missed = rpc_as("org_admin").evaluation.get_member_index(member_id=members[2], year=year)
    assert missed["score"] == 58.0  # one absence without leave: −2
    with pytest.raises(Forbidden):
        rpc_as("member", sub=members[1]).evaluation.get_member_index(member_id=members[0],
                                                                     year=year)
    with pytest.raises(Forbidden):
        rpc_as("branch_secretary", sub=tree["members"][3], org=other).evaluation.get_member_index(
            member_id=members[0], year=year)
