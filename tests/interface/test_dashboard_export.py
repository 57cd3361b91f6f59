"""The school dashboard (三级联创 总览) exported as .xlsx and read back: every
per-college count and every organisation behind it equal what
``programme_dashboard`` answers; targets and overdue milestones for the school;
one college's export for its secretary, no one else's."""
import base64
import io

import pytest
from openpyxl import load_workbook

from services.evaluation.programme.domain import STAGES
from shared.errors import Forbidden
from shared.identity import Caller
from tests.interface.test_programme_app import (  # noqa: F401 (app: the fixture)
    ADMIN, AUDITOR, MEMBER, app, climb, orgs)


def sheets(file: dict) -> dict[str, list[tuple]]:
    book = load_workbook(io.BytesIO(base64.b64decode(file["content"])), read_only=True)
    out = {ws.title: [tuple(r) for r in ws.iter_rows(values_only=True)] for ws in book}
    book.close()
    return out


def body(rows: list[tuple], header_first: str) -> list[tuple]:
    """The rows below the header row (title lines above it are skipped)."""
    start = next(i for i, r in enumerate(rows) if r and r[0] == header_first)
    return rows[start + 1:]


def test_the_dashboard_export_reads_back_equal_to_the_query(app):  # noqa: F811
    uni, tree = orgs(app, colleges=2, branches_per_college=2)
    colleges = list(tree)
    climb(app, colleges[0], "school")
    climb(app, tree[colleges[0]][0], "school")
    climb(app, tree[colleges[0]][1], "school", outcome="failed")
    climb(app, tree[colleges[1]][0], "school")
    app.programme.nominate_candidacy(ADMIN, {"org_id": str(tree[colleges[1]][1]),
                                             "tier": "school", "on": "2023-05-01",
                                             "reason": "推荐"})
    app.programme.nominate_candidacy(ADMIN, {"org_id": str(uni), "tier": "provincial",
                                             "on": "2023-05-01", "reason": "推荐"})
    board = app.programme.programme_dashboard(AUDITOR, listed=True)
    book = sheets(app.spreadsheets.export_programme_dashboard(AUDITOR))
    assert list(book) == ["按学院 by college", "组织 organisations", "目标 targets",
                          "任务书 task book"]

    # what the query says, per college, title, tier and stage
    expected: dict[tuple, int] = {}
    behind = set()
    for title in board["candidacies"]:
        for tier in title["tiers"]:
            for stage in tier["stages"]:
                for o in stage["organizations"]:
                    college = o["college_name"] or "学校 school"
                    key = (college, title["title_zh"], tier["tier_zh"], stage["stage"])
                    expected[key] = expected.get(key, 0) + 1
                    behind.add((college, title["title_zh"], tier["tier_zh"], stage["stage_zh"],
                                o["org_name"], o["stage_on"], o["candidacy_id"]))
    read = {}
    for row in body(book["按学院 by college"], "学院 college"):
        college, title, tier, *counts, total = row
        assert total == sum(counts)
        for stage, n in zip(STAGES, counts):
            if n:
                read[(college, title, tier, stage)] = n
    assert read == expected
    assert read[("学院0", "党建工作样板支部", "校级", "passed")] == 1
    assert read[("学院0", "党建工作样板支部", "校级", "failed")] == 1
    assert read[("学校 school", "党建工作示范高校", "省级", "cultivating")] == 1
    assert set(body(book["组织 organisations"], "学院 college")) == behind
    assert len(behind) == 6

    targets = body(book["目标 targets"], "称号 title")
    assert targets == [(t["title_zh"], t["tier_zh"], t["target_min"], t["target_max"],
                        t["achieved"], "是" if t["met"] else "否", t["pursuing"])
                       for t in board["targets"]["targets"]]
    overdue = body(book["任务书 task book"], "编号 number")
    assert len(overdue) == len(board["task_book"]["overdue"])

    # one college's export: its secretary's, with its rows only
    secretary = Caller("s", "college_secretary", str(colleges[1]))
    mine = sheets(app.spreadsheets.export_programme_dashboard(secretary))
    assert list(mine) == ["按学院 by college", "组织 organisations"]
    assert {r[0] for r in body(mine["按学院 by college"], "学院 college")} == {"学院1"}
    with pytest.raises(Forbidden):
        app.spreadsheets.export_programme_dashboard(secretary, str(colleges[0]))
    with pytest.raises(Forbidden):
        app.spreadsheets.export_programme_dashboard(MEMBER)
