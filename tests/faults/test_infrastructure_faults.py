"""Fault suite: the broker and the database die under a stream of commands.

Each case runs the services on a private RabbitMQ or PostgreSQL, kills it
mid-stream and brings it back. A client does what the documentation says a
portal should: it gives each command a ``command_id`` and, on a lost
connection, a timeout or ``Unavailable``, sends the same command again. After
the fault: every command acknowledged and stored exactly once, every stored
event applied by the consumer exactly once, the services healthy again without
a restart, and the metrics showing the fault and its end.
"""
import time
import uuid

import eventlet
import psycopg
import pytest
import requests
from nameko.standalone.rpc import ClusterRpcProxy

from services.notifications.service import NotificationsService
from services.organizations.service import OrganizationsService
from tests.conftest import token, wait_for
from tests.faults.conftest import fault_config

pytestmark = pytest.mark.faults

RECOVERY_SECONDS = 30  # the stated bound: healthy again this long after the fault ends


def call_until_answered(amqp_uri, method, deadline_seconds=120, **payload):
    """Call with retries as a portal should: same command_id every time.

    Returns (result, errors seen). Only documented errors may appear; a
    broken connection or a timeout on the client's side is retried too.
    """
    errors = []
    deadline = time.time() + deadline_seconds
    while True:
        try:
            with eventlet.Timeout(15):
                with ClusterRpcProxy({"AMQP_URI": amqp_uri}, timeout=10,
                                     context_data={"auth_token": token("org_admin")}) as rpc:
                    return getattr(rpc.organizations, method)(**payload), errors
        except Exception as exc:  # noqa: BLE001 - classified below
            kind = getattr(exc, "exc_type", None) or type(exc).__name__
            errors.append(kind)
            assert kind not in ("OperationalError", "InterfaceError", "DataError", "KeyError",
                                "TypeError", "ProgrammingError"), f"undocumented error {exc!r}"
            if time.time() > deadline:
                raise
            eventlet.sleep(0.5)
        except eventlet.Timeout:
            errors.append("client timeout")
            eventlet.sleep(0.5)


# The events the relay publishes: all but the internal aggregates' (docs/events.md).
PUBLISHED_EVENTS = ("SELECT count(*) FROM organizations_events WHERE topic NOT LIKE "
                    "'%%:SiblingName.%%' AND topic NOT LIKE '%%:AuditRead.%%'")


def count(conninfo, sql, params=()):
    with psycopg.connect(conninfo, connect_timeout=3) as conn:
        return conn.execute(sql, params).fetchone()[0]


def healthy(container) -> bool:
    try:
        return requests.get(f"http://{container.config['WEB_SERVER_ADDRESS']}/health",
                            timeout=5).status_code == 200
    except requests.RequestException:
        return False


def metric(container, name_and_labels: str) -> float:
    text = requests.get(f"http://{container.config['WEB_SERVER_ADDRESS']}/metrics",
                        timeout=5).text
    for line in text.splitlines():
        if line.startswith(name_and_labels + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def build_branch(amqp_uri):
    committee, _ = call_until_answered(amqp_uri, "create_organization", name="学校党委",
                                       kind="committee", command_id=str(uuid.uuid4()))
    college, _ = call_until_answered(amqp_uri, "create_organization", name="机电学院党总支",
                                     kind="general_branch", parent_id=committee["id"],
                                     command_id=str(uuid.uuid4()))
    branch, _ = call_until_answered(amqp_uri, "create_organization", name="教工第一党支部",
                                    kind="teacher_branch", parent_id=college["id"],
                                    command_id=str(uuid.uuid4()))
    return branch["id"]


def register_stream(amqp_uri, branch_id, n, fault_after, fault):
    """n registrations one after another; ``fault()`` runs (in its own green
    thread) once ``fault_after`` were acknowledged."""
    acknowledged, errors, fault_thread = {}, [], None
    for i in range(n):
        if i == fault_after:
            fault_thread = eventlet.spawn(fault)
            eventlet.sleep(0.2)
        command_id = str(uuid.uuid4())
        result, seen = call_until_answered(
            amqp_uri, "register_member", name=f"党员{i:02d}", branch_id=branch_id,
            category="teacher", status="full", joined_on="2016-07-01", command_id=command_id)
        acknowledged[command_id] = result["id"]
        errors += seen
    fault_thread.wait()
    return acknowledged, errors


def test_broker_killed_and_restarted_during_a_stream_of_commands(private_rabbit,
                                                                 container_factory,
                                                                 clean_databases):
    dbs = clean_databases
    org = container_factory(OrganizationsService, fault_config(
        private_rabbit.uri, dbs["organizations"].dbname, INSTANCE="org-fault"))
    notes = container_factory(NotificationsService, fault_config(
        private_rabbit.uri, dbs["notifications"].dbname, INSTANCE="notes-fault"))
    org.start()
    notes.start()
    try:
        _broker_case(private_rabbit, dbs, org, notes)
    finally:  # while the private broker still runs: a consumer cannot stop without it
        org.kill()
        notes.kill()


def _broker_case(private_rabbit, dbs, org, notes):
    branch_id = build_branch(private_rabbit.uri)
    outage = {}

    def crash_broker():
        private_rabbit.kill()
        outage["down"] = time.time()
        eventlet.sleep(1)
        private_rabbit.start()
        outage["up"] = time.time()

    acknowledged, errors = register_stream(private_rabbit.uri, branch_id, 24, 8, crash_broker)
    assert errors, "the broker was killed: some call must have noticed"

    # every acknowledged command stored exactly once
    # fault_config gives the services no role of their own: they connect as the
    # administrator, and own their tables; so does this check.
    org_db = dbs["organizations"].admin().conninfo()
    stored = count(org_db, "SELECT count(*) FROM organizations_events "
                           "WHERE topic LIKE '%%Member.Registered'")
    assert stored == len(acknowledged) == 24
    assert len(set(acknowledged.values())) == 24
    # every stored event reaches the consumer, applied exactly once and in order
    notes_db = dbs["notifications"].admin().conninfo()
    wait_for(lambda: count(notes_db, "SELECT count(*) FROM dir_members") == 24,
             timeout=RECOVERY_SECONDS, message="notifications' directory has every member")
    org_events = count(org_db, PUBLISHED_EVENTS)
    wait_for(lambda: count(notes_db, "SELECT coalesce(sum(last_version), 0) FROM "
                                     "inbox_positions WHERE consumer LIKE '%%org_directory'")
             == org_events, timeout=RECOVERY_SECONDS,
             message="the consumer applied every organizations event")
    # healthy again without a restart, within the stated time
    wait_for(lambda: healthy(org) and healthy(notes), timeout=RECOVERY_SECONDS)
    assert time.time() - outage["up"] < RECOVERY_SECONDS + 60
    # the metrics show the fault and its end
    assert metric(org, 'lianchuang_dependency_failures_total{dependency="broker",'
                       'service="organizations"}') >= 1
    assert metric(org, 'lianchuang_dependency_up{dependency="broker",'
                       'service="organizations"}') == 1.0


def test_postgres_restarted_during_load(private_postgres, container_factory, rabbit_config):
    suffix = uuid.uuid4().hex[:8]
    org = container_factory(OrganizationsService, fault_config(
        rabbit_config["AMQP_URI"], f"lcfault_org_{suffix}", pg_port=private_postgres.port))
    notes = container_factory(NotificationsService, fault_config(
        rabbit_config["AMQP_URI"], f"lcfault_notes_{suffix}", pg_port=private_postgres.port))
    org.start()
    notes.start()
    amqp = rabbit_config["AMQP_URI"]
    branch_id = build_branch(amqp)

    def crash_database():
        private_postgres.crash()
        eventlet.sleep(8)
        private_postgres.start()

    acknowledged, errors = register_stream(amqp, branch_id, 20, 6, crash_database)
    # an 8 s outage outlasts the library's own retries: callers were told
    # Unavailable (only documented errors: checked on each call)
    assert "Unavailable" in errors, errors

    base = f"host=127.0.0.1 port={private_postgres.port} user=postgres"
    org_db, notes_db = f"{base} dbname=lcfault_org_{suffix}", f"{base} dbname=lcfault_notes_{suffix}"
    stored = count(org_db, "SELECT count(*) FROM organizations_events "
                           "WHERE topic LIKE '%%Member.Registered'")
    assert stored == len(acknowledged) == 20
    wait_for(lambda: count(notes_db, "SELECT count(*) FROM dir_members") == 20,
             timeout=RECOVERY_SECONDS, message="notifications' directory has every member")
    org_events = count(org_db, PUBLISHED_EVENTS)
    wait_for(lambda: count(notes_db, "SELECT coalesce(sum(last_version), 0) FROM "
                                     "inbox_positions WHERE consumer LIKE '%%org_directory'")
             == org_events, timeout=RECOVERY_SECONDS)
    wait_for(lambda: healthy(org) and healthy(notes), timeout=RECOVERY_SECONDS)
    assert metric(org, 'lianchuang_dependency_failures_total{dependency="database",'
                       'service="organizations"}') >= 1
    assert metric(org, 'lianchuang_dependency_up{dependency="database",'
                       'service="organizations"}') == 1.0
