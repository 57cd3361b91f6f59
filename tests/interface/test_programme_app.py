"""The creation programme (三级联创) on the real database through evaluation's
application: candidacies climbing their tiers (梯次培育), 创建未达标, targets
against achievements on a hand-written scenario, the task book's permissions,
and an overdue milestone recorded exactly once across a restart."""
import datetime as dt
import uuid

import pytest

from services.evaluation.application import EvaluationApplication
from shared.errors import Forbidden, ValidationError
from shared.identity import Caller
from tests.helpers import learn_departments

ADMIN = Caller("zzb", "org_admin")
AUDITOR = Caller("jwb", "auditor")
MEMBER = Caller(str(uuid.uuid4()), "member")
PUBLICITY = Caller("xcb-1", "department_staff", "publicity")
QUALITY = Caller("zkb-1", "department_staff", "quality_control")


def orgs(app, colleges=3, branches_per_college=3):
    """The university, its colleges and their branches in evaluation's directory copy."""
    uni, tree = uuid.uuid4(), {}
    with app.transaction() as curs:
        curs.execute("INSERT INTO dir_orgs VALUES (%s,'学校党委','university_committee',1,NULL,"
                     "NULL,'active',now())", (uni,))
        for c in range(colleges):
            college = uuid.uuid4()
            curs.execute("INSERT INTO dir_orgs VALUES (%s,%s,'general_branch',2,%s,NULL,"
                         "'active',now())", (college, f"学院{c}", uni))
            tree[college] = []
            for b in range(branches_per_college):
                branch = uuid.uuid4()
                # student branches: a college's 双带头人 coverage (teacher branches,
                # derived from records at 验收) is then entered, not derived as 0
                curs.execute("INSERT INTO dir_orgs VALUES (%s,%s,'student_branch',3,%s,NULL,"
                             "'active',now())", (branch, f"学院{c}支部{b}", college))
                tree[college].append(branch)
    return uni, tree


def accept(app, candidacy_id, outcome, day):
    """校级 验收, scored with the level's scheme: full marks pass, zeros fail."""
    c = app.programme.get_candidacy(ADMIN, candidacy_id)
    scheme = app.query_one("SELECT definition FROM eval_schemes WHERE level = %s ORDER BY "
                           "version DESC LIMIT 1", (c["level"],))["definition"]
    derive = app.programme._acceptance_derive(c["org_id"], int(day[:4]))
    entered = [i for i in scheme["indicators"]
               if i["scoring"] != "derived" or derive(i) is None]
    share = 1 if outcome == "passed" else 0
    app.programme.score_acceptance(ADMIN, {
        "candidacy_id": candidacy_id, "on": day, "reason": f"进入{outcome}",
        "documents": [f"{outcome}.pdf"],
        "scores": {i["code"]: i["max_score"] * share for i in entered},
        "evidence": {i["code"]: ["doc"] for i in entered if i["evidence"]},
        "appraisal": 100 * share if scheme["composite"]["appraisal"] else None})
    return app.programme.get_candidacy(ADMIN, candidacy_id)


def climb(app, org_id, tier, outcome="passed", on=("2021-03-01", "2021-04-01", "2021-05-01",
                                                     "2021-09-01", "2021-12-01"), **extra):
    c = app.programme.nominate_candidacy(ADMIN, {"org_id": str(org_id), "tier": tier,
                                                 "on": on[0], "reason": "推荐培育", **extra})
    for stage, day in zip(("applied", "accepted", "acceptance_review", outcome), on[1:]):
        if stage is None:
            break
        if tier == "school" and stage in ("passed", "failed"):
            return accept(app, c["id"], stage, day)
        c = app.programme.move_candidacy(ADMIN, {
            "candidacy_id": c["id"], "to_stage": stage, "on": day, "reason": f"进入{stage}",
            "evidence": [f"{stage}.pdf"]})
    return c


@pytest.fixture
def app(clean_databases):
    application = EvaluationApplication(clean_databases["evaluation"])
    learn_departments(application)  # organizations' 15, as their events deliver them
    yield application
    application.close()


def test_candidacies_climb_the_tiers_and_failures_are_the_years_shortfall(app):
    uni, tree = orgs(app)
    college = next(iter(tree))
    branch = tree[college][0]
    # 梯次培育: no provincial nomination before a school-level 达标
    with pytest.raises(ValidationError) as err:
        app.programme.nominate_candidacy(ADMIN, {"org_id": str(branch), "tier": "provincial",
                                                 "reason": "直接申报"})
    assert err.value.fields == ["tier"] and "梯次培育" in str(err.value)
    school = climb(app, branch, "school")
    assert school["stage"] == "passed" and school["held_from"] == "2021-12-01"
    assert [m["to_stage"] for m in school["moves"]] == \
        ["cultivating", "applied", "accepted", "acceptance_review", "passed"]
    assert school["moves"][1]["actor"] == {"sub": "zzb", "role": "org_admin"}
    assert school["moves"][-1]["evidence"] == ["passed.pdf"]
    with pytest.raises(ValidationError) as err:  # it holds the school title already
        app.programme.nominate_candidacy(ADMIN, {"org_id": str(branch), "tier": "school",
                                                 "reason": "again"})
    assert err.value.fields == ["tier"]
    provincial = climb(app, branch, "provincial", outcome="failed",
                       on=("2022-01-10", "2022-02-01", "2022-03-01", "2022-06-01", "2022-11-20"))
    assert provincial["ladder"] == {"passed_candidacy_id": school["id"], "tier": "school"}
    # an illegal move through the application: refused, naming the stage
    with pytest.raises(ValidationError) as err:
        app.programme.move_candidacy(ADMIN, {"candidacy_id": provincial["id"],
                                             "to_stage": "applied", "reason": "重来"})
    assert "is at 未达标 failed" in str(err.value)
    # 创建未达标 per organisation and year (R1)
    assert app.programme.creation_shortfall(AUDITOR, str(branch), 2022)["shortfall"] is True
    assert app.programme.creation_shortfall(AUDITOR, str(branch), 2021)["shortfall"] is False
    assert app.programme.creation_shortfall(MEMBER, str(branch), 2022)["candidacies"][0] == {
        "candidacy_id": provincial["id"], "title": "model_branch", "title_zh": "党建工作样板支部",
        "tier": "provincial", "failed_on": "2022-11-20", "reason": "进入failed",
        "evidence": ["failed.pdf"], "acceptance": None}
    # a second attempt at the tier is allowed after a failure
    again = app.programme.nominate_candidacy(ADMIN, {"org_id": str(branch), "tier": "provincial",
                                                     "on": "2023-01-05", "reason": "再次培育"})
    assert again["attempt"] == 2 and again["stage"] == "cultivating"
    with pytest.raises(Forbidden):
        app.programme.move_candidacy(Caller(str(uuid.uuid4()), "college_secretary", str(college)),
                                     {"candidacy_id": again["id"], "to_stage": "applied",
                                      "reason": "x"})
    # each move is published as notifications' candidacy_moved rule expects it
    moved = [e for e in app.read_envelopes(0, 5000) if e["type"] == "candidacy_moved"]
    assert [(e["data"]["org_id"], e["data"]["from_stage"], e["data"]["to_stage"])
            for e in moved][:2] == [(str(branch), "cultivating", "applied"),
                                    (str(branch), "applied", "accepted")]
    assert moved[0]["reason"] == "进入applied" and moved[0]["actor"]["role"] == "org_admin"


def test_targets_against_achievements_on_a_hand_written_scenario(app):
    uni, tree = orgs(app, colleges=4, branches_per_college=2)
    colleges = list(tree)
    plan = app.programme.define_plan(ADMIN, {
        "code": "T", "name": "测试规划", "starts_on": "2021-01-01", "ends_on": "2023-12-31",
        "targets": [{"title": "benchmark_college", "tier": "provincial", "min": 2, "max": 3},
                    {"title": "model_branch", "tier": "school", "min": 3},
                    {"title": "demonstration_university", "tier": "national", "min": 1}],
        "brand_target": {"min_tier": "provincial", "min": 2}})
    assert [t["achieved"] for t in plan["targets"]] == [0, 0, 0]
    # colleges 0 and 1 pass at school then provincial; college 2 passes provincial on a
    # waiver, but in 2024 (outside the period); college 3 is at 申报 provincially.
    for c in colleges[:2]:
        climb(app, c, "school", on=("2021-01-05", "2021-02-01", "2021-03-01", "2021-04-01",
                                    "2021-05-01"))
        climb(app, c, "provincial", on=("2022-01-05", "2022-02-01", "2022-03-01", "2022-04-01",
                                        "2022-05-01"))
    climb(app, colleges[2], "provincial", ladder_waiver="2019年已获校级标杆院系",
          on=("2023-06-01", "2023-07-01", "2023-08-01", "2023-09-01", "2024-01-15"))
    pending = app.programme.nominate_candidacy(
        ADMIN, {"org_id": str(colleges[3]), "tier": "provincial", "on": "2023-02-01",
                "reason": "推荐", "ladder_waiver": "2020年校级标杆"})
    app.programme.move_candidacy(ADMIN, {"candidacy_id": pending["id"], "to_stage": "applied",
                                         "on": "2023-03-01", "reason": "申报"})
    # branches: two pass at school tier, one fails, one is being cultivated
    b = [br for c in colleges for br in tree[c]]
    climb(app, b[0], "school")
    climb(app, b[1], "school")
    climb(app, b[2], "school", outcome="failed")
    app.programme.nominate_candidacy(ADMIN, {"org_id": str(b[3]), "tier": "school",
                                             "on": "2023-05-01", "reason": "推荐"})
    # brands: one national (counts), one provincial in 2020 (before the period), one school
    brands = [app.programme.register_brand(ADMIN, {"name": n, "kind": "college_brand",
                                                   "org_id": str(colleges[i])})
              for i, n in enumerate(("红色引擎", "匠心党建", "青柠先锋"))]
    for brand, level, on in ((0, "national", "2022-06-01"), (1, "provincial", "2020-10-01"),
                             (2, "school", "2022-06-01")):
        app.programme.recognise_brand(ADMIN, {"brand_id": brands[brand]["id"], "level": level,
                                              "on": on, "evidence": ["认定文件"]})
    progress = app.programme.programme_progress(MEMBER, "T")
    got = {(t["title"], t["tier"]): (t["achieved"], t["met"], t["pursuing"])
           for t in progress["targets"]}
    assert got == {("benchmark_college", "provincial"): (2, True, 1),
                   ("model_branch", "school"): (2, False, 1),
                   ("demonstration_university", "national"): (0, False, 0)}
    behind = progress["targets"][0]["candidacies"]
    assert sorted((c["org_name"], c["stage"], c["counted"]) for c in behind) == [
        ("学院0", "passed", True), ("学院1", "passed", True), ("学院3", "applied", False)]
    assert (progress["brands"]["achieved"], progress["brands"]["met"]) == (1, False)
    assert [x["name"] for x in progress["brands"]["brands"]] == ["红色引擎"]
    # the dashboard: every number with what is behind it
    board = app.programme.programme_dashboard(AUDITOR)
    cells = {(t["title"], tier["tier"], st["stage"]): st for t in board["candidacies"]
             for tier in t["tiers"] for st in tier["stages"] if st["count"]}
    assert {k: v["count"] for k, v in cells.items()} == {
        ("benchmark_college", "school", "passed"): 2,
        ("benchmark_college", "provincial", "passed"): 3,
        ("benchmark_college", "provincial", "applied"): 1,
        ("model_branch", "school", "passed"): 2, ("model_branch", "school", "failed"): 1,
        ("model_branch", "school", "cultivating"): 1}
    # the school's answer carries the numbers; the candidacies behind a cell are listed
    # by list_candidacies (and in one college's answer)
    assert "organizations" not in cells[("model_branch", "school", "failed")]
    assert [c["org_name"] for c in app.programme.list_candidacies(
        AUDITOR, title="model_branch", tier="school", stage="failed")] == ["学院1支部0"]
    assert board["task_book"]["by_status"]["unplanned"]["count"] == 26
    # a change reaches the next answer (answers are reused only while nothing changed)
    assert app.programme.programme_dashboard(AUDITOR) == board
    app.programme.move_candidacy(ADMIN, {"candidacy_id": pending["id"], "to_stage": "accepted",
                                         "on": "2023-04-01", "reason": "立项"})
    again = app.programme.programme_dashboard(ADMIN)
    provincial = again["candidacies"][1]["tiers"][1]["stages"]
    assert [(s["stage"], s["count"]) for s in provincial if s["count"]] == \
        [("accepted", 1), ("passed", 3)]
    assert again["targets"]["targets"][0]["pursuing_ids"] == [pending["id"]]
    mine = app.programme.programme_dashboard(Caller("s", "college_secretary", str(colleges[1])))
    assert mine["targets"] is None and sum(
        tier["total"] for t in mine["candidacies"] for tier in t["tiers"]) == 4
    with pytest.raises(Forbidden):
        app.programme.programme_dashboard(MEMBER)
    # retargeting needs a reason, and the default plan shipped is the seed's
    with pytest.raises(ValidationError) as err:
        app.programme.define_plan(ADMIN, {"code": "T", "targets": [
            {"title": "model_branch", "tier": "school", "min": 1}]})
    assert err.value.fields == ["reason"]
    seed = app.programme.programme_progress(ADMIN, "2020-2023")
    assert len(seed["targets"]) == 5 and seed["brands"]["target_min"] == 10


def test_the_task_book_ships_26_measures_and_departments_report_their_own(app):
    orgs(app, colleges=2, branches_per_college=1)
    tasks = app.programme.list_tasks(MEMBER)
    assert [t["number"] for t in tasks][:3] == ["二.1", "二.2", "二.3"] and len(tasks) == 26
    t31 = app.programme.get_task(MEMBER, "三.1")
    assert t31["lead_department"] == {"code": "organization", "name": "组织部"}
    assert [c["name"] for c in t31["cooperating"]] == ["学院0", "学院1"]  # 各二级学院, expanded
    app.programme.set_milestone(ADMIN, {"number": "三.2", "milestone_id": "m1",
                                        "title": "意识形态责任书全覆盖", "year": 2024,
                                        "due_on": "2099-06-30"})
    with pytest.raises(Forbidden):  # 质控办 is not on 三.2
        app.programme.report_progress(QUALITY, {"number": "三.2", "text": "x", "evidence": ["y"]})
    with pytest.raises(Forbidden):
        app.programme.set_milestone(PUBLICITY, {"number": "三.2", "title": "x", "year": 2024,
                                                "due_on": "2024-01-01"})
    done = app.programme.report_progress(PUBLICITY, {
        "number": "三.2", "milestone_id": "m1", "text": "签订率100%", "completed": True,
        "evidence": ["责任书清单.xlsx"]})
    assert done["milestones"][0]["status"] == "completed" and done["status"] == "completed"
    assert done["reports"][0]["department_name"] == "宣传部"
    view = app.programme.department_view(PUBLICITY)
    assert {t["number"] for t in view["leads"]} == {"三.2", "三.3", "四.5", "四.6"}
    assert "二.1" in {t["number"] for t in view["cooperates"]}
    with pytest.raises(Forbidden):
        app.programme.department_view(PUBLICITY, "quality_control")


def test_an_overdue_milestone_is_recorded_exactly_once_across_a_restart(clean_databases):
    today = [dt.datetime(2024, 6, 1, tzinfo=dt.timezone.utc)]
    first = EvaluationApplication(clean_databases["evaluation"], clock=lambda: today[0])
    learn_departments(first)
    try:
        first.programme.set_milestone(ADMIN, {"number": "二.4", "milestone_id": "lectures",
                                              "title": "校领导每学期上党课", "year": 2024,
                                              "due_on": "2024-06-30"})
        first.programme.set_milestone(ADMIN, {"number": "二.4", "milestone_id": "report",
                                              "title": "双高专题汇报", "year": 2024,
                                              "due_on": "2024-12-31"})
        assert first.programme.detect_overdue() == 0
        today[0] = dt.datetime(2024, 7, 2, tzinfo=dt.timezone.utc)
        assert first.programme.detect_overdue() == 1
        assert first.programme.detect_overdue() == 0
    finally:
        first.close()
    # a restarted instance (and a second one) find the flag in the measure's events
    second = EvaluationApplication(clean_databases["evaluation"], clock=lambda: today[0])
    third = EvaluationApplication(clean_databases["evaluation"], clock=lambda: today[0])
    try:
        assert second.programme.detect_overdue() == 0
        assert third.programme.detect_overdue() == 0
        second.projector.rebuild()  # a rebuilt read model does not forget it either
        assert third.programme.detect_overdue() == 0
        envelopes = [e for e in second.read_envelopes(0, 5000)
                     if e["type"] == "task_milestone_overdue"]
        assert len(envelopes) == 1
        assert {k: envelopes[0]["data"][k] for k in ("milestone", "lead_department", "due_on")} \
            == {"milestone": "校领导每学期上党课", "lead_department": "general_office",
                "due_on": "2024-06-30"}
        view = second.programme.department_view(ADMIN, "general_office")
        assert [(o["number"], o["milestone_id"]) for o in view["overdue"]] == [("二.4", "lectures")]
        assert view["overdue"][0]["overdue_recorded_at"] is not None
        board = second.programme.programme_dashboard(ADMIN)["task_book"]
        assert [(o["number"], o["milestone"]) for o in board["overdue"]] == \
            [("二.4", "校领导每学期上党课")]
        assert board["by_status"]["overdue"]["numbers"] == ["二.4"]
    finally:
        second.close()
        third.close()


def test_yearly_summaries_a_department_and_a_college_can_cite(clean_databases):
    today = [dt.datetime(2024, 5, 1, tzinfo=dt.timezone.utc)]
    app = EvaluationApplication(clean_databases["evaluation"], clock=lambda: today[0])
    try:
        learn_departments(app)  # organizations' 15, as their events deliver them
        uni, tree = orgs(app, colleges=2, branches_per_college=2)
        college, other = list(tree)
        secretary = Caller(str(uuid.uuid4()), "college_secretary", str(college))
        for mid, due in (("m1", "2024-04-30"), ("m2", "2024-06-30"), ("m3", "2024-03-31")):
            app.programme.set_milestone(ADMIN, {"number": "三.2", "milestone_id": mid,
                                                "title": f"节点{mid}", "year": 2024,
                                                "due_on": due})
        app.programme.report_progress(PUBLICITY, {"number": "三.2", "milestone_id": "m1",
                                                  "text": "责任书签订完成", "completed": True,
                                                  "on": "2024-04-20", "evidence": ["清单.xlsx"]})
        app.programme.report_progress(secretary, {"number": "三.2", "text": "学院已签订责任书",
                                                  "on": "2024-04-21", "evidence": ["责任书.pdf"]})
        assert app.programme.detect_overdue() == 1  # m3 (due 03-31), not m2
        branch = tree[college][0]
        climb(app, branch, "school", outcome="failed",
              on=("2024-01-05", "2024-02-01", "2024-03-01", "2024-04-01", "2024-04-25"))
        app.programme.apply_innovation_project(secretary, {
            "round": "2024-2025", "org_id": str(branch), "name": "一支部一特色",
            "on": "2024-03-01"})
        app.programme.apply_innovation_project(ADMIN, {
            "round": "2024-2025", "org_id": str(tree[other][0]), "name": "别院项目",
            "on": "2024-03-01"})

        mine = app.programme.college_summary(secretary, str(college), 2024)
        assert [t["number"] for t in mine["cooperates"]][:2] == ["三.1", "三.2"]
        assert (mine["milestones"]["total"], mine["milestones"]["met"],
                mine["milestones"]["met_on_time"], mine["milestones"]["overdue"],
                mine["milestones"]["open"]) == (3, 1, 1, 1, 1)
        assert [r["text"] for r in mine["reports"]["items"]] == ["学院已签订责任书"]
        (candidacy,) = mine["candidacies"]
        assert (candidacy["stage"], candidacy["acceptance"]["outcome"]) == ("failed", "failed")
        assert [m["to_stage"] for m in candidacy["moves_this_year"]] == \
            ["cultivating", "applied", "accepted", "acceptance_review", "failed"]
        assert [p["name"] for p in mine["projects"]] == ["一支部一特色"]
        assert "未达标1项" in mine["citation"] and "党建创新项目1项" in mine["citation"]
        with pytest.raises(Forbidden):
            app.programme.college_summary(secretary, str(other), 2024)
        with pytest.raises(ValidationError) as err:
            app.programme.college_summary(ADMIN, str(branch), 2024)
        assert err.value.fields == ["college_id"]

        dept = app.programme.department_summary(PUBLICITY, "publicity", 2024)
        assert {t["number"] for t in dept["leads"]} == {"三.2", "三.3", "四.5", "四.6"}
        assert (dept["milestones"]["met"], dept["milestones"]["overdue"]) == (1, 1)
        assert [r["text"] for r in dept["reports"]["items"]] == ["责任书签订完成"]
        assert "逾期1个" in dept["citation"] and "报送进展1次" in dept["citation"]
        assert app.programme.department_summary(AUDITOR, "publicity", 2023)["milestones"][
            "total"] == 0
        with pytest.raises(Forbidden):
            app.programme.department_summary(PUBLICITY, "quality_control", 2024)
        with pytest.raises(ValidationError) as err:
            app.programme.department_summary(ADMIN, "all_colleges", 2024)
        assert err.value.fields == ["department"]
    finally:
        app.close()
