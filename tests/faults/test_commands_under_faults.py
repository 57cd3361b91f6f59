"""Fault suite: commands under a dying worker and under load.

* A worker killed between its commit and its reply: nameko acknowledges a
  request after replying, so the broker redelivers it to the other instance,
  which answers with the first result from the command log and applies nothing.
* Forty concurrent commands on one instance: every caller gets an answer and
  /health answers during the burst (it used to deadlock at ten).
"""
import time
import uuid

import eventlet
import pytest
import requests

from shared import metrics
from tests.conftest import wait_for
from tests.helpers import event_store, rows

pytestmark = pytest.mark.faults


def _registered_events(settings):
    return rows(settings, "SELECT originator_id FROM organizations_events "
                          "WHERE topic LIKE '%%Member.Registered'")


@pytest.mark.parametrize("with_command_id", [True, False], ids=["command_id", "correlation_id"])
def test_worker_killed_between_commit_and_reply(start_service, rpc_as, clean_databases,
                                                with_command_id):
    a = start_service("organizations", INSTANCE="org-a")
    admin = rpc_as("org_admin").organizations
    committee = admin.create_organization(name="学校党委", kind="committee")
    college = admin.create_organization(name="机电学院党总支", kind="general_branch",
                                        parent_id=committee["id"])
    branch = admin.create_organization(name="教工第一党支部", kind="teacher_branch",
                                       parent_id=college["id"])
    committed = []

    def die_after_commit(method):
        # The worker dies right here: events and command log are committed,
        # the reply is never sent and the request never acknowledged.
        committed.append(method)
        eventlet.spawn(a.kill)
        eventlet.sleep(30)

    event_store(a).app.after_command_commit = die_after_commit
    extra = {"command_id": str(uuid.uuid4())} if with_command_id else {}
    reply = admin.register_member.call_async(
        name="孙六", branch_id=branch["id"], category="teacher", status="full",
        joined_on="2012-07-01", **extra)
    wait_for(lambda: committed, timeout=10, message="the command committed")
    wait_for(lambda: a._being_killed or not a._worker_threads, timeout=10)
    # the redelivered request reaches a fresh instance on the same database
    start_service("organizations", INSTANCE="org-b")
    member = reply.result()
    assert member["name"] == "孙六"
    stored = _registered_events(clean_databases["organizations"])
    assert [str(r["originator_id"]) for r in stored] == [member["id"]]
    listed = rpc_as("org_admin").organizations.list_members(org_id=branch["id"])
    assert [m["id"] for m in listed["members"]] == [member["id"]]


def test_forty_concurrent_commands_on_one_instance_all_answer(start_service, rpc_as,
                                                              clean_databases):
    container = start_service("organizations")
    admin = rpc_as("org_admin").organizations
    committee = admin.create_organization(name="学校党委", kind="committee")
    college = admin.create_organization(name="机电学院党总支", kind="general_branch",
                                        parent_id=committee["id"])
    branches = [admin.create_organization(name=f"教工第{i + 1}党支部", kind="teacher_branch",
                                          parent_id=college["id"])["id"] for i in range(40)]
    proxies = [rpc_as("org_admin").organizations for _ in range(40)]
    health_url = f"http://{container.config['WEB_SERVER_ADDRESS']}/health"
    health_codes = []

    def register(i):
        started = time.perf_counter()
        member = proxies[i].register_member(name=f"党员{i}", branch_id=branches[i],
                                            category="teacher", status="full",
                                            joined_on="2015-07-01")
        return member, time.perf_counter() - started

    def watch_health(stop):
        while not stop.ready():
            health_codes.append(requests.get(health_url, timeout=30).status_code)
            stop.wait(0.2)

    stop = eventlet.event.Event()
    watcher = eventlet.spawn(watch_health, stop)
    pool = eventlet.GreenPool(40)
    results = list(pool.imap(register, range(40)))
    stop.send(True)
    watcher.wait()
    assert len(results) == 40
    assert sorted(m["name"] for m, _ in results) == sorted(f"党员{i}" for i in range(40))
    assert health_codes and set(health_codes) == {200}
    assert len(_registered_events(clean_databases["organizations"])) == 40
    # every caller got its answer well inside the RPC timeout (30 s)
    assert max(seconds for _, seconds in results) < 30
