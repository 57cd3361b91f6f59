"""The programme's answers as of a moment, from the read models' validity history
(no replay): a plan's targets before and after they change, a measure's
milestones before and after one is flagged overdue and then completed, its
departments before and after a reassignment, and 各二级学院 as the colleges
existing at the moment. Moments are the recording times of what was done."""
import datetime as dt
import time
import uuid

import pytest

from services.evaluation.application import EvaluationApplication
from shared.errors import NotFound
from shared.identity import Caller
from tests.helpers import learn_departments

ADMIN = Caller("zzb", "org_admin")
AUDITOR = Caller("jwb", "auditor")


@pytest.fixture
def app(clean_databases):
    application = EvaluationApplication(clean_databases["evaluation"])
    learn_departments(application)
    yield application
    application.close()


def moment() -> str:
    """Now, between two recordings (a moment strictly after the last one)."""
    time.sleep(0.01)
    at = dt.datetime.now(dt.timezone.utc).isoformat()
    time.sleep(0.01)
    return at


def milestones(task):
    return [(m["milestone_id"], m["status"], m["overdue"], m["overdue_recorded_at"] is not None,
             m["completed_on"]) for m in task["milestones"]]


def test_targets_task_book_and_colleges_as_of_two_moments(app):
    uni, colleges = uuid.uuid4(), {}
    with app.transaction() as curs:
        curs.execute("INSERT INTO dir_orgs (id, name, kind, level, parent_id, basis, status, "
                     "updated_at) VALUES (%s,'学校党委','university_committee',1,NULL,NULL,"
                     "'active',now())", (uni,))
        for name in ("甲学院", "乙学院"):
            colleges[name] = uuid.uuid4()
            curs.execute("INSERT INTO dir_orgs (id, name, kind, level, parent_id, basis, status, "
                         "updated_at, created_at) VALUES (%s,%s,'general_branch',2,%s,NULL,"
                         "'active',now(),now())", (colleges[name], name, uni))
    today = dt.date.today()
    late, next_ = (today - dt.timedelta(days=10)).isoformat(), \
        (today + dt.timedelta(days=30)).isoformat()
    app.programme.set_milestone(ADMIN, {"number": "三.1", "milestone_id": "late",
                                        "title": "完成换届", "year": today.year, "due_on": late})
    app.programme.set_milestone(ADMIN, {"number": "三.1", "milestone_id": "next",
                                        "title": "组织生活会", "year": today.year,
                                        "due_on": next_})
    t0 = moment()
    assert app.programme.detect_overdue() == 1  # 'late' flagged
    t1 = moment()
    # then: the milestone is completed, the targets change, the measure is reassigned,
    # 乙学院 is dissolved and 丙学院 created
    app.programme.report_progress(ADMIN, {"number": "三.1", "milestone_id": "late",
                                          "text": "换届完成", "completed": True,
                                          "on": today.isoformat(), "evidence": ["换届.pdf"]})
    app.programme.define_plan(ADMIN, {"code": "2020-2023", "reason": "中期调整目标",
                                      "targets": [{"title": "model_branch", "tier": "school",
                                                   "min": 2, "max": 3}]})
    app.programme.reassign_departments(ADMIN, {"number": "三.1",
                                               "cooperating": ["all_colleges", "publicity"],
                                               "reason": "宣传部配合"})
    with app.transaction() as curs:
        curs.execute("UPDATE dir_orgs SET status = 'dissolved', closed_at = now() "
                     "WHERE id = %s", (colleges["乙学院"],))
        curs.execute("INSERT INTO dir_orgs (id, name, kind, level, parent_id, basis, status, "
                     "updated_at, created_at) VALUES (%s,'丙学院','general_branch',2,%s,NULL,"
                     "'active',now(),now())", (uuid.uuid4(), uni))
    t2 = moment()

    def task(as_of):
        return next(t for t in app.programme.list_tasks(AUDITOR, as_of=as_of)
                    if t["number"] == "三.1")

    # -- t0: both milestones open, 'late' past its day but not yet flagged ------------
    then = task(t0)
    assert milestones(then) == [("late", "open", True, False, None),
                                ("next", "open", False, False, None)]
    assert then["status"] == "overdue"
    assert sorted(c["name"] for c in then["cooperating"]) == sorted(["甲学院", "乙学院"])
    board = app.programme.programme_dashboard(ADMIN, as_of=t0)
    assert "not_as_of" not in board
    assert [(t["title"], t["tier"], t["target_min"]) for t in board["targets"]["targets"]] == [
        ("demonstration_university", "national", 1), ("benchmark_college", "national", 1),
        ("model_branch", "national", 1), ("benchmark_college", "provincial", 3),
        ("model_branch", "provincial", 3)]
    assert board["targets"]["brands"]["target_min"] == 10
    assert board["task_book"]["measures"] == 26
    assert board["task_book"]["by_status"]["overdue"]["numbers"] == ["三.1"]
    assert [(o["number"], o["milestone_id"]) for o in board["task_book"]["overdue"]] == \
        [("三.1", "late")]
    # -- t1: the flag is recorded -------------------------------------------------------
    assert milestones(task(t1))[0] == ("late", "open", True, True, None)
    # -- t2 and now: completed, retargeted, reassigned, the colleges of the day ----------
    for as_of in (t2, None):
        now = task(as_of)
        assert milestones(now) == [("late", "completed", False, True, today.isoformat()),
                                   ("next", "open", False, False, None)]
        assert now["status"] == "in_progress"
        assert sorted(c["name"] for c in now["cooperating"]) == sorted(["甲学院", "丙学院", "宣传部"])
        progress = app.programme.programme_progress(AUDITOR, as_of=as_of)
        assert [(t["title"], t["tier"], t["target_min"], t["target_max"])
                for t in progress["targets"]] == [("model_branch", "school", 2, 3)]
        assert progress["brands"] is None
    board = app.programme.programme_dashboard(ADMIN, as_of=t2)
    assert board["task_book"]["by_status"]["overdue"]["count"] == 0
    assert board["task_book"]["by_status"]["in_progress"]["numbers"] == ["三.1"]
    # the progress view as of t0 still has the plan's first targets
    assert len(app.programme.programme_progress(AUDITOR, as_of=t0)["targets"]) == 5
    # the department views as of each moment
    assert "三.1" not in [t["number"] for t in
                          app.programme.department_view(ADMIN, "publicity", as_of=t0)["cooperates"]]
    assert "三.1" in [t["number"] for t in
                      app.programme.department_view(ADMIN, "publicity", as_of=t2)["cooperates"]]
    lead = app.programme.department_view(ADMIN, "organization", as_of=t1)
    assert [(o["number"], o["milestone_id"]) for o in lead["overdue"]] == [("三.1", "late")]
    assert app.programme.department_view(ADMIN, "organization", as_of=t2)["overdue"] == []
    # before anything was recorded: no plan, no measure
    early = app.programme.programme_dashboard(ADMIN, as_of="2000-01-01")
    assert early["targets"] is None and early["task_book"]["measures"] == 0
    with pytest.raises(NotFound):
        app.programme.programme_progress(AUDITOR, as_of="2000-01-01")


def test_all_colleges_means_the_colleges_existing_then_as_organizations_events_say(app):
    from services.organizations.domain import Organization
    from tests.helpers import deliver_events

    actor = {"sub": "zzb", "role": "org_admin"}
    committee = Organization.found("学校党委", "committee", None, actor)
    first = Organization.found("机电学院党总支", "general_branch", committee, actor)
    second = Organization.found("艺术学院党总支", "general_branch", committee, actor)
    deliver_events(app, committee, first, second)
    before = moment()
    second.dissolve(0, actor, "撤并")
    third = Organization.found("智能制造学院党总支", "general_branch", committee, actor)
    deliver_events(app, second, third)
    after = moment()
    row = app.query_one("SELECT created_at, closed_at, status FROM dir_orgs WHERE id = %s",
                        (second.id,))
    assert row["status"] == "dissolved" and row["created_at"] < row["closed_at"]

    def colleges(as_of):
        task = next(t for t in app.programme.list_tasks(AUDITOR, as_of=as_of)
                    if t["number"] == "三.1")
        return sorted(c["name"] for c in task["cooperating"])

    assert colleges(before) == sorted(["机电学院党总支", "艺术学院党总支"])
    assert colleges(after) == colleges(None) == sorted(["机电学院党总支", "智能制造学院党总支"])
