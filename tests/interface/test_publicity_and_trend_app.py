"""A complete 公示 and the star trend, on the real database with a controllable
clock: the school-wide 公示 list read by any member of the university during the
window; objections (异议) from members of any college, each decided by 组织部
(upheld → back to review 审核, re-reviewed, re-approved; dismissed, with its
reason); the star distribution's trend over two cycles against hand-written
figures (五.2, 三.4); the programme dashboard as of a date."""
import copy
import datetime as dt
import time
import uuid

import pytest

from services.evaluation.application import EvaluationApplication
from shared.errors import Forbidden, ValidationError
from shared.identity import Caller
from tests.unit.test_evaluation_scoring import TINY

ADMIN = Caller("zzb", "org_admin")
AUDITOR = Caller("jiwei", "auditor")
# TINY with every indicator full: score = 100 × 70% + appraisal × 30%
FULL = {"scores": {"a1": 10, "a2": 20, "b1": 5}, "evidence": {"a2": ["会议记录"]}}
APPRAISAL = {4: 50, 3: 0}  # 85 → ★4, 70 → ★3


def _moment() -> str:
    """A moment strictly between the events before and after it."""
    time.sleep(0.01)
    moment = dt.datetime.now(dt.timezone.utc).isoformat()
    time.sleep(0.01)
    return moment


@pytest.fixture
def school(clean_databases):
    """甲学院 (甲1, 甲2, 甲3) and 乙学院 (乙1, 乙2); a member in 甲1 and one in 乙1, a
    member who left, and 甲学院's secretary."""
    now = [dt.datetime.now(dt.timezone.utc)]
    app = EvaluationApplication(clean_databases["evaluation"], clock=lambda: now[0])
    ids = {"甲": uuid.uuid4(), "乙": uuid.uuid4()}
    with app.transaction() as curs:
        for college in ("甲", "乙"):
            curs.execute("INSERT INTO dir_orgs VALUES (%s,%s,'general_branch',2,NULL,NULL,"
                         "'active',now())", (ids[college], f"{college}学院"))
        for name in ("甲1", "甲2", "甲3", "乙1", "乙2"):
            ids[name] = uuid.uuid4()
            curs.execute("INSERT INTO dir_orgs VALUES (%s,%s,'teacher_branch',3,%s,NULL,"
                         "'active',now())", (ids[name], f"{name}支部", ids[name[0]]))
        for key, branch, active in (("m甲", "甲1", True), ("m乙", "乙1", True),
                                    ("left", "乙1", False), ("sec甲", "甲1", True)):
            ids[key] = uuid.uuid4()
            curs.execute("INSERT INTO dir_members VALUES (%s,%s,%s,'teacher','full',false,%s,"
                         "now())", (ids[key], key, ids[branch], active))
        curs.execute("INSERT INTO dir_roles VALUES (%s,%s,'secretary')", (ids["甲"], ids["sec甲"]))
    app.publish_scheme(ADMIN, {"definition": copy.deepcopy(TINY)})
    try:
        yield app, now, {k: str(v) for k, v in ids.items()}
    finally:
        app.close()


def open_and_approve(app, now, ids, name: str, stars: dict) -> dict:
    """A branch cycle with every branch reviewed at ``stars`` and approved (公示 opens)."""
    later = {s: (now[0] + dt.timedelta(days=d)).isoformat()
             for s, d in (("self_assessment", 1), ("review", 2), ("approval", 3))}
    cycle = app.open_cycle(ADMIN, {"name": name, "level": 3, "period": name[:4],
                                   "deadlines": later, "scheme_id": "tiny"})
    for branch, star in stars.items():
        payload = {"cycle_id": cycle["id"], "org_id": ids[branch], **FULL,
                   "appraisal": APPRAISAL[star]}
        app.submit_self_assessment(Caller("s", "branch_secretary", ids[branch]), payload)
        app.submit_review(ADMIN, payload)
    app.approve(ADMIN, {"cycle_id": cycle["id"], "org_ids": [ids[b] for b in stars]})
    return cycle


def figures(f: dict) -> tuple:
    return (f["rated"], f["four_or_above"]["count"], f["four_or_above"]["share"],
            f["three_or_below"]["count"])


def test_objections_from_any_member_decided_by_org_admin_and_the_trend(school):
    app, now, ids = school
    member_jia, member_yi = Caller(ids["m甲"], "member"), Caller(ids["m乙"], "member")
    names = {ids[k]: k for k in ("甲1", "甲2", "甲3", "乙1", "乙2")}

    # -- cycle 1 (2025): 甲1 ★4, 甲2 ★3, 甲3 ★4, 乙1 ★3, 乙2 ★3; no objection -----------
    first = open_and_approve(app, now, ids, "2025年度考评",
                             {"甲1": 4, "甲2": 3, "甲3": 4, "乙1": 3, "乙2": 3})
    now[0] += dt.timedelta(days=8)
    assert app.close_expired_publicity() == 5
    after_first = _moment()

    # -- cycle 2 (2026): 乙1 approved ★3 first, 甲2 ★4 ------------------------------------
    second = open_and_approve(app, now, ids, "2026年度考评",
                              {"甲1": 4, "甲2": 4, "甲3": 4, "乙1": 3, "乙2": 3})
    cid = second["id"]
    # the school-wide 公示 list: every member of the university, not only the branch's
    board = app.publicity_board(member_yi, cid)
    assert sorted(names[o["org_id"]] for o in board["organizations"]) == [
        "乙1", "乙2", "甲1", "甲2", "甲3"]
    jia1 = next(o for o in board["organizations"] if o["org_id"] == ids["甲1"])
    assert (jia1["stars"], jia1["score"], jia1["band"]) == (
        4, 85.0, {"stars": 4, "min": 80, "max": 90})
    assert jia1["college_name"] == "甲学院" and jia1["stage"] == "publicity"
    assert app.publicity_board(Caller(ids["sec甲"], "college_secretary", ids["甲"]), cid)
    for outsider in (Caller(str(uuid.uuid4()), "member"), Caller(ids["left"], "member"),
                     Caller("ops1", "ops")):
        with pytest.raises(Forbidden):
            app.publicity_board(outsider, cid)

    # objections: a member of 甲学院 objects to 乙1's result, one of 乙学院 to 甲2's
    lodged = app.lodge_objection(member_jia, {"cycle_id": cid, "org_id": ids["乙1"],
                                              "text": "乙1支部主题党日记录不实"})
    assert lodged["objection_no"] == 1
    app.lodge_objection(member_yi, {"cycle_id": cid, "org_id": ids["甲2"],
                                    "text": "甲2支部评议分偏高"})
    for outsider in (Caller(str(uuid.uuid4()), "member"), Caller(ids["left"], "member")):
        with pytest.raises(Forbidden):
            app.lodge_objection(outsider, {"cycle_id": cid, "org_id": ids["乙1"], "text": "x"})
    opened = app.open_objections(ADMIN, cid)
    assert [(names[o["org_id"]], o["objection_no"], o["objector"], o["status"])
            for o in opened["objections"]] == [("乙1", 1, ids["m甲"], "open"),
                                                ("甲2", 1, ids["m乙"], "open")]
    # 公示 does not end over an undecided objection: by hand or by the timer
    now[0] += dt.timedelta(days=8)
    with pytest.raises(ValidationError) as refused:
        app.close_publicity(ADMIN, {"cycle_id": cid, "org_ids": [ids["乙1"]]})
    assert refused.value.fields == ["objections"]
    assert app.close_expired_publicity() == 3  # 甲1, 甲3, 乙2
    # members read the list only while a window is open; 组织部 any time
    with pytest.raises(Forbidden):
        app.publicity_board(member_yi, cid)  # the windows have ended
    assert len(app.publicity_board(AUDITOR, cid)["organizations"]) == 5

    # 组织部 decides, a secretary cannot
    decide = {"cycle_id": cid, "org_id": ids["乙1"], "objection_no": 1,
              "decision": "upheld", "reason": "经核实，主题党日记录缺两次",
              "evidence": ["核查记录〔2026〕5号"]}
    with pytest.raises(Forbidden):
        app.decide_objection(Caller(ids["sec甲"], "college_secretary", ids["甲"]), decide)
    back = app.decide_objection(ADMIN, decide)
    assert back["stage"] == "review" and back["due"] is None  # no stage deadline
    dismissed = app.decide_objection(ADMIN, {"cycle_id": cid, "org_id": ids["甲2"],
                                             "objection_no": 1, "decision": "dismissed",
                                             "reason": "评议票据齐全，分数无误"})
    assert dismissed["stage"] == "publicity"
    with pytest.raises(ValidationError) as again:
        app.decide_objection(ADMIN, {**decide, "org_id": ids["甲2"], "decision": "dismissed"})
    assert again.value.fields == ["objection_no"]
    record = app.assessment_objections(AUDITOR, cid, ids["乙1"])["objections"]
    assert [(o["status"], o["decision"]["by"]["sub"], o["decision"]["reason"])
            for o in record] == [("upheld", "zzb", "经核实，主题党日记录缺两次")]
    assert record[0]["decision"]["at"] and record[0]["objector"] == ids["m甲"]
    # the objector reads their own objection's decision (without objectors' names)
    own = app.assessment_objections(member_jia, cid, ids["乙1"])["objections"]
    assert [(o["status"], "objector" in o) for o in own] == [("upheld", False)]
    assert app.assessment_objections(member_yi, cid, ids["乙1"])["objections"] == []
    assert app.open_objections(ADMIN, cid)["count"] == 0
    # each decision is an event naming the objector (notifications tells them)
    decided = [e for e in app.read_envelopes(0, 5000)
               if e["type"] == "assessment_objection_decided"]
    assert [(e["data"]["decision"], e["data"]["objector"], e["actor"]["sub"], e["reason"],
             e["evidence"]) for e in decided] == [
        ("upheld", ids["m甲"], "zzb", "经核实，主题党日记录缺两次", ["核查记录〔2026〕5号"]),
        ("dismissed", ids["m乙"], "zzb", "评议票据齐全，分数无误", None)]

    # the upheld result is reviewed again (★4 now), approved again, and made final
    payload = {"cycle_id": cid, "org_id": ids["乙1"], **FULL, "appraisal": APPRAISAL[4]}
    app.submit_review(ADMIN, payload)
    again = app.approve(ADMIN, {"cycle_id": cid, "org_ids": [ids["乙1"]]})["approved"][0]
    assert (again["stage"], again["stars"]) == ("publicity", 4)
    assert [o["org_id"] for o in app.publicity_board(member_yi, cid)["organizations"]] == [
        ids["乙1"]]
    app.close_publicity(ADMIN, {"cycle_id": cid, "org_ids": [ids["甲2"]]})
    now[0] += dt.timedelta(days=8)
    assert app.close_expired_publicity() == 1
    assert app.get_rating(ADMIN, ids["乙1"])["stars"] == 4

    # -- the trend, against hand-written figures ------------------------------------
    # 2025: school 2 of 5 at ★4+ (0.4), 3 at ★3-; 甲 2/3, 1; 乙 0/2, 2
    # 2026: school 4 of 5 (0.8), 1; 甲 3/3, 0; 乙 1/2, 1
    trend = app.star_trend(ADMIN)
    assert [c["name"] for c in trend["cycles"]] == ["2025年度考评", "2026年度考评"]
    assert [figures(f) for f in trend["school"]["branches"]] == [(5, 2, 0.4, 3),
                                                                (5, 4, 0.8, 1)]
    by_college = {c["college_name"]: [figures(f) for f in c["cycles"]]
                  for c in trend["colleges"]}
    assert by_college == {"甲学院": [(3, 2, 0.6667, 1), (3, 3, 1.0, 0)],
                          "乙学院": [(2, 0, 0.0, 2), (2, 1, 0.5, 1)]}
    yi = next(c for c in trend["colleges"] if c["college_name"] == "乙学院")
    assert sorted(names[o] for o in yi["cycles"][0]["three_or_below"]["org_ids"]) == [
        "乙1", "乙2"]
    assert [names[o] for o in yi["cycles"][1]["four_or_above"]["org_ids"]] == ["乙1"]
    branch = {names[o["org_id"]]: o["stars"] for o in trend["organizations"]}
    assert branch == {"甲1": [4, 4], "甲2": [3, 4], "甲3": [4, 4], "乙1": [3, 4],
                      "乙2": [3, 3]}
    # the school's figures are the colleges' summed (their ids are listed per college)
    assert "org_ids" not in trend["school"]["branches"][0]["four_or_above"]
    # a college secretary reads its own college's trend only
    own = app.star_trend(Caller(ids["sec甲"], "college_secretary", ids["甲"]))
    assert [c["college_name"] for c in own["colleges"]] == ["甲学院"]
    with pytest.raises(Forbidden):
        app.star_trend(Caller(ids["sec甲"], "college_secretary", ids["甲"]), college_id=ids["乙"])

    # -- as of a moment: only what was recorded by then ------------------------------
    today_plan = app.programme.programme_progress(ADMIN)["plan"]
    then = app.star_trend(ADMIN, as_of=after_first)
    assert [c["name"] for c in then["cycles"]] == ["2025年度考评"]
    assert [figures(f) for f in then["school"]["branches"]] == [(5, 2, 0.4, 3)]
    board = app.programme.programme_dashboard(ADMIN, as_of=after_first)
    assert board["star_trend"] == then and "not_as_of" not in board
    # targets and the task book as recorded by then: the shipped plan and 26 measures
    assert board["targets"]["plan"] == today_plan and board["task_book"]["measures"] == 26
    assert first["id"] in {c["cycle_id"] for c in board["star_trend"]["cycles"]}
    # today's school-wide dashboard: the same figures, without the lists (star_trend
    # gives them)
    today = app.programme.programme_dashboard(ADMIN)
    assert [figures(f) for f in today["star_trend"]["school"]["branches"]] == [
        (5, 2, 0.4, 3), (5, 4, 0.8, 1)]
    assert today["star_trend"]["organizations"] is None
    assert "org_ids" not in today["star_trend"]["colleges"][0]["cycles"][0]["four_or_above"]
    assert today["targets"] is not None and "not_as_of" not in today
    college = app.programme.programme_dashboard(ADMIN, college_id=ids["乙"])
    assert college["star_trend"] == app.star_trend(ADMIN, college_id=ids["乙"]) | {
        "as_of": college["star_trend"]["as_of"]}


def test_the_dashboard_as_of_a_date_shows_candidacies_at_their_stage_then(school):
    app, now, ids = school
    nominated = app.programme.nominate_candidacy(ADMIN, {
        "org_id": ids["甲1"], "tier": "school", "on": "2026-03-01", "reason": "党委推荐"})
    app.programme.move_candidacy(ADMIN, {"candidacy_id": nominated["id"], "to_stage": "applied",
                                         "on": "2026-05-10", "reason": "提交申报书"})

    def stages(board) -> dict:
        return {st["stage"]: [o["org_id"] for o in st["organizations"]]
                for t in board["candidacies"] if t["title"] == "model_branch"
                for tier in t["tiers"] if tier["tier"] == "school"
                for st in tier["stages"] if st["count"]}

    assert stages(app.programme.programme_dashboard(ADMIN, college_id=ids["甲"])) == {
        "applied": [ids["甲1"]]}
    assert stages(app.programme.programme_dashboard(ADMIN, as_of="2026-04-01")) == {
        "cultivating": [ids["甲1"]]}
    # a date means the whole of that day
    assert stages(app.programme.programme_dashboard(ADMIN, as_of="2026-05-10")) == {
        "applied": [ids["甲1"]]}
    assert stages(app.programme.programme_dashboard(ADMIN, as_of="2026-02-01")) == {}
    with pytest.raises(ValidationError):
        app.programme.programme_dashboard(ADMIN, as_of="not a date")
