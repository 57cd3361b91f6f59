"""Linkage rules (联动规则) on the real database: R1 caps with every trigger named
(alone and together), R2 nominations and refusals, R3/R4 reports, and the
rectification owed at ★3 and below."""
import datetime as dt
import uuid

import pytest

from services.evaluation.ratings.domain import Rating
from shared.errors import Forbidden, ValidationError
from shared.identity import Caller
from tests.interface.test_members_index_app import ADMIN, AUDITOR, YEAR, day, world  # noqa: F401

TODAY = dt.date.today()


def rate(w, org_id, stars):
    w.sync()
    org = w.ev.directory.org(org_id)
    rating = Rating.open_for(org["id"], org["name"], org["level"], ADMIN.as_actor()) \
        if not w.ev.exists(Rating.id_for(org["id"])) else w.ev.load(Rating.id_for(org["id"]),
                                                                    Rating, "rating")
    rating.apply_result(stars, 60.0 + 8 * stars, "cycle", str(uuid.uuid4()),
                        "model_branch" if org["level"] == 3 else "benchmark_college", 1, {},
                        TODAY, 90, ADMIN.as_actor())
    w.ev.commit(rating)


def codes(review):
    return [c["code"] for c in review["conditions"]]


def test_r1_each_trigger_alone_and_together(world):  # noqa: F811
    w = world
    a, b = w.branches
    c0, c1 = w.colleges
    w.org.assign_role(ADMIN, {"org_id": a, "member_id": w.members[a][0], "role": "secretary"})
    w.sync()
    for org, stars in ((a, 3), (b, 4), (c0, 5), (c1, 4)):
        rate(w, org, stars)
    link = w.ev.linkage

    # none: ★4, nothing recorded → the proposed grade stands, 优秀 allowed
    out = link.propose_grade(ADMIN, {"org_id": c1, "year": YEAR, "grade": "good"})
    assert (out["grade"], out["capped"], out["conditions"]) == ("good", False, [])
    assert out["annual_excellent_eligible"]

    # stars below ★4 alone
    out = link.propose_grade(Caller("c0", "college_secretary", c0),
                             {"org_id": a, "year": YEAR, "grade": "good"})
    assert (out["proposed"], out["grade"], out["grade_zh"]) == ("good", "fair", "一般")
    assert codes(out) == ["stars_below"] and "星级低于四星" in out["conditions"][0]["reason"]
    assert not out["annual_excellent_eligible"]
    assert out["responsible"][0]["member_id"] == w.members[a][0]

    # creation not up to standard alone: from the programme (a candidacy failed this year)
    candidacy = w.ev.programme.nominate_candidacy(ADMIN, {
        "org_id": b, "tier": "school", "on": str(TODAY - dt.timedelta(days=5)),
        "reason": "培育样板支部"})
    cid = candidacy.get("id") or candidacy.get("candidacy_id")
    for stage in ("applied", "accepted", "acceptance_review"):
        w.ev.programme.move_candidacy(ADMIN, {"candidacy_id": cid, "to_stage": stage,
                                              "on": str(TODAY - dt.timedelta(days=1)),
                                              "reason": "验收意见：三会一课记录不全",
                                              "evidence": ["验收意见书"]})
    # 校级 验收 is scored with the branch's scheme (七个有力): zeros fail it (未达标)
    scheme = w.ev.get_scheme(ADMIN, "model_branch")["definition"]
    w.ev.programme.score_acceptance(ADMIN, {
        "candidacy_id": cid, "on": str(TODAY - dt.timedelta(days=1)),
        "reason": "验收意见：三会一课记录不全", "documents": ["验收意见书"], "appraisal": 0,
        "scores": {i["code"]: 0 for i in scheme["indicators"]
                   if w.ev.programme._acceptance_derive(b, YEAR)(i) is None}})
    out = link.propose_grade(ADMIN, {"org_id": b, "year": YEAR, "grade": "fairly_good"})
    assert out["grade"] == "fair" and codes(out) == ["creation_failed"]
    assert "验收未达标" in out["conditions"][0]["reason"]
    assert "三会一课记录不全" in out["conditions"][0]["reason"]
    # … or recorded by 组织部
    link.record_creation_failed(ADMIN, {"org_id": c1, "year": YEAR,
                                        "reason": "样板支部创建验收未达标"})
    out = link.propose_grade(ADMIN, {"org_id": c1, "year": YEAR, "grade": "good"})
    assert out["grade"] == "fair" and codes(out) == ["creation_failed"]
    assert "样板支部创建验收未达标" in out["conditions"][0]["reason"]

    # a major problem alone: recorded this year, rectified, the stars restored
    w.ev.record_major_problem(ADMIN, {"org_id": c0, "description": "违规发放津贴",
                                      "reason": "巡察发现", "evidence": ["巡察报告"],
                                      "problem_id": "p1"})
    w.ev.plan_rectification(ADMIN, {"org_id": c0, "problem_id": "p1", "plan": "退回",
                                    "due": str(TODAY + dt.timedelta(days=30))})
    w.ev.complete_rectification(ADMIN, {"org_id": c0, "problem_id": "p1", "evidence": ["凭证"]})
    w.ev.verify_rectification(ADMIN, {"org_id": c0, "problem_id": "p1", "reason": "已整改"})
    assert w.ev.get_rating(ADMIN, c0)["stars"] == 5
    out = link.propose_grade(ADMIN, {"org_id": c0, "year": YEAR, "grade": "good"})
    assert out["grade"] == "fair" and codes(out) == ["major_problem"]
    assert "违规发放津贴" in out["conditions"][0]["reason"]

    # all three together, each named; the earlier proposal is kept in the history
    link.record_creation_failed(ADMIN, {"org_id": a, "year": YEAR, "reason": "未达标"})
    w.ev.record_major_problem(ADMIN, {"org_id": a, "description": "组织生活不正常",
                                      "reason": "督查", "evidence": ["督查通报"]})
    out = link.propose_grade(ADMIN, {"org_id": a, "year": YEAR, "grade": "fairly_good"})
    assert sorted(codes(out)) == ["creation_failed", "major_problem", "stars_below"]
    assert out["grade"] == "fair" and out["proposals"] == 2
    # a proposal already below the cap stays where it is
    assert link.propose_grade(ADMIN, {"org_id": a, "year": YEAR, "grade": "poor"})[
        "grade"] == "poor"
    history = w.ev.history(link._review(w.ev.directory.org(a), YEAR).id)
    proposals = [h for h in history if h["type"] == "annual_review_grade_proposed"]
    assert [(p["data"]["proposed"], p["data"]["grade"], p["data"]["capped"])
            for p in proposals] == [("good", "fair", True), ("fairly_good", "fair", True),
                                    ("poor", "poor", False)]

    with pytest.raises(ValidationError) as e:
        link.propose_grade(ADMIN, {"org_id": a, "year": YEAR, "grade": "excellent"})
    assert e.value.fields == ["grade"]
    for caller in (Caller("c1", "college_secretary", c1), Caller("s", "branch_secretary", a),
                   AUDITOR):
        with pytest.raises(Forbidden):
            link.propose_grade(caller, {"org_id": a, "year": YEAR, "grade": "good"})


def test_low_stars_owe_a_rectification(world):  # noqa: F811
    w = world
    a, b = w.branches
    rate(w, a, 3)
    rate(w, b, 4)
    rating = w.ev.get_rating(ADMIN, a)
    owed = [p for p in rating["problems"] if p["kind"] == "low_stars"]
    assert len(owed) == 1 and owed[0]["status"] == "open" and rating["stars"] == 3
    assert w.ev.get_rating(ADMIN, b)["problems"] == []
    pid = owed[0]["problem_id"]
    w.ev.plan_rectification(Caller("s", "branch_secretary", a), {
        "org_id": a, "problem_id": pid, "plan": "规范三会一课",
        "due": str(TODAY + dt.timedelta(days=60))})
    w.ev.complete_rectification(Caller("s", "branch_secretary", a), {
        "org_id": a, "problem_id": pid, "evidence": ["整改报告"]})
    w.ev.verify_rectification(ADMIN, {"org_id": a, "problem_id": pid, "reason": "验收通过"})
    after = w.ev.get_rating(ADMIN, a)
    assert after["stars"] == 3 and after["problems"][0]["status"] == "verified"
    rate(w, a, 4)  # the next cycle lifts it: the stars were never capped by the obligation
    assert w.ev.get_rating(ADMIN, a)["stars"] == 4


def test_r2_nominations_refusals_and_award(world):  # noqa: F811
    w = world
    a, b = w.branches
    c0, c1 = w.colleges
    m = w.members[a]
    rate(w, a, 3)
    rate(w, c1, 4)
    sec = Caller("sec-a", "branch_secretary", a)
    # m0: everything an 优秀共产党员 needs: 6 + 3 + 5 + 3 + 3 = 20 → index 80
    for month in (3, 4, 5, 6):
        w.org.records.record_meeting(sec, {"branch_id": a, "kind": "party_lecture",
                                           "held_on": day(month), "topic": f"{month}月党课",
                                           "attendees": m})
    for kind, details in (("team", {"team": "攻坚团队"}), ("appraisal", {"grade": "excellent"}),
                          ("checkup", {"period": str(YEAR), "items": {"理想信念": "坚定"},
                                       "result": "excellent"}),
                          ("course_project", {"title": "课程思政示范课", "status": "completed"})):
        w.org.records.record_member_record(sec, {"member_id": m[0], "kind": kind,
                                                 "on": day(9), "details": details})
    # m1: 基本合格 and a 底线 violation
    w.org.records.record_member_record(sec, {"member_id": m[1], "kind": "appraisal",
                                             "on": day(9),
                                             "details": {"grade": "basically_qualified"}})
    w.org.records.record_member_record(ADMIN, {
        "member_id": m[1], "kind": "violation", "on": day(8),
        "details": {"line": "bottom_line", "description": "无故不参加组织生活",
                    "finding": "纪委办通报"}, "evidence": ["通报"]})
    w.sync()
    link = w.ev.linkage

    refused = link.nominate(sec, {"kind": "advanced_organization", "subject_id": a,
                                  "year": YEAR})
    assert refused["status"] == "refused"
    assert [f["code"] for f in refused["failed"]] == ["min_stars"]
    assert "★3" in refused["failed"][0]["message"]

    refused = link.nominate(sec, {"kind": "excellent_member", "subject_id": m[1], "year": YEAR})
    assert [f["code"] for f in refused["failed"]] == ["appraisal", "no_violation", "min_index"]
    assert "基本合格" in refused["failed"][0]["message"]
    assert "无故不参加组织生活" in refused["failed"][1]["message"]

    refused = link.nominate(sec, {"kind": "excellent_worker", "subject_id": m[0], "year": YEAR})
    assert [f["code"] for f in refused["failed"]] == ["holds_role"]

    ok = link.nominate(sec, {"kind": "excellent_member", "subject_id": m[0], "year": YEAR,
                             "reason": "攻坚团队骨干"})
    assert ok["status"] == "nominated" and ok["failed"] == []
    with pytest.raises(ValidationError):  # not yet reviewed
        link.award_nomination(ADMIN, {"nomination_id": ok["nomination_id"]})
    with pytest.raises(Forbidden):
        link.review_nomination(sec, {"nomination_id": ok["nomination_id"],
                                     "decision": "approve", "reason": "x"})
    link.review_nomination(ADMIN, {"nomination_id": ok["nomination_id"], "decision": "approve",
                                   "reason": "材料齐全"})
    awarded = link.award_nomination(ADMIN, {"nomination_id": ok["nomination_id"],
                                            "reason": "2026年度表彰"})
    assert awarded["status"] == "awarded"
    assert [h["status"] for h in awarded["history"]] == ["nominated", "reviewed", "awarded"]

    college = link.nominate(ADMIN, {"kind": "advanced_organization", "subject_id": c1,
                                    "year": YEAR})
    assert college["status"] == "nominated"
    with pytest.raises(Forbidden):  # another branch's secretary
        link.nominate(Caller("sec-b", "branch_secretary", b),
                      {"kind": "excellent_member", "subject_id": m[0], "year": YEAR})
    assert len(link.list_nominations(sec, YEAR)) == 4

    # R3 and R4: 6 party-member teachers; one in a team, one with a completed project
    r3 = link.r3_report(ADMIN, {"year": YEAR})
    assert r3["school"] == {"teachers": 6, "in_team": 1, "without_team": 5}
    r4 = link.r4_report(Caller("c0", "college_secretary", c0), {"year": YEAR})
    assert r4["school"]["completed"] == 1 and r4["school"]["teachers"] == 3
    assert r4["school"]["share"] == round(1 / 3, 4) and not r4["school"]["meets_goal"]
    with pytest.raises(Forbidden):
        link.r4_report(Caller("c0", "college_secretary", c0), {"year": YEAR, "college_id": c1})
