"""Imports of organisational-life records (三会一课/主题党日, 民主评议) on the real
database: every bad row reported at once with nothing written, all-or-nothing
apply, a re-applied file creating nothing twice, every event naming its import
and row, the college scope, and the Chinese templates."""
import datetime as dt

import pytest

from services.organizations.application import OrganizationsApplication
from shared.errors import ValidationError
from shared.identity import Caller
from shared.spreadsheets import read_back
from tests.interface.test_organizations_imports import (ADMIN, GOOD_MEMBERS, MEMBER_HEADERS,
                                                        event_count, load_tree, payload, xlsx)

MEETING_HEADERS = ["所属学院", "所在支部", "会议类型", "日期", "主题", "主题党日形式", "出席人员",
                   "请假人员", "缺席人员"]
APPRAISAL_HEADERS = ["工号/学号", "姓名", "评议日期", "评议等次", "不合格处置"]
COLLEGE, TEACHERS, STUDENTS = "机电学院党总支", "机电学院教工第一党支部", "机电学院学生党支部"
FUTURE = (dt.date.today() + dt.timedelta(days=3)).isoformat()
GOOD_MEETINGS = [
    [COLLEGE, TEACHERS, "支部党员大会", "2025-03-12", "学习 二十届三中全会精神", None, "T001、T010",
     "T011:出差", None],
    [COLLEGE, TEACHERS, "主题党日", dt.date(2025, 4, 1), "清明祭英烈", "主题党日+志愿服务", "T001",
     None, "T010"],
]
GOOD_APPRAISALS = [["T001", "张三", "2024-12-20", "优秀", None],
                   ["T010", "何十", dt.date(2024, 12, 20), "不合格", "限期改正"]]


@pytest.fixture
def app(clean_databases):
    app = OrganizationsApplication(clean_databases["organizations"])
    orgs = load_tree(app)
    more = [["何十", "T010", COLLEGE, TEACHERS, "教师", "正式党员", "2015-07-01", None, None],
            ["林十一", "T011", COLLEGE, TEACHERS, "教师", "正式党员", "2016-07-01", None, None]]
    app.imports.apply(ADMIN, payload("members", xlsx(MEMBER_HEADERS, GOOD_MEMBERS + more)))
    app.orgs = orgs
    app.ids = {r["staff_no"]: str(r["id"]) for r in app.query("SELECT * FROM member_view")}
    yield app
    app.close()


def rows(app, table) -> int:
    return app.query(f"SELECT count(*) AS n FROM {table}")[0]["n"]


def test_bad_meeting_rows_each_reported_and_nothing_written(app):
    by_hand = app.records.record_meeting(ADMIN, {
        "branch_id": str(app.orgs[TEACHERS]["id"]), "kind": "party_lecture",
        "held_on": "2025-05-04", "topic": "青年节党课", "attendees": [app.ids["T001"]]})
    before, meetings = event_count(app), rows(app, "life_meetings")
    bad = xlsx(MEETING_HEADERS, GOOD_MEETINGS + [
        [COLLEGE, "不存在的支部", "党课", "2025-03-01", "党课", None, "T001", None, None],
        [COLLEGE, TEACHERS, "党课", "2025-03-02", "党课一", None, "T001、T999", None, None],
        [COLLEGE, TEACHERS, "党课", FUTURE, "党课二", None, "T001", None, None],
        [COLLEGE, TEACHERS, "党课", "12.03.2025", "党课三", None, "T001", None, None],
        [COLLEGE, TEACHERS, "支部党员大会", "2025-03-12", "学习  二十届三中全会精神", None, "T001",
         None, None],
        [COLLEGE, TEACHERS, "党课", "2025-03-05", "题" * 501, None, "T001", None, None],
        [COLLEGE, TEACHERS, "党课", "2025-08-05", "党课四", None, "T001、S001", None, None],
        [COLLEGE, TEACHERS, "党课", "2025-03-06", "党课五", "主题党日+志愿服务", "T001", None, None],
        [COLLEGE, TEACHERS, "党课", "2025-05-04", "青年节党课", None, "T001", None, None],
        [COLLEGE, TEACHERS, "党课", "2025-03-07", "党课六", None, "T001", "T010", None],
    ])
    preview = app.imports.preview(ADMIN, payload("meetings", bad))
    got = [(e["row"], e["column"], e["value"], e["why"][:40]) for e in preview["errors"]]
    assert got == [
        (4, "所在支部", "不存在的支部", "unknown branch (支部不存在) in 机电学院党总支"),
        (5, "出席人员", "T999", "unknown member (党员不存在)"),
        (6, "日期", FUTURE, "a date in the future"),
        (7, "日期", "12.03.2025", "not a date (YYYY-MM-DD)"),
        (8, "主题", "学习 二十届三中全会精神", "duplicate row (重复): the same 支部党员大会 as r"),
        (9, "主题", "题" * 501, "longer than 500 characters (501)"),
        (10, "出席人员", "S001", "李四 was not a member of this branch on 20"),
        (11, "主题党日形式", "主题党日+志愿服务", "only a 主题党日 (theme_day) has a form"),
        (12, "主题", "青年节党课", "already in the system (已存在): record " + by_hand["record_id"][:4]),
        (13, "请假人员", "T010", "'T010': 工号:事由 (each 请假 with its reason)"),
    ]
    assert preview["errors"][7]["value"] == "主题党日+志愿服务"
    assert not preview["valid"] and preview["rows"] == 12
    assert preview["created"] == {"支部党员大会 meeting": 1, "主题党日 meeting": 1}
    with pytest.raises(ValidationError) as exc:
        app.imports.apply(ADMIN, payload("meetings", bad))
    assert len(exc.value.errors) == 10 and exc.value.errors[0]["field"] == "Sheet!4 所在支部"
    assert event_count(app) == before and rows(app, "life_meetings") == meetings


def test_meetings_applied_twice_are_recorded_once_each_naming_its_import_and_row(app):
    data = xlsx(MEETING_HEADERS, GOOD_MEETINGS, "三会一课")
    first = app.imports.apply(ADMIN, payload("meetings", data, "meetings-2025.xlsx"))
    assert first["applied"] and first["created"] == {"支部党员大会 meeting": 1,
                                                     "主题党日 meeting": 1}
    assert app.imports.apply(ADMIN, payload("meetings", data))["already_applied"]["import_id"] \
        == first["import_id"]
    listed = app.records.list_meetings(ADMIN, {"branch_id": str(app.orgs[TEACHERS]["id"])})
    general, theme_day = listed["meetings"]
    assert general["attendees"] == [app.ids["T001"], app.ids["T010"]]
    assert general["absentees"] == [{"member_id": app.ids["T011"], "kind": "leave",
                                     "note": "出差"}]
    assert theme_day["form"] == "volunteer" and theme_day["absentees"][0]["kind"] == "absent"
    # each event names the import and its source row
    history = app.history(general["aggregate_id"])
    reasons = [e["reason"] for e in history if e["type"].endswith("meeting_recorded")]
    assert reasons == [f"导入 import {first['import_id']} «meetings-2025.xlsx» 第2行 row 2",
                       f"导入 import {first['import_id']} «meetings-2025.xlsx» 第3行 row 3"]
    # another file repeating the rows (keyed) and adding one creates only the new one
    more = xlsx(MEETING_HEADERS, list(reversed(GOOD_MEETINGS)) + [
        [COLLEGE, STUDENTS, "支委会", "2025-09-01", "发展党员", None, "S001", None, None]])
    second = app.imports.apply(ADMIN, payload("meetings", more, "more.xlsx"))
    assert second["created"] == {"支委会 meeting": 1} and second["unchanged"] == 2
    assert rows(app, "life_meetings") == 3


def test_bad_appraisal_rows_each_reported_and_nothing_written(app):
    app.records.record_member_record(ADMIN, {"member_id": app.ids["T011"], "kind": "appraisal",
                                             "on": "2024-12-01", "details": {"grade": "qualified"}})
    before = event_count(app)
    bad = xlsx(APPRAISAL_HEADERS, GOOD_APPRAISALS + [
        ["T999", "无名", "2024-12-20", "合格", None],
        ["T002", "李四", "2024-12-20", "合格", None],
        ["T002", "王五", FUTURE, "合格", None],
        ["T002", "王五", "2024年13月1日", "合格", None],
        ["T001", "张三", "2024-01-05", "合格", None],
        ["T002", "王五", "2024-12-20", "合格", "除名"],
        ["S001", "李四", "2024-12-20", "合格", None],
        ["T011", "林十一", "2024-12-21", "优秀", None],
        ["T002", "王五", "2024-12-20", "良好", None],
    ])
    preview = app.imports.preview(ADMIN, payload("appraisals", bad))
    got = [(e["row"], e["column"], e["why"][:42]) for e in preview["errors"]]
    assert got == [
        (4, "工号/学号", "unknown member (党员不存在)"),
        (5, "姓名", "工号/学号 T002 belongs to 王五"),
        (6, "评议日期", "a date in the future"),
        (7, "评议日期", "not a date (no such day)"),
        (8, "评议日期", "duplicate row (重复): this member's 2024 民主评"),
        (9, "不合格处置", "only a 不合格 (unqualified) grade is handled"),
        (10, "评议日期", "李四 was not a member of any branch on that "),
        (11, "评议日期", "already in the system (已存在): this member's"),
        (12, "评议等次", "not one of 优秀, 合格, 基本合格, 不合格"),
    ]
    assert preview["created"] == {"民主评议 appraisal": 2}
    with pytest.raises(ValidationError):
        app.imports.apply(ADMIN, payload("appraisals", bad))
    assert event_count(app) == before


def test_appraisals_applied_twice_the_college_scope_and_the_templates(app):
    data = xlsx(APPRAISAL_HEADERS, GOOD_APPRAISALS, "民主评议")
    secretary = Caller("wang", "college_secretary", str(app.orgs["信息学院党委"]["id"]))
    preview = app.imports.preview(secretary, payload("appraisals", data))
    assert [(e["row"], e["why"][:12]) for e in preview["errors"]] == [
        (2, "outside your"), (3, "outside your")]
    meetings = app.imports.preview(secretary, payload("meetings", xlsx(MEETING_HEADERS,
                                                                       GOOD_MEETINGS)))
    assert {(e["row"], e["column"]) for e in meetings["errors"]} == {(2, "所属学院"),
                                                                     (3, "所属学院")}
    own = Caller("zhou", "college_secretary", str(app.orgs[COLLEGE]["id"]))
    first = app.imports.apply(own, payload("appraisals", data, "评议.xlsx"))
    assert first["created"] == {"民主评议 appraisal": 2}
    again = app.imports.apply(own, payload("appraisals", data, "评议.xlsx"))
    assert not again["applied"] and again["already_applied"]["import_id"] == first["import_id"]
    other_file = app.imports.preview(ADMIN, payload("appraisals", xlsx(
        APPRAISAL_HEADERS, GOOD_APPRAISALS + [["T011", "林十一", "2025-01-02", "合格", None]])))
    assert other_file["unchanged"] == 2 and other_file["created"] == {"民主评议 appraisal": 1}
    records = app.records.member_records(ADMIN, {"member_id": app.ids["T010"]})["records"]
    assert [(r["kind"], r["year"], r["details"]) for r in records] == [
        ("appraisal", 2024, {"grade": "unqualified", "handling": "rectify_in_time"})]
    assert app.history(records[0]["aggregate_id"])[-1]["reason"].startswith(
        f"导入 import {first['import_id']} «评议.xlsx» 第3行")
    for kind, headers in (("meetings", MEETING_HEADERS), ("appraisals", APPRAISAL_HEADERS)):
        template = app.imports.template(ADMIN, kind)
        import base64
        sheet = read_back(base64.b64decode(template["content"]))
        assert sheet[0] == headers and len([v for v in sheet[1] if v is not None]) >= 4
