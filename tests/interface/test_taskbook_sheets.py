"""The task book (任务书) in spreadsheets, on the real database through evaluation's
application: the milestone import (每行错误一次报全, nothing written; a valid file
applied twice creates each milestone once; every event names its import and row)
and the progress export, read back with openpyxl equal to what the query returns."""
import base64
import datetime as dt

import pytest

from services.evaluation.application import EvaluationApplication
from services.evaluation.programme.taskbook_sheets import STATUS_ZH
from shared.errors import Forbidden, ValidationError
from shared.identity import Caller
from shared.spreadsheets import Table, encode_file, read_back, write_tables
from tests.helpers import deliver_events, learn_departments

ADMIN = Caller("zzb", "org_admin")
AUDITOR = Caller("jw", "auditor")
GENERAL_OFFICE = Caller("dzb-1", "department_staff", "general_office")
HEADERS = ["举措编号", "年度", "时间节点", "完成时限", "牵头部门", "备注"]


def milestones_file(rows, name="2026年度任务书时间节点.xlsx", sheet="任务书时间节点"):
    return {"kind": "task_milestones", "file_name": name,
            "content": encode_file(write_tables([Table(sheet, HEADERS, rows)]))}


@pytest.fixture
def world(clean_databases):
    now = [dt.datetime(2026, 7, 15, 8, tzinfo=dt.timezone.utc)]
    app = EvaluationApplication(clean_databases["evaluation"], clock=lambda: now[0])
    departments = learn_departments(app)
    yield app, now, departments
    app.close()


def milestone_rows(app):
    return app.query("SELECT t.number, m.year, m.title, m.due_on FROM prog_milestones m "
                     "JOIN prog_tasks t ON t.id = m.task_id ORDER BY t.number, m.title")


def test_every_bad_row_is_reported_at_once_and_nothing_is_written(world):
    app, _, _ = world
    good = ["二.4", 2026, "校领导上党课", "2026-06-30", "党政办", "每学期一次"]
    upload = milestones_file([
        good,
        ["九.9", 2026, "不存在的举措", "2026-06-30", None, None],         # row 3
        ["二.4", 2026, "专题汇报", "2026-12-31", "宣传处", None],           # row 4
        ["二.4", 2026, "双高专题汇报", "2026年13月45日", None, None],       # row 5
        ["二.4", 2026, " 校领导上党课 ", "2026-09-30", None, None],        # row 6
        ["三.2", 2026, "长" * 301, "2026-06-30", None, None],              # row 7
        ["二.4", 2026, "第三次汇报", "2026-12-31", "宣传部", None],         # row 8
        ["二.4", "明年", "第四次汇报", "2026-12-31", None, None],           # row 9
        ["三.2", 2026, "意识形态责任书", None, None, None],                 # row 10
    ])
    preview = app.spreadsheets.preview(ADMIN, upload)
    assert preview["valid"] is False and preview["rows"] == 9
    found = [(e["sheet"], e["row"], e["column"], e["value"]) for e in preview["errors"]]
    assert found == [
        ("任务书时间节点", 3, "举措编号", "九.9"),
        ("任务书时间节点", 4, "牵头部门", "宣传处"),
        ("任务书时间节点", 5, "完成时限", "2026年13月45日"),
        ("任务书时间节点", 6, "时间节点", "校领导上党课"),
        ("任务书时间节点", 7, "时间节点", "长" * 301),
        ("任务书时间节点", 8, "牵头部门", "宣传部"),
        ("任务书时间节点", 9, "年度", "明年"),
        ("任务书时间节点", 10, "完成时限", None),
    ]
    why = {e["row"]: e["why"] for e in preview["errors"]}
    assert "unknown measure" in why[3] and "unknown department" in why[4]
    assert "not a date" in why[5] and "duplicate row" in why[6] and "row 2" in why[6]
    assert "longer than 300" in why[7] and "党政办" in why[8] and "not a number" in why[9]
    assert "required" in why[10]
    assert preview["created"] == {"时间节点 milestone": 1}  # the one good row, counted
    with pytest.raises(ValidationError) as err:
        app.spreadsheets.apply(ADMIN, upload)
    assert len(err.value.errors) == 8 and err.value.fields[0] == "任务书时间节点!3 举措编号"
    assert milestone_rows(app) == []
    assert not [e for e in app.read_envelopes(0, 5000)
                if e["type"] in ("task_milestone_set", "import_applied")]
    for caller in (AUDITOR, GENERAL_OFFICE):
        with pytest.raises(Forbidden):
            app.spreadsheets.preview(caller, milestones_file([good]))


def test_a_valid_file_applied_twice_creates_each_milestone_once(world):
    app, _, _ = world
    rows = [["二.4", 2026, "校领导上党课", dt.date(2026, 6, 30), "党政办", "每学期一次"],
            ["二.4", 2026, "双高专题汇报", "2026-12-31", "general_office", None],
            ["三.2", 2026, "意识形态责任书全覆盖", "2026/09/30", None, None]]
    upload = milestones_file(rows)
    first = app.spreadsheets.apply(ADMIN, upload)
    assert first["applied"] and first["created"] == {"时间节点 milestone": 3}
    assert (first["rows"], first["file_name"]) == (3, "2026年度任务书时间节点.xlsx")
    again = app.spreadsheets.apply(ADMIN, upload)
    assert again["applied"] is False and again["already_applied"]["import_id"] == \
        first["import_id"]
    # another file repeating the rows (keyed by measure, year, title) creates nothing twice;
    # a new 完成时限 moves its milestone
    rows[2][3] = "2026-10-31"
    second = app.spreadsheets.apply(ADMIN, milestones_file(rows, name="修订版.xlsx"))
    assert (second["created"], second["changed"], second["unchanged"]) == \
        ({}, {"时间节点改期 milestone moved": 1}, 2)
    assert [(r["number"], r["title"], r["due_on"].isoformat()) for r in milestone_rows(app)] == [
        ("三.2", "意识形态责任书全覆盖", "2026-10-31"), ("二.4", "双高专题汇报", "2026-12-31"),
        ("二.4", "校领导上党课", "2026-06-30")]
    # every event names its import and its row; the import says who, when, which file
    envelopes = app.read_envelopes(0, 5000)
    applied = [e for e in envelopes if e["type"] == "import_applied"]
    assert [(e["data"]["file_name"], e["data"]["rows"], e["actor"]["sub"]) for e in applied] == \
        [("2026年度任务书时间节点.xlsx", 3, "zzb"), ("修订版.xlsx", 3, "zzb")]
    assert applied[0]["data"]["sha256"] == first["sha256"] and len(first["sha256"]) == 64
    set_events = [e for e in envelopes if e["type"] == "task_milestone_set"]
    assert len(set_events) == 4
    assert set_events[0]["reason"].startswith(f"导入 import {first['import_id']} "
                                              "«2026年度任务书时间节点.xlsx» 第2行 row 2")
    assert "备注 每学期一次" in set_events[0]["reason"]
    assert f"import {second['import_id']}" in set_events[3]["reason"] and "第4行" in \
        set_events[3]["reason"]


def test_a_retired_lead_department_is_given_no_milestones_by_import(world):
    app, _, departments = world
    departments["general_office"].retire({"sub": "zzb", "role": "org_admin"}, "机构调整")
    deliver_events(app, departments["general_office"])
    preview = app.spreadsheets.preview(ADMIN, milestones_file([
        ["二.4", 2026, "校领导上党课", "2026-06-30", None, None],
        ["三.2", 2026, "责任书", "2026-06-30", "宣传部", None]]))
    assert [(e["row"], e["column"]) for e in preview["errors"]] == [(2, "举措编号")]
    assert "retired" in preview["errors"][0]["why"] and preview["created"] == \
        {"时间节点 milestone": 1}


def test_the_template_has_chinese_headers_and_one_example_row_that_imports(world):
    app, _, _ = world
    result = app.spreadsheets.template(ADMIN, "task_milestones")
    data = base64.b64decode(result["content"])
    rows = read_back(data)
    assert rows[0] == ["举措编号", "年度", "时间节点", "完成时限", "牵头部门", "备注"]
    assert len(rows) == 2 and rows[1][0] == "二.4"
    preview = app.spreadsheets.preview(ADMIN, {"kind": "task_milestones",
                                               "file_name": result["file_name"],
                                               "content": result["content"]})
    assert preview["valid"] and preview["created"] == {"时间节点 milestone": 1}
    with pytest.raises(ValidationError) as err:
        app.spreadsheets.template(ADMIN, "no_such_kind")
    assert "task_milestones" in str(err.value)


def test_the_progress_export_reads_back_equal_to_the_query(world):
    app, now, departments = world
    app.spreadsheets.apply(ADMIN, milestones_file([
        ["二.4", 2026, "校领导上党课", "2026-06-30", None, None],
        ["二.4", 2026, "双高专题汇报", "2026-12-31", None, None],
        ["三.2", 2026, "意识形态责任书", "2026-07-01", None, None],
        ["三.2", 2025, "去年的节点", "2025-12-31", None, None]]))
    app.programme.report_progress(Caller("xcb", "department_staff", "publicity"), {
        "number": "三.2", "milestone_id": "2026-1", "text": "签订率100%", "completed": True,
        "evidence": ["清单.xlsx"], "on": "2026-06-20"})
    assert app.programme.detect_overdue() == 2  # 二.4 上党课 and 三.2's 2025 one
    # a renamed department shows its new name in the export too
    departments["general_office"].rename("党委办公室", {"sub": "zzb", "role": "org_admin"}, "更名")
    deliver_events(app, departments["general_office"])

    for year in (None, 2026):
        data = app.programme.task_book_progress(AUDITOR, year)
        exported = base64.b64decode(app.programme.export_task_book(ADMIN, year)["content"])
        measures = read_back(exported, "任务书进展")
        assert measures[1][:3] == ["举措编号", "部分", "举措"] and len(measures) == 2 + 26
        expected = [[m["number"], m["section"], m["title"], m["lead_department"]["name"],
                     "、".join(c["name"] for c in m["cooperating"]), STATUS_ZH[m["status"]],
                     m["progress"]["milestones"], m["progress"]["completed"],
                     m["progress"]["overdue"], m["progress"]["share_completed"], m["reports"],
                     f"{m['last_report']['on']} {m['last_report']['department']}: "
                     f"{m['last_report']['text']}" if m["last_report"] else None]
                    for m in data["measures"]]
        assert measures[2:] == expected
        milestones = read_back(exported, "时间节点")
        assert milestones[2:] == [
            [m["number"], m["lead_department"]["name"], ms["milestone_id"], ms["title"],
             ms["year"], ms["due_on"], STATUS_ZH[ms["status"]], "是" if ms["overdue"] else "否",
             ms["completed_on"]] for m in data["measures"] for ms in m["milestones"]]
        overdue = read_back(exported, "逾期事项")
        assert overdue[2:] == [[o["number"], o["measure"], o["lead_department"]["name"],
                                o["milestone_id"], o["milestone"], o["due_on"],
                                o["overdue_recorded_at"]] for o in data["overdue"]]
    # and the figures are the hand-written ones
    everything = app.programme.task_book_progress(ADMIN)
    by_number = {m["number"]: m for m in everything["measures"]}
    assert by_number["二.4"]["lead_department"] == {"code": "general_office", "name": "党委办公室"}
    assert (by_number["二.4"]["status"], by_number["二.4"]["progress"]) == (
        "overdue", {"milestones": 2, "completed": 0, "overdue": 1, "share_completed": 0.0})
    assert (by_number["三.2"]["status"], by_number["三.2"]["progress"]["completed"],
            by_number["三.2"]["reports"]) == ("overdue", 1, 1)
    assert by_number["三.2"]["last_report"] == {"on": "2026-06-20", "department": "宣传部",
                                               "text": "签订率100%"}
    assert [(o["number"], o["milestone"]) for o in everything["overdue"]] == [
        ("三.2", "去年的节点"), ("二.4", "校领导上党课")]
    assert everything["totals"] == {"measures": 26, "milestones": 4, "completed": 1,
                                    "overdue": 2}
    this_year = app.programme.task_book_progress(ADMIN, 2026)
    assert {m["number"]: m["status"] for m in this_year["measures"]
            if m["milestones"]}["三.2"] == "completed"
    with pytest.raises(Forbidden):
        app.programme.task_book_progress(Caller("m", "member"))
    with pytest.raises(ValidationError):
        app.programme.task_book_progress(ADMIN, "二〇二六")
