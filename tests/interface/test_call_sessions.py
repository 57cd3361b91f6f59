"""One RPC call, one database session (issue 12): a query or a command takes
one pooled connection for all its statements (no checkout, pre-ping and
BEGIN/ROLLBACK per statement), and a pooled connection that sat idle is
checked before use, so one the server dropped is replaced, never handed out."""
import psycopg
import pytest

from services.organizations.application import OrganizationsApplication
from services.organizations.domain import Organization
from shared import store
from shared.errors import Conflict
from shared.identity import Caller
from tests.helpers import build_tree, event_store


def _checkouts(app) -> int:
    return app.datastore.pool.get_stats().get("requests_num", 0)


def test_a_command_and_a_query_each_take_one_pooled_connection(clean_databases):
    """As ``shared.entrypoints`` runs them (an application without background
    threads, so that every checkout counted is the call's)."""
    app = OrganizationsApplication(clean_databases["organizations"])
    try:
        admin = Caller("tester", "org_admin")
        committee = app.create_organization(admin, {"name": "学校党委", "kind": "committee"})
        college = app.create_organization(admin, {"name": "学院党总支", "kind": "general_branch",
                                                  "parent_id": committee["id"]})
        branch = app.create_organization(admin, {"name": "教工党支部", "kind": "teacher_branch",
                                                 "parent_id": college["id"]})
        payload = {"name": "新党员", "branch_id": branch["id"], "category": "teacher",
                   "status": "full", "joined_on": "2010-07-01"}
        before = _checkouts(app)
        with app.session():
            member = app.run_command("test:1", "register_member", admin,
                                     lambda: app.register_member(admin, dict(payload)))
        # one: the command log lookup, the branch's load, the append, the
        # read models' catch-up and the answer (it used to take 10)
        assert _checkouts(app) - before == 1
        before = _checkouts(app)
        with app.session():
            organization = app.get_organization(admin, college["id"])
        assert _checkouts(app) - before == 1  # it used to take 4
        assert member["branch_id"] == branch["id"]
        assert organization["member_count"] == 1
        with app.session():  # a repeat answers from the command log, on one connection
            assert app.run_command("test:1", "register_member", admin,
                                   lambda: app.register_member(admin, dict(payload))) == member
    finally:
        app.close()


def test_a_stale_save_on_the_call_session_is_still_a_conflict(start_service, rpc_as):
    """The append on the call's own connection still reports a version clash as
    the library's IntegrityError, so a Conflict (and two loads from the
    aggregate cache are independent copies)."""
    container = start_service("organizations")
    app = event_store(container).app
    admin = rpc_as("org_admin").organizations
    tree = build_tree(admin, branches=1, members_per_branch=0)
    first = app.load(tree["branches"][0], Organization, "branch")
    second = app.load(tree["branches"][0], Organization, "branch")
    actor = {"sub": "tester", "role": "org_admin"}
    first.rename("改名一党支部", actor, "test")
    second.rename("改名二党支部", actor, "test")
    with app.session():
        app.commit(first)
        with pytest.raises(Conflict):
            app.commit(second)
    assert admin.get_organization(tree["branches"][0])["name"] == "改名一党支部"


def test_a_connection_dropped_while_idle_is_replaced_not_handed_out(start_service, rpc_as,
                                                                     monkeypatch):
    container = start_service("organizations")
    app = event_store(container).app
    admin = rpc_as("org_admin").organizations
    tree = build_tree(admin, branches=1, members_per_branch=1)
    # the server drops every connection of the service's pool ...
    with psycopg.connect(app.settings.conninfo(), autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE datname = current_database() AND pid <> pg_backend_pid()")
    # ... which then sit idle for longer than the check's threshold
    monkeypatch.setattr(store, "IDLE_CHECK_SECONDS", -1.0)
    assert admin.get_organization(tree["college"])["member_count"] == 1
    assert admin.register_member(name="又一党员", branch_id=tree["branches"][0],
                                 category="teacher", status="full",
                                 joined_on="2010-07-01")["name"] == "又一党员"
