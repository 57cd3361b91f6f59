"""Tamper evidence: the service's role cannot change stored events, even a
superuser is stopped by the trigger, and every change made the maintenance
way is named by ``verify_chain`` (RPC) and ``lianchuang audit verify`` (CLI)."""
import psycopg
import pytest
from click.testing import CliRunner

from lianchuang_cli.main import main as cli
from shared.chain import link_hash, verify
from shared.dbsetup import GENESIS, maintenance
from shared.errors import Forbidden
from tests.helpers import rows

def service_config_value(name):
    """A value the test services run with (the CLI reads it from the environment)."""
    from tests.conftest import service_config

    return service_config({"AMQP_URI": ""}, store_settings())[name]


def store_settings():
    from tests.conftest import db_settings

    return db_settings("organizations")

EVENTS = "organizations_events"


def _refused(conninfo, statement):
    with psycopg.connect(conninfo, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as caught:
            conn.execute(statement)
    return str(caught.value)


@pytest.fixture
def store(start_service, rpc_as, clean_databases):
    start_service("organizations", CHAIN={"publish_interval": 0})
    admin = rpc_as("org_admin", sub="zuzhibu").organizations
    committee = admin.create_organization(name="学校党委", kind="committee")
    college = admin.create_organization(name="机电学院党总支", kind="general_branch",
                                        parent_id=committee["id"])
    for n in range(3):
        admin.create_organization(name=f"教工第{n + 1}党支部", kind="teacher_branch",
                                  parent_id=college["id"])
    return clean_databases["organizations"]


def _events(settings):
    return rows(settings, f"SELECT notification_id, originator_id, originator_version "
                          f"FROM {EVENTS} ORDER BY notification_id")


def test_the_service_role_cannot_update_delete_or_truncate_stored_events(store):
    assert store.role == "lianchuang_organizations_svc"
    assert rows(store, "SELECT current_user AS u")[0]["u"] == store.role
    for table in (EVENTS, "event_chain"):
        assert "append-only" in _refused(store.conninfo(), f"UPDATE {table} SET "
                                         "originator_version = originator_version + 1") \
            or table == "event_chain"
        _refused(store.conninfo(), f"DELETE FROM {table}")
        _refused(store.conninfo(), f"TRUNCATE {table}")
    # Nor forge a link of the chain, nor change the trigger.
    _refused(store.conninfo(), "INSERT INTO event_chain VALUES (999, 0, gen_random_uuid(), 1, "
                               "'\\x00')")
    _refused(store.conninfo(), f"ALTER TABLE {EVENTS} DISABLE TRIGGER lianchuang_append_only")
    assert len(_events(store)) == 11  # 5 organisations, 6 sibling-name claims


def test_even_a_superuser_goes_through_the_maintenance_role(store):
    message = _refused(store.admin().conninfo(), f"DELETE FROM {EVENTS}")
    assert "append-only" in message and "postgres" in message
    _refused(store.admin().conninfo(), f"TRUNCATE {EVENTS}")
    assert len(_events(store)) == 11


def test_the_chain_is_extended_by_the_database_as_documented(store):
    links = rows(store, "SELECT c.*, e.topic, e.state FROM event_chain c "
                        f"JOIN {EVENTS} e USING (notification_id) ORDER BY notification_id")
    assert [link["notification_id"] for link in links] == list(range(1, 12))
    previous = GENESIS
    for link in links:
        expected = link_hash(previous, link["notification_id"], link["originator_id"],
                             link["originator_version"], link["topic"], link["state"])
        assert bytes(link["hash"]) == expected
        previous = expected


@pytest.mark.parametrize("independent", [False, True], ids=["in_database", "independent"])
def test_verify_names_an_altered_a_deleted_and_two_swapped_events(store, rpc_as, independent):
    auditor = rpc_as("auditor", sub="jiwei").organizations
    flags = ["--independent"] if independent else []
    clean = auditor.verify_chain(independent=independent)
    assert (clean["ok"], clean["checked"], clean["problems"]) == (True, 11, [])
    result = CliRunner(env={"ORGANIZATIONS_DB": store.dbname}).invoke(
        cli, ["audit", "verify", "--service", "organizations", *flags])
    assert result.exit_code == 0, result.output
    assert "11 links checked" in result.output and "intact" in result.output

    event = {e["notification_id"]: f"{e['originator_id']}:{e['originator_version']}"
             for e in _events(store)}
    with psycopg.connect(store.admin().conninfo(), autocommit=True) as conn:
        with maintenance(conn):
            conn.execute(f"UPDATE {EVENTS} SET state = state || '\\x20'::bytea "
                         "WHERE notification_id = 2")
            conn.execute(f"DELETE FROM {EVENTS} WHERE notification_id = 3")
            conn.execute(f"UPDATE {EVENTS} SET notification_id = -4 WHERE notification_id = 4")
            conn.execute(f"UPDATE {EVENTS} SET notification_id = 4 WHERE notification_id = 5")
            conn.execute(f"UPDATE {EVENTS} SET notification_id = 5 WHERE notification_id = -4")

    report = auditor.verify_chain(independent=independent)
    assert (report["ok"], report["mode"]) == (False, "independent" if independent else "database")
    found = [(p["position"], p["kind"], p["event_id"]) for p in report["problems"]]
    assert found == [(2, "altered", event[2]), (3, "missing", event[3]),
                     (4, "swapped", event[5])]
    assert "4 and 5" in report["problems"][2]["detail"]
    if not independent:  # the positions split into ranges checked at once: same answer
        conninfo = store.conninfo()
        for ranges in (1, 2, 11):
            with psycopg.connect(conninfo) as conn:
                split = verify(conn, EVENTS, connect=lambda: psycopg.connect(conninfo),
                               ranges=ranges)
            assert [(p["position"], p["kind"], p["event_id"]) for p in split["problems"]] \
                == found, ranges
            assert split["problems"] == report["problems"] and split["checked"] == 11

    result = CliRunner(env={"ORGANIZATIONS_DB": store.dbname}).invoke(
        cli, ["audit", "verify", "--service", "organizations", *flags])
    assert result.exit_code == 1
    for position, kind, event_id in found:
        assert f"position {position}  {kind}" in result.output
        assert event_id in result.output


@pytest.mark.parametrize("independent", [False, True], ids=["in_database", "independent"])
def test_a_link_deleted_with_its_event_and_an_event_slipped_past_the_trigger(store,
                                                                             independent):
    with psycopg.connect(store.admin().conninfo(), autocommit=True) as conn:
        with maintenance(conn):
            conn.execute(f"DELETE FROM {EVENTS} WHERE notification_id = 3")
            conn.execute("DELETE FROM event_chain WHERE notification_id = 3")
        # A superuser can switch triggers off for a session: the chain trigger too.
        with conn.transaction():
            conn.execute("SET LOCAL session_replication_role = replica")
            conn.execute(f"INSERT INTO {EVENTS} (originator_id, originator_version, topic, "
                         "state) VALUES ('00000000-0000-0000-0000-000000000001', 1, 't', "
                         "'\\x7b7d')")
    result = CliRunner(env={"ORGANIZATIONS_DB": store.dbname}).invoke(
        cli, ["audit", "verify", "--service", "organizations"]
        + (["--independent"] if independent else []))
    assert result.exit_code == 1
    assert "position 3  missing" in result.output and "link at 4 follows position 3" \
        in result.output
    assert "position 12  unchained  event 00000000-0000-0000-0000-000000000001:1" \
        in result.output
    if not independent:  # a range starting at the lost position, or right after it
        conninfo = store.conninfo()
        reports = []
        for ranges in (1, 5, 11):
            with psycopg.connect(conninfo) as conn:
                reports.append(verify(conn, EVENTS, connect=lambda: psycopg.connect(conninfo),
                                      ranges=ranges))
        assert [(p["position"], p["kind"]) for p in reports[0]["problems"]] == [
            (3, "missing"), (12, "unchained")]
        assert reports[1]["problems"] == reports[2]["problems"] == reports[0]["problems"]


def test_only_auditors_and_ops_verify(store, rpc_as):
    with pytest.raises(Forbidden):
        rpc_as("org_admin").organizations.verify_chain()
    assert rpc_as("ops").organizations.verify_chain()["ok"] is True


def test_the_head_is_published_as_an_event_once_per_change(store, rpc_as, start_service):
    from tests.helpers import event_store
    container = start_service("organizations", INSTANCE="b", CHAIN={"publish_interval": 0})
    app = event_store(container).app
    head = app.publish_chain_head()
    assert head["position"] == 11
    assert app.publish_chain_head() is None  # nothing new since: not published again
    published = rpc_as("auditor").organizations.read_events(after_position=11)
    assert [(e["type"], e["data"]["position"], e["data"]["hash"]) for e in published] == [
        ("chain_head_published", 11, head["hash"])]
    assert published[0]["actor"]["sub"] == "service:organizations"
    assert rpc_as("auditor").organizations.verify_chain()["checked"] == 12


def test_rebuild_reports_differences_from_the_live_read_models_before_swapping(store, rpc_as):
    ops = rpc_as("ops").organizations
    same = ops.rebuild_read_models(dry_run=True)
    assert (same["identical"], same["swapped"], same["replayed_events"]) == (True, False, 11)
    assert same["tables"]["org_view"] == {"live_rows": 5, "rebuilt_rows": 5, "only_live": 0,
                                          "only_rebuilt": 0,
                                          "samples": {"only_live": [], "only_rebuilt": []}}
    # Someone edits a read model by hand: the rebuild names the row, both ways.
    with psycopg.connect(store.conninfo(), autocommit=True) as conn:
        conn.execute("UPDATE org_view SET name = '篡改' WHERE name = '教工第1党支部'")
    cli_env = {"ORGANIZATIONS_DB": store.dbname,
               "ORGANIZATIONS_CIPHER_KEY": service_config_value("ORGANIZATIONS_CIPHER_KEY")}
    dry = CliRunner(env=cli_env).invoke(cli, ["audit", "rebuild", "--service",
                                              "organizations", "--dry-run"])
    assert dry.exit_code == 1, dry.output
    assert "DIFFER" in dry.output and "dry run, live ones kept" in dry.output
    assert "org_view: 5 live rows, 5 rebuilt; 1 only live, 1 only rebuilt" in dry.output
    assert '"name": "篡改"' in dry.output and '"name": "教工第1党支部"' in dry.output
    assert rows(store, "SELECT count(*) AS n FROM org_view WHERE name = '篡改'")[0]["n"] == 1

    swapped = ops.rebuild_read_models()
    assert (swapped["identical"], swapped["swapped"]) == (False, True)
    assert swapped["tables"]["org_view"]["samples"]["only_live"][0]["name"] == "篡改"
    assert rows(store, "SELECT count(*) AS n FROM org_view WHERE name = '篡改'")[0]["n"] == 0
    again = CliRunner(env=cli_env).invoke(cli, ["audit", "rebuild", "--service",
                                                "organizations"])
    assert again.exit_code == 0 and "identical" in again.output and "swapped in" in again.output
    with pytest.raises(Forbidden):
        rpc_as("auditor").organizations.rebuild_read_models()


def test_a_store_older_than_its_chain_is_linked_once_by_setup(store, rpc_as):
    from shared.dbsetup import setup_service_database

    with psycopg.connect(store.admin().conninfo(), autocommit=True) as conn:
        with maintenance(conn):  # as a store set up before the chain existed
            conn.execute("DELETE FROM event_chain")
    auditor = rpc_as("auditor").organizations
    assert {p["kind"] for p in auditor.verify_chain()["problems"]} == {"unchained"}
    setup_service_database(store, "organizations")
    report = auditor.verify_chain(independent=True)
    assert (report["ok"], report["checked"]) == (True, 11)
    assert report["head"] == auditor.verify_chain()["head"]


def test_readers_see_the_live_read_models_while_the_rebuild_runs(store, start_service):
    from shared.rebuild import rebuild_compared
    from tests.helpers import event_store

    app = event_store(start_service("organizations", INSTANCE="r",
                                    CHAIN={"publish_interval": 0})).app
    seen = []
    replay = app.projector._apply_next_batch

    def reading_meanwhile(curs, position, *skipped):
        # Mid-rebuild, another connection reads at once (never waits on a lock)
        # and sees every live row.
        with psycopg.connect(store.conninfo(), autocommit=True) as conn:
            conn.execute("SET statement_timeout = '2s'")
            seen.append(conn.execute("SELECT count(*) FROM org_view").fetchone()[0])
        return replay(curs, position, *skipped)

    app.projector._apply_next_batch = reading_meanwhile
    try:
        report = rebuild_compared(app.projector)
    finally:
        del app.projector._apply_next_batch
    assert report["identical"] and seen and set(seen) == {5}
