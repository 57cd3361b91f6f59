"""Evaluation aggregates, pure: ratings (downgrade and restoration, direct
grading), the assessment workflow's rules, and the event contract the
notifications service relies on."""
import datetime as dt
import uuid

import pytest

from services.evaluation.ratings.domain import Assessment, Cycle, Rating, Scheme, stage_due
from services.evaluation.schemes import default_schemes, score
from shared.envelope import build_envelope
from shared.errors import ValidationError

ADMIN = {"sub": "zzb", "role": "org_admin"}
SEC = {"sub": "sec", "role": "branch_secretary"}
NOW = dt.datetime(2026, 3, 1, 8, 0, tzinfo=dt.timezone.utc)
TODAY = NOW.date()


def envelopes(aggregate):
    return [build_envelope(e, i, "evaluation") for i, e in enumerate(aggregate.collect_events())]


def make_cycle(days=(10, 20, 30), publicity_days=7.0, appeal_days=10.0):
    deadlines = {s: (NOW + dt.timedelta(days=d)).isoformat()
                 for s, d in zip(("self_assessment", "review", "approval"), days)}
    return Cycle.open(uuid.uuid4(), "2026年度考评", 3, "2026", ["b1", "b2"], deadlines,
                      "model_branch", 1, publicity_days, appeal_days, True, None, NOW, ADMIN)


def result(stars, s=85.0):
    return {"score": s, "stars": stars, "band_stars": stars}


def test_downgrade_on_major_problem_and_restoration_after_rectification():
    r = Rating.open_for("b1", "教工一支部", 3, ADMIN)
    r.apply_result(4, 86.2, "cycle", "c1", "model_branch", 1, {}, TODAY, 90, ADMIN)
    first = envelopes(r)
    # unrated → ★4: rating_changed only (not a fall to ★3 or below)
    assert [e["type"] for e in first] == ["rating_opened", "rating_underlying_set",
                                          "rating_changed"]
    # 重大问题: the scheme says downgrade to ★2; ★4 → ★2 at once, with a fall event
    r.record_major_problem("p1", "发生意识形态问题", 2, 90, TODAY, ADMIN, "纪委通报",
                           ["通报2026-3号"])
    events = envelopes(r)
    assert [e["type"] for e in events] == ["rating_major_problem_recorded", "rating_changed",
                                           "rating_fell_to_three_or_below"]
    changed, fell = events[1]["data"], events[2]["data"]
    assert (changed["stars_before"], changed["stars_after"], changed["cause"]) == \
        (4, 2, "major_problem")
    assert changed["score"] == 86.2 and changed["scheme_version"] == 1  # kept from the cycle
    # rectification due = 2026-03-01 + 90 days = 2026-05-30
    assert (fell["stars"], fell["previous_stars"], fell["rectification_due"]) == \
        (2, 4, "2026-05-30")
    assert events[0]["evidence"] == ["通报2026-3号"] and events[0]["reason"] == "纪委通报"
    # verification needs a plan and its completion first
    with pytest.raises(ValidationError) as e:
        r.verify_rectification("p1", TODAY, 90, ADMIN, "ok", None)
    assert e.value.fields == ["problem_id"]
    r.plan_rectification("p1", "整改方案", "2026-05-01", SEC)
    r.complete_rectification("p1", SEC, "已完成", ["整改报告"])
    r.verify_rectification("p1", TODAY, 90, ADMIN, "整改到位", ["验收记录"])
    events = envelopes(r)
    assert [e["type"] for e in events] == ["rating_rectification_planned",
                                           "rating_rectification_completed",
                                           "rating_rectification_verified", "rating_changed"]
    assert (events[-1]["data"]["stars_before"], events[-1]["data"]["stars_after"],
            events[-1]["data"]["cause"]) == (2, 4, "rectification_verified")


def test_two_open_problems_keep_the_cap_until_both_are_verified():
    r = Rating.open_for("b1", "一支部", 3, ADMIN)
    r.apply_result(5, 93.0, "cycle", "c1", "model_branch", 1, {}, TODAY, 90, ADMIN)
    r.record_major_problem("p1", "问题一", 3, 90, TODAY, ADMIN, "r", ["e"])
    r.record_major_problem("p2", "问题二", 2, 90, TODAY, ADMIN, "r", ["e"])
    assert r.stars == 2  # min(5, 3, 2)
    for p in ("p2", "p1"):
        r.plan_rectification(p, "plan", "2026-05-01", SEC)
        r.complete_rectification(p, SEC, None, ["done"])
    r.verify_rectification("p2", TODAY, 90, ADMIN, "ok", None)
    assert r.stars == 3  # p1 still open: capped at ★3
    r.verify_rectification("p1", TODAY, 90, ADMIN, "ok", None)
    assert r.stars == 5


def test_a_cycle_result_below_four_is_a_fall_and_names_its_scheme_version():
    r = Rating.open_for("b1", "一支部", 3, ADMIN)
    r.apply_result(3, 74.0, "cycle", "c1", "model_branch", 2, {}, TODAY, 90, ADMIN)
    types = [e["type"] for e in envelopes(r)]
    # ★3 and below owe a rectification (三.4), tracked like a major problem's
    assert types[-3:] == ["rating_changed", "rating_fell_to_three_or_below",
                          "rating_rectification_obliged"]
    assert r.problems["low-stars-c1"]["kind"] == "low_stars" and r.stars == 3
    r.apply_result(2, 65.0, "cycle", "c2", "model_branch", 2, {}, TODAY, 90, ADMIN)
    # ★3 → ★2 is no new fall, and the open obligation stands (one at a time)
    assert [e["type"] for e in envelopes(r)][-1] == "rating_changed"


def test_direct_grading_needs_reason_and_evidence_and_overrides_the_stars():
    cycle = make_cycle()
    a = Assessment.start(cycle.id, "b1", "一支部", 3, "c", ADMIN)
    a.submit("self_assessment", {}, result(4), cycle, NOW, SEC, None, None)
    a.submit("review", {}, result(3, 78.0), cycle, NOW, ADMIN, None, None)
    with pytest.raises(ValidationError) as e:
        a.grade_directly(5, ADMIN, "获评全国样板支部", [])
    assert e.value.fields == ["evidence"]
    a.grade_directly(5, ADMIN, "获评全国样板支部", ["教育部文件"])
    a.approve(78.0, 3, [], cycle, NOW, ADMIN)
    assert a.stars == 5 and a.stage == "publicity"
    approved = [e for e in envelopes(a) if e["type"] == "assessment_approved"][0]["data"]
    assert approved["stars"] == 5 and approved["band_stars"] == 3
    assert "直接定级" in approved["quota_notes"][0]


def test_deadlines_returns_extensions_and_reopened_review():
    cycle = make_cycle()
    a = Assessment.start(cycle.id, "b1", "一支部", 3, "c", ADMIN)
    late = NOW + dt.timedelta(days=11)
    with pytest.raises(ValidationError) as e:
        a.submit("self_assessment", {}, result(4), cycle, late, SEC, None, None)
    assert e.value.fields == ["deadlines.self_assessment"]
    a.extend("self_assessment", late + dt.timedelta(days=1), late, ADMIN, "外出培训")
    a.submit("self_assessment", {}, result(4), cycle, late, SEC, None, None)
    # a returned resubmission is due by the deadline of the stage that returned it …
    a.return_("补充材料", ADMIN)
    # … but this organisation's extension still wins over that
    assert a.due("self_assessment", cycle) == late + dt.timedelta(days=1)
    b = Assessment.start(cycle.id, "b2", "二支部", 3, "c", ADMIN)
    b.submit("self_assessment", {}, result(4), cycle, NOW, SEC, None, None)
    b.return_("补充材料", ADMIN)
    assert b.due("self_assessment", cycle) == cycle.deadline("review")
    b.submit("self_assessment", {}, result(4), cycle, NOW + dt.timedelta(days=15), SEC, None,
             None)  # after the self deadline, before the review deadline: accepted
    assert b.stage == "review"
    assert stage_due("review", cycle.deadlines, {}, None, True) is None  # reopened: no deadline


def test_publicity_objection_final_and_appeal_window():
    cycle = make_cycle(publicity_days=7, appeal_days=10)
    a = Assessment.start(cycle.id, "b1", "一支部", 3, "c", ADMIN)
    a.submit("self_assessment", {}, result(4), cycle, NOW, SEC, None, None)
    a.submit("review", {}, result(4), cycle, NOW, ADMIN, None, None)
    a.approve(85.0, 4, [], cycle, NOW, ADMIN)
    a.lodge_objection("材料不实", NOW + dt.timedelta(days=1), {"sub": "m1", "role": "member"})
    with pytest.raises(ValidationError):
        a.close_publicity(NOW + dt.timedelta(days=6), cycle, ADMIN)  # 公示 runs 7 days
    with pytest.raises(ValidationError):
        a.lodge_objection("太晚了", NOW + dt.timedelta(days=7), {"sub": "m1", "role": "member"})
    with pytest.raises(ValidationError) as undecided:  # the objection awaits a decision
        a.close_publicity(NOW + dt.timedelta(days=7), cycle, ADMIN)
    assert undecided.value.fields == ["objections"]
    a.decide_objection(1, "dismissed", ADMIN, "材料经核实无误")
    a.close_publicity(NOW + dt.timedelta(days=7), cycle, ADMIN)
    assert a.stage == "final"
    with pytest.raises(ValidationError):
        a.lodge_appeal("申诉", NOW + dt.timedelta(days=18), SEC)  # window: 10 days after final
    a.lodge_appeal("申诉", NOW + dt.timedelta(days=16), SEC)
    a.decide_appeal("dismissed", ADMIN, "维持原结果")
    assert a.stage == "final"
    data = [e for e in envelopes(a) if e["type"] == "assessment_appeal_decided"][0]["data"]
    assert data["decision"] == "dismissed" and data["appellant"] == "sec"


def test_objections_are_decided_upheld_back_to_review_or_dismissed_with_reason():
    cycle = make_cycle(publicity_days=7)
    a = Assessment.start(cycle.id, "b1", "一支部", 3, "c", ADMIN)
    a.submit("self_assessment", {}, result(4), cycle, NOW, SEC, None, None)
    a.submit("review", {}, result(4), cycle, NOW, ADMIN, None, None)
    a.approve(85.0, 4, [], cycle, NOW, ADMIN)
    a.lodge_objection("评议分偏高", NOW, {"sub": "m1", "role": "member"})
    a.lodge_objection("材料不实", NOW, {"sub": "m2", "role": "member"})
    assert [(o["no"], o["by"], o["status"]) for o in a.open_objections()] == [
        (1, "m1", "open"), (2, "m2", "open")]
    for no, decision, reason, field in ((3, "upheld", "r", "objection_no"),
                                        (1, "withdrawn", "r", "decision"),
                                        (1, "upheld", "", "reason")):
        with pytest.raises(ValidationError) as bad:
            a.decide_objection(no, decision, ADMIN, reason)
        assert bad.value.fields == [field]
    a.decide_objection(1, "dismissed", ADMIN, "评议票据齐全")
    with pytest.raises(ValidationError):  # decided once
        a.decide_objection(1, "upheld", ADMIN, "again")
    a.decide_objection(2, "upheld", ADMIN, "经核实，材料缺两份")
    assert (a.stage, a.reopened, a.publicity_ends_at) == ("review", True, None)
    assert a.due("review", cycle) is None  # the review is redone outside the deadlines
    assert [o["status"] for o in a.objections] == ["dismissed", "upheld"]
    assert a.open_objections() == []
    events = [e for e in envelopes(a) if e["type"] in (
        "assessment_objection_decided", "assessment_returned")]
    assert [(e["type"], e["data"].get("decision"), e["data"].get("objector"),
             e["data"].get("stage")) for e in events] == [
        ("assessment_objection_decided", "dismissed", "m1", None),
        ("assessment_objection_decided", "upheld", "m2", None),
        ("assessment_returned", None, None, "review")]
    assert events[1]["reason"] == "经核实，材料缺两份" and events[1]["actor"] == ADMIN
    # upheld only sends back a result in 公示
    b = Assessment.start(cycle.id, "b2", "二支部", 3, "c", ADMIN)
    b.submit("self_assessment", {}, result(4), cycle, NOW, SEC, None, None)
    b.submit("review", {}, result(4), cycle, NOW, ADMIN, None, None)
    b.approve(85.0, 4, [], cycle, NOW, ADMIN)
    b.lodge_objection("x", NOW, {"sub": "m1", "role": "member"})
    b.lodge_objection("y", NOW, {"sub": "m2", "role": "member"})
    b.decide_objection(1, "upheld", ADMIN, "成立")
    with pytest.raises(ValidationError) as late:
        b.decide_objection(2, "upheld", ADMIN, "也成立")
    assert late.value.fields == ["decision"]
    b.decide_objection(2, "dismissed", ADMIN, "已随第1号异议重新审核")


def test_cycle_open_reports_every_error():
    with pytest.raises(ValidationError) as e:
        Cycle.open(uuid.uuid4(), "", 3, "2026", [], {"self_assessment": "2020-01-01",
                                                      "review": "not a date", "extra": "x"},
                   "model_branch", 1, 0, 10, True, None, NOW, ADMIN)
    assert set(e.value.fields) == {"name", "org_ids", "deadlines.self_assessment",
                                   "deadlines.review", "deadlines.approval", "deadlines.extra",
                                   "publicity_days"}


def test_event_contract_for_notifications():
    cycle = make_cycle()
    opened = envelopes(cycle)[0]
    assert opened["type"] == "cycle_opened"
    assert {"name", "level", "period", "org_ids", "deadlines", "scheme_id", "scheme_version",
            "publicity_days"} <= set(opened["data"])
    assert set(opened["data"]["deadlines"]) == {"self_assessment", "review", "approval"}
    cycle.add_organization("b3", "三支部", ADMIN)
    cycle.drop_organization("b2", ADMIN, "撤销")
    assert [(e["type"], e["data"]["org_id"]) for e in envelopes(cycle)] == [
        ("cycle_organization_added", "b3"), ("cycle_organization_dropped", "b2")]
    a = Assessment.start(cycle.id, "b1", "一支部", 3, "c", ADMIN)
    a.submit("self_assessment", {}, result(4), cycle, NOW, SEC, "自评说明", {"x": ["doc"]})
    a.return_("补充", ADMIN)
    types = {e["type"]: e for e in envelopes(a)}
    sub = types["assessment_submitted"]
    assert {sub["data"][k] for k in ("stage",)} == {"self_assessment"}
    assert sub["data"]["cycle_id"] == str(cycle.id) and sub["evidence"] == {"x": ["doc"]}
    ret = types["assessment_returned"]["data"]
    assert (ret["stage"], ret["comments"], ret["org_id"]) == ("self_assessment", "补充", "b1")
    scheme = Scheme.register("model_branch", 3, ADMIN)
    definition = [d for d in default_schemes() if d["level"] == 3][0]
    assert scheme.publish(definition, ADMIN) == 1
    with pytest.raises(ValidationError):
        scheme.publish(definition, ADMIN)  # identical: no new version
    changed = dict(definition, title="样板支部 七个有力 (2027修订)")
    assert scheme.publish(changed, ADMIN) == 2
    assert scheme.definition(1)["title"] != scheme.definition(2)["title"]  # v1 unchanged


def test_default_scheme_scores_a_branch_hand_computed():
    definition = [d for d in default_schemes() if d["level"] == 3][0]
    scores = {i["code"]: i["max_score"] for i in definition["indicators"]}
    scores["theme_party_day_plus"] = 5  # educate_members: 15 × (50% × 1 + 50% × 0.5) = 11.25
    out = score(definition, {"scores": scores, "appraisal": 80, "bonus": ["provincial_honour"],
                             "deductions": ["dues_late"]})
    # base = 100 − 15 + 11.25 = 96.25; bonus and deductions inside the base part (default):
    # (96.25 + 3 − 2) × 70% + 80 × 30% = 68.075 + 24 = 92.075 → 92.08 → ★5
    assert out["base"] == 96.25 and out["score"] == 92.08 and out["stars"] == 5


# -- topics stored before the ratings package (services.evaluation.domain) -----------
def test_events_stored_under_the_old_module_path_still_decode():
    """The aggregates moved from ``services.evaluation.domain`` to
    ``services.evaluation.ratings``: an event stored with the old topic decodes
    to the same class, with its state, and so does an aggregate's own topic
    (snapshots and the ``originator_topic`` of created events)."""
    from eventsourcing.persistence import (DatetimeAsISO, DecimalAsStr, JSONTranscoder,
                                           Mapper, StoredEvent, UUIDAsHex)
    from eventsourcing.utils import resolve_topic

    transcoder = JSONTranscoder()
    for transcoding in (UUIDAsHex(), DatetimeAsISO(), DecimalAsStr()):
        transcoder.register(transcoding)
    mapper = Mapper(transcoder=transcoder)
    cycle = make_cycle()
    a = Assessment.start(cycle.id, "b1", "一支部", 3, None, ADMIN)
    entries = {"scores": {}, "evidence": {}, "bonus": [], "deductions": [], "vetoes": [],
               "appraisal": None}
    a.submit("self_assessment", entries, {"score": 80.0, "stars": 4}, cycle, NOW, SEC,
             "自评", None)
    started, submitted = a.collect_events()
    stored = mapper.to_stored_event(submitted)
    assert stored.topic == "services.evaluation.ratings.domain:Assessment.Submitted"
    old = StoredEvent(originator_id=stored.originator_id,
                      originator_version=stored.originator_version,
                      topic="services.evaluation.domain:Assessment.Submitted", state=stored.state)
    decoded = mapper.to_domain_event(old)
    assert type(decoded) is Assessment.Submitted
    assert (decoded.stage, decoded.score, decoded.stars) == ("self_assessment", 80.0, 4)
    for name, cls in (("Assessment", Assessment), ("Cycle", Cycle), ("Rating", Rating),
                      ("Scheme", Scheme), ("Rating.Changed", Rating.Changed),
                      ("Cycle.Opened", Cycle.Opened), ("Scheme.Published", Scheme.Published)):
        assert resolve_topic(f"services.evaluation.domain:{name}") is cls
    assert started.originator_topic == "services.evaluation.ratings.domain:Assessment"
