"""Pure tests of the notifications domain: contacts, rules data, templates, backoff, signing."""
import hashlib
import hmac
import uuid

import pytest

from services.notifications.application import load_rules
from services.notifications.domain import (Contact, RulesError, backoff_delay, channels_for,
                                           contact_id_for, lookup, parse_rules,
                                           webhook_signature)
from services.notifications.templates import Renderer, TemplateProblem, format_when
from shared.errors import ValidationError

ACTOR = {"sub": "admin", "role": "org_admin"}
RULES = load_rules()


def test_register_member_contact_normalises_and_keys_by_recipient():
    mid = str(uuid.uuid4())
    c = Contact.register(mid.upper(), "  张  三 ", "member", "zhang@example.edu",
                         "https://robot.example/hook", ["org_admin", "org_admin"], ACTOR)
    assert c.recipient_id == mid
    assert c.id == contact_id_for(mid)
    assert c.name == "张 三"
    assert c.groups == ["org_admin"]


@pytest.mark.parametrize("kwargs, field", [
    (dict(recipient_id="not-a-uuid", kind="member"), "recipient_id"),
    (dict(email="no-at-sign"), "email"),
    (dict(webhook_url="ftp://x"), "webhook_url"),
    (dict(groups=["Bad Group"]), "groups"),
    (dict(name=""), "name"),
    (dict(kind="robot"), "kind"),
])
def test_register_rejects_bad_fields_by_name(kwargs, field):
    args = dict(recipient_id="li.zzb", name="李老师", kind="staff", email=None,
                webhook_url=None, groups=[])
    args.update(kwargs)
    with pytest.raises(ValidationError) as err:
        Contact.register(actor=ACTOR, **args)
    assert err.value.fields == [field]


def test_change_records_only_what_differs_and_refuses_no_change():
    c = Contact.register("li.zzb", "李老师", "staff", "li@example.edu", None, [], ACTOR)
    c.change(ACTOR, "换邮箱", email="li2@example.edu", name="李老师")
    assert c.email == "li2@example.edu"
    changed = c.collect_events()[-1]
    assert changed.changes == {"email": "li2@example.edu"}
    with pytest.raises(ValidationError) as err:
        c.change(ACTOR, None, email="li2@example.edu")
    assert err.value.fields == ["changes"]


def test_preferences_always_keep_the_inbox_and_check_types_and_channels():
    c = Contact.register("li.zzb", "李老师", "staff", None, None, [], ACTOR)
    c.set_preferences({"rating_changed": ["email"], "*": []}, RULES.notice_types, ACTOR)
    assert c.preferences == {"rating_changed": ["email", "inbox"], "*": ["inbox"]}
    with pytest.raises(ValidationError) as err:
        c.set_preferences({"no_such_type": ["email"]}, RULES.notice_types, ACTOR)
    assert err.value.fields == ["preferences"]
    with pytest.raises(ValidationError) as err:
        c.set_preferences({"rating_changed": ["pigeon"]}, RULES.notice_types, ACTOR)
    assert err.value.fields == ["preferences.rating_changed"]


def test_channels_for_uses_type_then_wildcard_then_default():
    default = ["inbox", "email", "webhook"]
    assert channels_for(None, "rating_changed", default) == ["email", "inbox", "webhook"]
    prefs = {"rating_changed": ["inbox"], "*": ["inbox", "webhook"]}
    assert channels_for(prefs, "rating_changed", default) == ["inbox"]
    assert channels_for(prefs, "cycle_opened", default) == ["inbox", "webhook"]


def test_deactivate_needs_a_reason_and_blocks_changes():
    c = Contact.register("li.zzb", "李老师", "staff", None, None, [], ACTOR)
    with pytest.raises(ValidationError):
        c.deactivate(ACTOR, None)
    c.deactivate(ACTOR, "调离")
    assert not c.active
    with pytest.raises(ValidationError) as err:
        c.change(ACTOR, None, email="x@example.edu")
    assert err.value.fields == ["recipient_id"]


def test_shipped_rules_cover_every_contract_event():
    events = {(r.source, r.event) for r in RULES.rules}
    assert {("evaluation", e) for e in (
        "cycle_opened", "assessment_returned", "assessment_publicity_opened",
        "assessment_objection_lodged", "assessment_appeal_decided", "rating_changed",
        "rating_fell_to_three_or_below")} <= events
    assert {("evaluation", e) for e in (
        "pioneer_index_published", "pioneer_index_revised", "annual_review_grade_proposed",
        "nomination_refused", "nomination_awarded")} <= events
    zeroed = RULES.for_event("evaluation", "pioneer_index_revised",
                             {"zeroed": True, "was_zeroed": False})[0]
    assert [s.designation for s in zeroed.selectors] == ["person:member_id",
                                                         "secretary@branch_id"]
    assert RULES.for_event("evaluation", "pioneer_index_revised",
                           {"zeroed": True, "was_zeroed": True}) == []
    assert RULES.for_event("evaluation", "annual_review_grade_proposed", {"capped": False}) == []
    assert ("evaluation", "task_milestone_overdue") in events
    assert ("evaluation", "candidacy_moved") in events
    fell = RULES.for_event("evaluation", "rating_fell_to_three_or_below", {})[0]
    assert fell.notice == "rectification_required"
    assert [s.designation for s in fell.selectors] == [
        "secretary@org_id", "secretary@college_of:org_id", "group:org_admin"]
    # The timer's rules are chosen by stage.
    # Notices follow who acts: the review's reminders and returns to review go to
    # the reviewer (a branch's college secretary; 组织部 for a college), not to the
    # organisation reviewed; a return to 自评 to the organisation's secretary.
    review = RULES.for_event("timer", "stage_deadline_approaching", {"stage": "review"})
    assert [s.designation for s in review[0].selectors] == ["reviewer:org_id"]
    back_to_review = RULES.for_event("evaluation", "assessment_returned", {"stage": "review"})
    assert [s.designation for s in back_to_review[0].selectors] == ["reviewer:org_id"]
    back_to_self = RULES.for_event("evaluation", "assessment_returned",
                                   {"stage": "self_assessment"})
    assert [s.designation for s in back_to_self[0].selectors] == ["secretary@org_id"]
    decided = RULES.for_event("evaluation", "assessment_objection_decided", {})
    assert [(r.notice, [s.designation for s in r.selectors]) for r in decided] == [
        ("objection_decided", ["person:objector"])]
    assert RULES.for_event("timer", "stage_deadline_approaching", {"stage": "nope"}) == []


@pytest.mark.parametrize("raw, message", [
    ({"notice_types": {}}, "notice_types"),
    ({"notice_types": {"a": {"title": "甲"}},
      "rules": [{"source": "s", "event": "e", "notice": "b", "recipients": [{"group": "g"}]}]},
     "not in notice_types"),
    ({"notice_types": {"a": {"title": "甲"}},
      "rules": [{"source": "s", "event": "e", "notice": "a", "recipients": [{"robot": "x"}]}]},
     "unknown selector"),
    ({"notice_types": {"a": {"title": "甲"}},
      "rules": [{"source": "s", "event": "e", "notice": "a",
                 "recipients": [{"role": "secretary"}]}]},
     "exactly one of org, college_of"),
])
def test_malformed_rules_are_refused_with_where(raw, message):
    with pytest.raises(RulesError) as err:
        parse_rules(raw)
    assert message in str(err.value)


def test_lookup_follows_dotted_paths():
    data = {"deadlines": {"review": "2026-12-01"}, "org_id": "x"}
    assert lookup(data, "deadlines.review") == "2026-12-01"
    assert lookup(data, "deadlines.approval") is None
    assert lookup(data, "org_id.deeper") is None


def test_backoff_doubles_and_is_capped():
    assert [backoff_delay(n, 2.0, 10.0) for n in (1, 2, 3, 4, 5)] == [2, 4, 8, 10, 10]


def test_webhook_signature_is_hmac_sha256_of_timestamp_and_body():
    body = '{"a":"中文"}'.encode()
    expected = hmac.new(b"k", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert webhook_signature("k", "1700000000", body) == "sha256=" + expected
    assert webhook_signature("k", "1700000001", body) != "sha256=" + expected


SAMPLES = {
    "cycle_opened": {"name": "2026年度星级考评", "level": 3, "period": "2026",
                     "org_ids": ["o"], "deadlines": {"self_assessment": "2026-12-01T10:00:00+00:00",
                                                     "review": "2026-12-10"}},
    "assessment_returned": {"cycle_id": "c", "org_id": "o", "stage": "self_assessment",
                            "comments": "佐证材料不全"},
    "publicity_opened": {"cycle_id": "c", "org_id": "o", "ends_at": "2026-12-20"},
    "objection_lodged": {"cycle_id": "c", "org_id": "o", "text": "三会一课记录与实际不符"},
    "appeal_decided": {"cycle_id": "c", "org_id": "o", "decision": "rejected", "appellant": "p"},
    "objection_decided": {"cycle_id": "c", "org_id": "o", "objection_no": 1,
                          "decision": "dismissed", "objector": "m", "text": "材料不实"},
    "rating_changed": {"org_id": "o", "org_name": "教工第一党支部", "stars_before": 4,
                       "stars_after": 3, "score": 72.5, "cause": "年度考评",
                       "scheme_version": 1, "cycle_id": "c"},
    "rectification_required": {"org_id": "o", "org_name": "教工第一党支部", "stars": 3,
                               "previous_stars": 4, "rectification_due": "2027-01-31"},
    "task_milestone_overdue": {"task_id": "t", "milestone": "完成支部书记培训",
                               "lead_department": "organization", "due_on": "2026-11-01"},
    "candidacy_moved": {"org_id": "o", "from_stage": "cultivating", "to_stage": "applied"},
    "schedule_item_overdue": {"rule_name": "校领导为师生上党课", "seed": "二.4",
                              "rule_text": "每学期至少上党课1次", "period_name": "2026年春季学期",
                              "subject_name": "王书记", "required": 1, "recorded": 0},
    "stage_deadline_approaching": {"cycle_id": "c", "cycle_name": "2026年度星级考评",
                                   "stage": "self_assessment", "deadline": "2026-12-01",
                                   "org_id": "o"},
    "pioneer_index_zeroed": {"member_id": "m", "member_name": "李四", "year": 2026,
                             "branch_id": "o", "score": 0.0, "previous_score": 72.5,
                             "zeroed": True, "was_zeroed": False,
                             "zeroed_by": [{"code": "red_line", "name": "触碰红线",
                                            "records": [{"record_id": "r",
                                                         "label": "红线底线违规 2026-07-01"}]}]},
    "review_grade_capped": {"org_id": "o", "org_name": "教工第一党支部", "year": 2026,
                            "proposed": "good", "proposed_zh": "好", "grade": "fair",
                            "grade_zh": "一般", "capped": True,
                            "conditions": [{"code": "stars_below",
                                            "reason": "星级低于四星 rated ★3"}],
                            "responsible": [{"member_id": "m", "name": "王五",
                                             "role": "secretary"}]},
    "nomination_refused": {"kind": "excellent_member", "kind_zh": "优秀共产党员",
                           "subject_type": "member", "year": 2026, "subject_id": "m",
                           "subject_name": "李四", "org_id": "o",
                           "failed": [{"code": "appraisal", "message": "民主评议需为优秀或合格"}]},
    "nomination_awarded": {"kind": "advanced_organization", "kind_zh": "先进基层党组织",
                           "subject_type": "organization", "year": 2026, "subject_id": "o",
                           "subject_name": "教工第一党支部", "org_id": "o"},
}


@pytest.mark.parametrize("notice_type", sorted(RULES.notice_types))
def test_every_notice_type_has_a_chinese_template(notice_type):
    renderer = Renderer(RULES)
    subject, body = renderer.render(notice_type, {
        "data": SAMPLES[notice_type], "recipient_name": "张三", "org_name": "教工第一党支部",
        "deadline": "2026年12月01日", "reason": None, "actor": {}, "occurred_at": "",
        "title": RULES.notice_types[notice_type]["title"]})
    assert RULES.notice_types[notice_type]["title"] in subject
    assert "张三" in body


def test_rectification_template_says_what_to_do_and_by_when():
    subject, body = Renderer(RULES).render("rectification_required", {
        "data": SAMPLES["rectification_required"], "recipient_name": "张三",
        "org_name": "教工第一党支部", "deadline": format_when("2027-01-31"), "reason": None})
    assert subject == "【整改通知】教工第一党支部评定为3星级，请限期整改"
    assert "★★★★（4星）降为★★★（3星）" in body
    assert "2027年01月31日前报送整改情况" in body


def test_missing_event_data_is_a_template_problem_not_a_blank():
    data = dict(SAMPLES["assessment_returned"])
    del data["comments"]
    with pytest.raises(TemplateProblem) as err:
        Renderer(RULES).render("assessment_returned", {
            "data": data, "recipient_name": "张三", "org_name": "支部"})
    assert "comments" in str(err.value)
    with pytest.raises(TemplateProblem):
        Renderer(RULES).render("no_such_type", {})


def test_format_when_shows_beijing_time():
    assert format_when("2026-12-01T02:00:00+00:00") == "2026年12月01日 10:00"
    assert format_when("2026-12-01") == "2026年12月01日"
    assert format_when(None) == "（未设定）"


def test_first_rating_has_no_stars_before_and_still_renders():
    data = dict(SAMPLES["rating_changed"], stars_before=None, stars_after=4)
    subject, body = Renderer(RULES).render("rating_changed", {
        "data": data, "recipient_name": "张三", "org_name": "教工第一党支部"})
    assert subject == "【星级变动】教工第一党支部：未评星级 → ★★★★（4星）"
    assert "请继续保持" in body


def test_deadline_window_is_ahead_and_within_the_horizon():
    import datetime as dt

    from services.notifications.application import _within

    now = dt.datetime(2026, 11, 25, tzinfo=dt.timezone.utc)
    horizon = now + dt.timedelta(days=3)
    assert _within("2026-11-27T12:00:00+00:00", now, horizon)
    assert _within("2026-11-27", now, horizon)  # a date alone: its midnight, UTC
    assert not _within("2026-11-24T12:00:00+00:00", now, horizon)  # already past
    assert not _within("2026-12-10", now, horizon)  # not yet near
    assert not _within("next friday", now, horizon)


def test_first_rating_at_three_stars_is_a_rectification_without_a_before():
    data = dict(SAMPLES["rectification_required"], previous_stars=None)
    _, body = Renderer(RULES).render("rectification_required", {
        "data": data, "recipient_name": "张三", "org_name": "学生第一党支部",
        "deadline": "2027年01月31日", "reason": None})
    assert "学生第一党支部的星级首次评定为★★★（3星），已列入三星及以下党组织整改" in body


def test_a_malformed_template_is_a_template_problem(tmp_path):
    (tmp_path / "rating_changed.j2").write_text(
        "{% block subject %}【星级变动】{{ org_name {% endblock %}", encoding="utf-8")
    (tmp_path / "cycle_opened.j2").write_text("没有标题块", encoding="utf-8")
    renderer = Renderer(RULES, tmp_path)
    with pytest.raises(TemplateProblem) as err:
        renderer.render("rating_changed", {"org_name": "支部"})
    assert "rating_changed.j2" in str(err.value)
    with pytest.raises(TemplateProblem) as err:
        renderer.render("cycle_opened", {})
    assert "lacks the block" in str(err.value)
