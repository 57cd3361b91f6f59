"""Functional departments (职能部门) as organizations' records, through real
entrypoints: the seed's 15 by default, added, renamed and retired by 组织部 only,
typed errors, retired ones readable with their period, the list as of a moment;
and evaluation's task book naming them by code once their events arrive."""
import datetime as dt

import eventlet
import pytest

from services.evaluation.application import EvaluationApplication
from shared.errors import Conflict, Forbidden, NotFound, ValidationError
from shared.identity import Caller
from tests.helpers import deliver_events, learn_departments


@pytest.fixture
def orgs_rpc(start_service, rpc_as):
    start_service("organizations")
    admin = rpc_as("org_admin", sub="zuzhibu").organizations
    admin.install_default_departments()  # the default set-up (the demo loader runs it)
    return admin


def codes(listing):
    return [d["code"] for d in listing if d["kind"] == "department"]


def test_the_seeds_15_are_installed_once_and_org_admin_adds_renames_and_retires(
        orgs_rpc, rpc_as):
    admin = orgs_rpc
    listed = admin.list_departments()
    assert len(codes(listed)) == 15 and listed[0]["name"] == "组织部"
    assert listed[-1] == {"code": "all_colleges", "name": "各二级学院", "kind": "all_colleges",
                          "means": []}
    again = admin.install_default_departments()  # idempotent
    assert again == {"added": [], "departments": 15}
    with pytest.raises(Forbidden):
        rpc_as("auditor").organizations.install_default_departments()

    added = admin.add_department(code="united_front", name="统战部", reason="机构设置")
    assert (added["code"], added["name"], added["status"]) == ("united_front", "统战部", "active")
    renamed = admin.rename_department(code="admissions_employment", name="招生就业处",
                                      reason="机构更名")
    assert renamed["name"] == "招生就业处"
    assert [h["name"] for h in renamed["history"]] == ["招就办", "招生就业处"]
    assert renamed["history"][0]["valid_to"] == renamed["history"][1]["valid_from"]
    before_retiring = dt.datetime.now(dt.timezone.utc).isoformat()
    eventlet.sleep(0.01)
    retired = admin.retire_department(code="entrepreneurship_college", reason="并入教务处")
    assert retired["status"] == "retired" and retired["retired_at"] is not None
    # live ones by default; retired ones stay readable, with their period
    assert "entrepreneurship_college" not in codes(admin.list_departments())
    everything = admin.list_departments(include_retired=True)
    gone = next(d for d in everything if d["code"] == "entrepreneurship_college")
    assert (gone["status"], gone["added_at"] < gone["retired_at"]) == ("retired", True)
    assert admin.get_department("entrepreneurship_college")["history"][-1]["status"] == "retired"
    # as of a moment: as they were then
    then = admin.list_departments(as_of=before_retiring)
    assert "entrepreneurship_college" in codes(then)
    assert next(d for d in then if d["code"] == "admissions_employment")["name"] == "招生就业处"
    assert "united_front" not in codes(admin.list_departments(as_of="2000-01-01"))
    # the auditor reads a department's full history through get_history
    history = rpc_as("auditor").organizations.get_history(renamed["id"])
    assert [h["type"] for h in history] == ["department_added", "department_renamed"]
    assert history[1]["actor"]["sub"] == "zuzhibu" and history[1]["reason"] == "机构更名"


def test_typed_errors_and_only_org_admin_changes_departments(orgs_rpc, rpc_as):
    admin = orgs_rpc
    with pytest.raises(Conflict) as err:  # a name held by a live department
        admin.add_department(code="propaganda", name="宣传部")
    assert str(err.value).startswith("name:")
    with pytest.raises(Conflict) as err:
        admin.rename_department(code="youth_league", name=" 宣传部")
    assert str(err.value).startswith("name:")
    with pytest.raises(Conflict) as err:  # a code is a department for good
        admin.add_department(code="publicity", name="新宣传部")
    assert str(err.value).startswith("code:")
    for call in (lambda: admin.rename_department(code="no_such", name="x"),
                 lambda: admin.retire_department(code="no_such", reason="x"),
                 lambda: admin.get_department("no_such")):
        with pytest.raises(NotFound) as err:
            call()
        assert str(err.value).startswith("code:")
    for payload, field in (({"code": "Bad-Code", "name": "x"}, "code"),
                           ({"code": "all_colleges", "name": "x"}, "code"),
                           ({"code": "ok_code", "name": ""}, "name"),
                           ({"code": "ok_code", "name": "各二级学院"}, "name"),
                           ({"code": "ok_code"}, "name")):
        with pytest.raises(ValidationError) as err:
            admin.add_department(**payload)
        assert err.value.fields == [field]
    with pytest.raises(ValidationError) as err:
        admin.retire_department(code="trade_union")
    assert err.value.fields == ["reason"]
    for role, org in (("college_secretary", "00000000-0000-0000-0000-000000000001"),
                      ("department_staff", "publicity"), ("auditor", None), ("ops", None),
                      ("member", None)):
        proxy = rpc_as(role, org=org).organizations
        for call in (lambda: proxy.add_department(code="x_dept", name="某部"),
                     lambda: proxy.rename_department(code="publicity", name="某部"),
                     lambda: proxy.retire_department(code="publicity", reason="x")):
            with pytest.raises(Forbidden):
                call()
    assert rpc_as("department_staff", org="publicity").organizations.get_department(
        "publicity")["name"] == "宣传部"
    # retired: no new name, no second retirement; its name is free for a new department
    admin.retire_department(code="trade_union", reason="撤销")
    with pytest.raises(ValidationError):
        admin.rename_department(code="trade_union", name="校工会")
    with pytest.raises(ValidationError):
        admin.retire_department(code="trade_union", reason="again")
    assert admin.add_department(code="staff_union", name="工会")["status"] == "active"


ADMIN = Caller("zzb", "org_admin")
PUBLICITY = Caller("xcb-1", "department_staff", "publicity")


@pytest.fixture
def app(clean_databases):
    application = EvaluationApplication(clean_databases["evaluation"])
    yield application
    application.close()


def test_the_task_book_names_departments_as_their_events_say_and_gives_a_retired_one_no_work(app):
    known = learn_departments(app)
    assert app.programme.get_task(ADMIN, "二.4")["lead_department"] == \
        {"code": "general_office", "name": "党政办"}
    # renamed in organizations: the same code, the new name everywhere
    known["general_office"].rename("党委办公室", {"sub": "zzb", "role": "org_admin"}, "更名")
    deliver_events(app, known["general_office"])
    assert app.programme.get_task(ADMIN, "二.4")["lead_department"] == \
        {"code": "general_office", "name": "党委办公室"}
    assert "党委办公室" in [c["name"] for c in app.programme.get_task(ADMIN, "二.6")["cooperating"]]
    view = app.programme.department_view(ADMIN, "general_office")
    assert (view["name"], view["status"], view["retired_at"]) == ("党委办公室", "active", None)
    # retired: its measures keep pointing at it, readable with its period; no new milestones
    known["general_office"].retire({"sub": "zzb", "role": "org_admin"}, "并入")
    deliver_events(app, known["general_office"])
    with pytest.raises(ValidationError) as err:
        app.programme.set_milestone(ADMIN, {"number": "二.4", "title": "上党课", "year": 2030,
                                            "due_on": "2030-06-30"})
    assert err.value.fields == ["number"] and "retired" in str(err.value)
    view = app.programme.department_view(ADMIN, "general_office")
    assert view["status"] == "retired" and view["retired_at"] is not None
    assert {t["number"] for t in view["leads"]} >= {"二.4"}
    assert app.programme.set_milestone(ADMIN, {"number": "三.2", "title": "责任书", "year": 2030,
                                               "due_on": "2030-06-30"})["lead_department"] == \
        {"code": "publicity", "name": "宣传部"}
    with pytest.raises(NotFound) as err:
        app.programme.department_view(ADMIN, "no_such")
    assert str(err.value).startswith("department:")
    with pytest.raises(Forbidden):
        app.programme.department_view(PUBLICITY, "general_office")


def test_org_admin_reassigns_a_measures_departments_through_rpc_and_the_views_follow(
        start_service, rpc_as):
    from tests.conftest import wait_for
    from tests.helpers import event_store

    start_service("organizations")
    evaluation_container = start_service("evaluation")
    organizations = rpc_as("org_admin", sub="zuzhibu").organizations
    organizations.install_default_departments()
    organizations.retire_department(code="trade_union", reason="并入")
    ops = rpc_as("ops").evaluation
    wait_for(lambda: ops.consumer_status()["org_directory"]["departments"] == 15, 20,
             message="evaluation's directory has the 15 departments")
    wait_for(lambda: rpc_as("auditor").evaluation.department_view("trade_union")["status"]
             == "retired", 20, message="evaluation learnt that 工会 was retired")
    evaluation = rpc_as("org_admin", sub="zuzhibu").evaluation
    before = evaluation.get_task("二.4")
    assert before["lead_department"]["code"] == "general_office"
    assert [c["code"] for c in before["cooperating"]] == ["organization", "quality_control"]

    # 组织部 only, with a reason; unknown and retired departments named by field
    with pytest.raises(Forbidden):
        rpc_as("department_staff", sub="dzb-1", org="general_office").evaluation \
            .reassign_task_departments(number="二.4", lead_department="publicity", reason="x")
    with pytest.raises(ValidationError) as err:
        evaluation.reassign_task_departments(number="二.4", lead_department="publicity")
    assert err.value.fields == ["reason"]
    with pytest.raises(ValidationError) as err:
        evaluation.reassign_task_departments(
            number="二.4", lead_department="no_such", cooperating=["organization", "trade_union"],
            reason="调整分工")
    assert err.value.fields == ["lead_department", "cooperating[1]"]
    assert "retired" in str(err.value) and "no_such" in str(err.value)
    with pytest.raises(ValidationError) as err:  # 各二级学院 cooperate, they do not lead
        evaluation.reassign_task_departments(number="二.4", lead_department="all_colleges",
                                             reason="调整分工")
    assert err.value.fields == ["lead_department"]
    with pytest.raises(NotFound):
        evaluation.reassign_task_departments(number="九.9", lead_department="publicity",
                                             reason="调整分工")

    after = evaluation.reassign_task_departments(
        number="二.4", lead_department="publicity",
        cooperating=["general_office", "all_colleges"], reason="党委会决定调整牵头部门")
    assert after["lead_department"] == {"code": "publicity", "name": "宣传部"}
    assert [c["code"] for c in after["cooperating"]] == ["general_office"]  # no college yet
    assert after["cooperating_codes"] == ["general_office", "all_colleges"]
    # the department views follow: 宣传部 leads it, 党政办 cooperates, 质控办 is out
    auditor = rpc_as("auditor").evaluation
    assert "二.4" in [t["number"] for t in auditor.department_view("publicity")["leads"]]
    office = auditor.department_view("general_office")
    assert "二.4" not in [t["number"] for t in office["leads"]]
    assert "二.4" in [t["number"] for t in office["cooperates"]]
    assert "二.4" not in [t["number"] for t in auditor.department_view("quality_control")
                          ["cooperates"]]
    # recorded as an event with its actor and reason, the previous assignment beside it
    envelopes = [e for e in event_store(evaluation_container).app.read_envelopes(0, 5000)
                 if e["type"] == "task_departments_reassigned"]
    assert len(envelopes) == 1
    data = envelopes[0]["data"]
    assert {k: data[k] for k in ("lead_department", "cooperating", "previous_lead",
                                 "previous_cooperating")} == {
        "lead_department": "publicity", "cooperating": ["general_office", "all_colleges"],
        "previous_lead": "general_office",
        "previous_cooperating": ["organization", "quality_control"]}
    assert envelopes[0]["actor"] == {"sub": "zuzhibu", "role": "org_admin"}
    assert envelopes[0]["reason"] == "党委会决定调整牵头部门"
