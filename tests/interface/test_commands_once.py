"""Commands apply once per key: the caller's ``command_id``, else the request's
AMQP correlation id (see shared.entrypoints and shared.store)."""
import uuid

import eventlet
import pytest

from shared.errors import Conflict, ValidationError
from tests.helpers import rows


def _registered(settings, name):
    """Member.Registered events in the store (each test registers one name;
    stored states are encrypted, so the topic is what can be counted)."""
    return rows(settings, "SELECT originator_id FROM organizations_events "
                          "WHERE topic LIKE '%%Member.Registered'")


@pytest.fixture
def org(start_service, rpc_as, clean_databases):
    start_service("organizations")
    admin = rpc_as("org_admin").organizations
    committee = admin.create_organization(name="学校党委", kind="committee")
    college = admin.create_organization(name="机电学院党总支", kind="general_branch",
                                        parent_id=committee["id"])
    branch = admin.create_organization(name="教工第一党支部", kind="teacher_branch",
                                       parent_id=college["id"])
    return {"admin": admin, "branch": branch["id"], "db": clean_databases["organizations"]}


def _register(admin, branch, name, **extra):
    return admin.register_member(name=name, branch_id=branch, category="teacher",
                                 status="full", joined_on="2015-07-01", **extra)


def test_a_repeated_command_id_returns_the_first_result_and_applies_nothing(org):
    command_id = str(uuid.uuid4())
    first = _register(org["admin"], org["branch"], "张一", command_id=command_id)
    again = _register(org["admin"], org["branch"], "张一", command_id=command_id)
    assert again == first
    assert len(_registered(org["db"], "张一")) == 1
    recorded = rows(org["db"], "SELECT method, atomic FROM command_log WHERE command_key LIKE %s",
                    (f"%{command_id}",))
    assert recorded == [{"method": "register_member", "atomic": True}]


def test_concurrent_deliveries_of_one_command_apply_once(org, rpc_as):
    command_id = str(uuid.uuid4())
    admins = [rpc_as("org_admin").organizations for _ in range(6)]
    pool = eventlet.GreenPool()
    results = list(pool.imap(lambda admin: _register(admin, org["branch"], "李二",
                                                     command_id=command_id), admins))
    assert all(r == results[0] for r in results)
    assert len(_registered(org["db"], "李二")) == 1


def test_a_command_id_reused_for_another_command_is_a_conflict(org):
    command_id = str(uuid.uuid4())
    member = _register(org["admin"], org["branch"], "王三", command_id=command_id)
    with pytest.raises(Conflict, match="command_id"):
        org["admin"].set_double_leader(member_id=member["id"], double_leader=True,
                                       command_id=command_id)


def test_a_malformed_command_id_is_a_validation_error(org):
    for bad in ("", "has space", "x" * 101, 12, "毒\x00"):
        with pytest.raises(ValidationError) as err:
            _register(org["admin"], org["branch"], "赵四", command_id=bad)
        assert err.value.fields == ["command_id"]
    assert _registered(org["db"], "赵四") == []


def test_each_call_without_a_command_id_is_its_own_command(org):
    _register(org["admin"], org["branch"], "钱五")
    _register(org["admin"], org["branch"], "钱五")
    assert len(_registered(org["db"], "钱五")) == 2


def test_arguments_that_do_not_fit_a_method_are_a_validation_error(org):
    with pytest.raises(ValidationError) as err:
        org["admin"].get_path(org["branch"], "extra")
    assert err.value.fields == ["arguments"]
    with pytest.raises(ValidationError) as err:
        org["admin"].get_path(no_such_argument=1)
    assert err.value.fields == ["arguments"]
