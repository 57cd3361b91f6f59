"""Evaluation spreadsheets on the real database: past years' ratings backfilled
at their effective dates (as-of answers by effective date and shows when it
was recorded), and the exports read back with openpyxl equal to the queries."""
import base64
import copy
import datetime as dt
import io
import uuid

import pytest
from openpyxl import load_workbook

from services.evaluation.application import EvaluationApplication
from shared.errors import Forbidden, ValidationError
from shared.identity import Caller
from shared.spreadsheets import Table, encode_file, read_back, write_tables
from tests.unit.test_evaluation_scoring import TINY

ADMIN = Caller("zzb", "org_admin")
AUDITOR = Caller("jw", "auditor")
HEADERS = ["组织名称", "上级组织", "年度", "星级", "得分", "生效日期", "依据"]


def xlsx(rows) -> str:
    return encode_file(write_tables([Table("Sheet", HEADERS, rows)]))


def ratings_file(rows, name="2024年度星级.xlsx"):
    return {"kind": "ratings", "file_name": name, "content": xlsx(rows)}


def unpack(result) -> bytes:
    return base64.b64decode(result["content"])


@pytest.fixture
def world(clean_databases):
    now = [dt.datetime.now(dt.timezone.utc)]
    app = EvaluationApplication(clean_databases["evaluation"], clock=lambda: now[0])
    committee, colleges = uuid.uuid4(), [uuid.uuid4(), uuid.uuid4()]
    branches = [uuid.uuid4() for _ in range(4)]
    with app.transaction() as curs:
        curs.execute("INSERT INTO dir_orgs VALUES (%s,'学校党委','committee',1,NULL,NULL,"
                     "'active',now())", (committee,))
        for i, c in enumerate(colleges):
            curs.execute("INSERT INTO dir_orgs VALUES (%s,%s,'general_branch',2,%s,NULL,"
                         "'active',now())", (c, f"学院{i}", committee))
        for i, b in enumerate(branches):
            curs.execute("INSERT INTO dir_orgs VALUES (%s,%s,'teacher_branch',3,%s,NULL,"
                         "'active',now())", (b, f"支部{i}", colleges[i // 2]))
    yield app, now, colleges, branches
    app.close()


def run_cycle(app, now, branches, publish_only=()):
    """A cycle of the tiny scheme: every branch to 公示, then final except ``publish_only``."""
    app.publish_scheme(ADMIN, {"definition": copy.deepcopy(TINY)})
    later = {s: (now[0] + dt.timedelta(days=d)).isoformat()
             for s, d in (("self_assessment", 1), ("review", 2), ("approval", 3))}
    cycle = app.open_cycle(ADMIN, {"name": "2026年度党支部星级评定", "level": 3, "period": "2026",
                                   "deadlines": later, "scheme_id": "tiny"})
    for b, (a1, appraisal) in zip(branches, [(10, 100), (8, 90), (5, 70), (10, 0)]):
        payload = {"cycle_id": cycle["id"], "org_id": str(b), "appraisal": appraisal,
                   "scores": {"a1": a1, "a2": 20, "b1": 5}, "evidence": {"a2": ["会议记录"]}}
        app.submit_self_assessment(Caller(f"s{b}", "branch_secretary", str(b)), payload)
        app.submit_review(ADMIN, payload)
    app.approve(ADMIN, {"cycle_id": cycle["id"], "org_ids": [str(b) for b in branches]})
    final = [str(b) for b in branches if b not in publish_only]
    now[0] += dt.timedelta(days=7, seconds=1)
    app.close_publicity(ADMIN, {"cycle_id": cycle["id"], "org_ids": final})
    return cycle


def test_a_backfilled_2024_rating_answers_as_of_2024(world):
    app, now, colleges, branches = world
    rows = [["支部0", "学院0", "2023年度", 3, 72, "2023-12-31", "组织部〔2023〕9号"],
            ["支部0", "学院0", "2024年度", 4, 85.5, dt.date(2024, 12, 31), "组织部〔2024〕15号"],
            ["学院1", "学校党委", "2024年度", 5, None, "2024-12-31", None]]
    preview = app.spreadsheets.preview(ADMIN, ratings_file(rows))
    assert preview["valid"] and preview["created"] == {"历史星级 rating": 3}
    assert app.get_rating(ADMIN, str(branches[0]))["rated"] is False  # nothing written
    the_file = ratings_file(rows)
    applied = app.spreadsheets.apply(ADMIN, the_file)
    mid_2024 = app.get_rating(ADMIN, str(branches[0]), as_of="2024-06-30")
    assert (mid_2024["stars"], mid_2024["score"], mid_2024["cause"]) == (3, 72.0, "backfill")
    end_2024 = app.get_rating(ADMIN, str(branches[0]), as_of="2024-12-31", replay=True)
    assert (end_2024["stars"], end_2024["score"]) == (4, 85.5)
    assert end_2024["since"] == "2024-12-31T00:00:00+00:00"
    assert end_2024["recorded_at"][:10] == dt.date.today().isoformat()
    assert end_2024["replayed"]["matches"] is True
    assert app.get_rating(ADMIN, str(branches[0]), as_of="2023-01-01")["rated"] is False
    current = app.get_rating(ADMIN, str(branches[0]))
    assert (current["stars"], current["cause"]) == (4, "backfill")  # nothing set since
    assert app.get_rating(ADMIN, str(colleges[1]), as_of="2025-01-01")["stars"] == 5
    history = app.rating_history(ADMIN, str(branches[0]))
    assert [(h["stars_after"], h["valid_from"][:10], h["valid_to"]) for h in history] == [
        (3, "2023-12-31", "2024-12-31T00:00:00+00:00"), (4, "2024-12-31", None)]
    assert applied["import_id"] in history[1]["reason"] and "第3行" in history[1]["reason"]
    assert history[1]["evidence"] == ["组织部〔2024〕15号"]
    # the same bytes again (whatever the file is called) change nothing
    again = app.spreadsheets.apply(ADMIN, dict(the_file, file_name="copy.xlsx"))
    assert again["already_applied"]["import_id"] == applied["import_id"]
    reordered = app.spreadsheets.preview(ADMIN, ratings_file(rows[::-1]))
    assert reordered["unchanged"] == 3 and reordered["created"] == {}
    conflicting = app.spreadsheets.preview(ADMIN, ratings_file(
        [["支部0", "学院0", "2024年度", 2, 85.5, "2024-12-31", None]]))
    assert conflicting["errors"][0]["column"] == "生效日期"
    assert "a different rating (★4, 85.5)" in conflicting["errors"][0]["why"]


def test_backfill_rows_errors_and_a_rating_the_system_set(world):
    app, now, colleges, branches = world
    run_cycle(app, now, branches)
    current = app.get_rating(ADMIN, str(branches[0]))
    assert current["cause"] == "cycle"
    rows = [["支部0", "学院0", "2024年度", 2, 61, "2024-12-31", None],
            ["支部0", "学院0", "2026年度", 2, 61, dt.date.today().isoformat(), None],
            ["支部9", "学院0", "2024年度", 3, None, "2024-12-31", None],
            ["支部1", "学院0", "2024年度", 6, None, "2024-12-31", None],
            ["支部1", "学院0", "2024年度", 3, None, "31/12/2024", None],
            ["学校党委", "", "2024年度", 3, None, "2024-12-31", None],
            ["支部0", "学院0", "2024年度", 2, 61, "2024-12-31", None]]
    preview = app.spreadsheets.preview(ADMIN, ratings_file(rows))
    expected = [(3, "生效日期", "not before the rating the system set on"),
                (4, "组织名称", "unknown organisation (组织不存在) under 学院0"),
                (5, "星级", "outside 1-5"),
                (6, "生效日期", "not a date (YYYY-MM-DD)"),
                (7, "上级组织", "required (必填)"),
                (8, "生效日期", "duplicate row (重复): same organisation and date as row 2")]
    assert len(preview["errors"]) == len(expected)
    for e, (row, column, why) in zip(preview["errors"], expected):
        assert (e["row"], e["column"]) == (row, column) and e["why"].startswith(why)
    with pytest.raises(ValidationError):
        app.spreadsheets.apply(ADMIN, ratings_file(rows))
    with pytest.raises(Forbidden):
        app.spreadsheets.preview(Caller("w", "college_secretary", str(colleges[0])),
                                 ratings_file(rows[:1]))
    app.spreadsheets.apply(ADMIN, ratings_file(rows[:1]))
    # history only: the rating the cycle set stays current
    assert app.get_rating(ADMIN, str(branches[0]))["stars"] == current["stars"]
    assert app.get_rating(ADMIN, str(branches[0]), as_of="2025-01-01")["stars"] == 2
    assert app.get_rating(ADMIN, str(branches[0]), as_of=now[0].isoformat())["stars"] == \
        current["stars"]


def test_exports_read_back_equal_the_queries(world):
    app, now, colleges, branches = world
    cycle = run_cycle(app, now, branches, publish_only=[branches[3]])

    listing = app.spreadsheets.publicity_list(Caller("m", "member"), cycle["id"])
    assert len(listing["organizations"]) == 4
    sheet = read_back(unpack(app.spreadsheets.export_publicity_list(ADMIN, cycle["id"])))
    assert sheet[0][0] == "2026年度党支部星级评定 星级评定结果公示名单"
    assert sheet[2] == ["序号", "上级组织", "组织名称", "星级", "星数", "得分", "公示期"]
    body = [r for r in sheet[3:] if isinstance(r[0], int)]
    assert [(r[1], r[2], r[4], r[5]) for r in body] == [
        (o["college_name"], o["org_name"], o["stars"], o["score"])
        for o in listing["organizations"]]
    assert body[0][3] == "★" * listing["organizations"][0]["stars"]
    ws = load_workbook(io.BytesIO(unpack(app.spreadsheets.export_publicity_list(
        ADMIN, cycle["id"])))).active
    assert ws.print_title_rows == "$3:$3" and ws.page_setup.fitToWidth == 1
    assert "A1:G1" in {str(r) for r in ws.merged_cells.ranges}

    results = app.spreadsheets.cycle_results(ADMIN, cycle["id"])
    sheet = read_back(unpack(app.spreadsheets.export_cycle_results(ADMIN, cycle["id"])))
    assert sheet[1][7:9] == ["甲 (60)", "乙 (40)"]
    assert [r[:2] + r[3:9] for r in sheet[2:]] == [
        [o["college_name"], o["org_name"], o["self_score"], o["review_score"], o["score"],
         o["stars"], o["dimensions"]["A"], o["dimensions"]["B"]]
        for o in results["organizations"]]
    assert results["organizations"][0]["dimensions"] == {"A": 60.0, "B": 40.0}
    secretary = Caller("w", "college_secretary", str(colleges[1]))
    assert [o["org_name"] for o in app.spreadsheets.cycle_results(
        secretary, cycle["id"])["organizations"]] == ["支部2", "支部3"]

    dist = app.star_distribution(ADMIN)
    book = unpack(app.spreadsheets.export_star_distribution(ADMIN))
    summary = read_back(book, "分布 distribution")[2:]
    for row, college in zip(summary, dist["branches"]["colleges"]):
        assert row[0] == college["college_name"] and row[1] == college["organizations"]
        assert row[3:8] == [len(college["by_stars"][s]) for s in ("5", "4", "3", "2", "1")]
        assert row[10] == college["four_or_above"]["share"]
    behind = read_back(book, "支部 organisations")[2:]
    assert [(r[0], r[1], r[3]) for r in behind if r[3] is not None] == [
        (c["college_name"], o["org_name"], o["stars"]) for c in dist["branches"]["colleges"]
        for s in ("5", "4", "3", "2", "1") for o in c["by_stars"][s]]
    unrated = [r for r in behind if r[3] is None]
    assert [(r[0], r[1]) for r in unrated] == [("学院1", "支部3")]  # still in 公示

    history = app.rating_history(AUDITOR, str(branches[0]))
    book = unpack(app.spreadsheets.export_rating_history(AUDITOR, str(branches[0])))
    ratings = read_back(book, "星级 ratings")[2:]
    assert [(r[0], r[3], r[5]) for r in ratings] == [
        (h["valid_from"], h["stars_after"], h["cause"]) for h in history]
    events = read_back(book, "事件 events")[2:]
    assert [r[2] for r in events] == ["rating_opened", "rating_underlying_set", "rating_changed"]
    with pytest.raises(Forbidden):
        app.spreadsheets.export_rating_history(Caller("m", "member"), str(branches[0]))


def test_malformed_ids_are_validation_errors(world):
    app = world[0]
    for call in (lambda: app.spreadsheets.publicity_list(ADMIN, "x"),
                 lambda: app.spreadsheets.export_cycle_results(ADMIN, "x"),
                 lambda: app.spreadsheets.export_rating_history(AUDITOR, "x")):
        with pytest.raises(ValidationError):
            call()
