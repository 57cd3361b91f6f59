"""Organisational-life records (组织生活记录) in the organizations application on
the real database: rosters as of the date, duplicates, corrections, roles."""
import datetime as dt

import pytest

from services.organizations.application import OrganizationsApplication
from shared.errors import Forbidden, ValidationError
from shared.identity import Caller

ADMIN = Caller("zzb", "org_admin")
AUDITOR = Caller("jwb", "auditor")
TODAY = dt.date.today()
DAY = dt.timedelta(days=1)


@pytest.fixture
def org(clean_databases):
    app = OrganizationsApplication(clean_databases["organizations"])
    committee = app.create_organization(ADMIN, {"name": "学校党委", "kind": "committee"})
    colleges, branches = [], []
    for c in range(2):
        college = app.create_organization(ADMIN, {"name": f"学院{c}", "kind": "general_branch",
                                                  "parent_id": committee["id"]})
        colleges.append(college["id"])
        for b in range(2):
            branches.append(app.create_organization(ADMIN, {
                "name": f"教工{c}-{b}支部", "kind": "teacher_branch",
                "parent_id": college["id"]})["id"])
    members = {b: [app.register_member(ADMIN, {
        "name": f"党员{i}-{n}", "branch_id": b, "category": "teacher" if n else "student",
        "status": "full", "joined_on": "2015-07-01"})["id"] for n in range(3)]
        for i, b in enumerate(branches)}
    yield app, colleges, branches, members
    app.close()


def meeting(branch, attendees, absentees=(), **extra):
    return {"branch_id": branch, "kind": "general_meeting", "held_on": str(TODAY - 10 * DAY),
            "topic": "学习二十大精神", "attendees": list(attendees),
            "absentees": list(absentees), **extra}


def test_meeting_recorded_and_corrected_keeping_the_original(org):
    app, colleges, branches, members = org
    a = branches[0]
    sec = Caller("s0", "branch_secretary", a)
    m = members[a]
    out = app.records.record_meeting(sec, meeting(a, m[:2], [
        {"member_id": m[2], "kind": "leave", "note": "出差"}]))
    assert out["attendees"] == m[:2] and out["absentees"][0]["kind"] == "leave"
    # the same branch, kind, date and topic again: refused
    with pytest.raises(ValidationError) as e:
        app.records.record_meeting(sec, meeting(a, m[:1], topic=" 学习二十大精神 "))
    assert e.value.fields == ["topic"]
    # a correction without a reason is refused; with one it keeps the original event
    fixed = meeting(a, m, record_id=out["record_id"], reason="漏记一名参会党员")
    fixed["absentees"] = []
    corrected = app.records.correct_meeting(sec, fixed)
    assert corrected["attendees"] == m and corrected["corrections"] == 1
    history = app.get_history(AUDITOR, corrected["aggregate_id"])
    assert [h["type"] for h in history] == ["branch_life_opened", "branch_life_meeting_recorded",
                                            "branch_life_meeting_corrected"]
    assert history[1]["data"]["attendees"] == m[:2] and history[2]["reason"] == "漏记一名参会党员"


def test_every_bad_field_named_at_once(org):
    app, colleges, branches, members = org
    a, b = branches[0], branches[1]
    with pytest.raises(ValidationError) as e:
        app.records.record_meeting(ADMIN, meeting(
            a, [members[a][0], members[b][0], members[a][0]],
            [{"member_id": members[a][1], "kind": "leave"}],
            held_on=str(TODAY + DAY), kind="theme_day", form="volunteer"))
    assert set(e.value.fields) == {"held_on", "attendees[1]", "attendees[2]",
                                  "absentees[0].note"}
    with pytest.raises(ValidationError) as e:
        app.records.record_meeting(ADMIN, meeting(a, [members[a][0], members[b][0]],
                                                  form="volunteer"))
    assert e.value.fields == ["form", "attendees[1]"]
    with pytest.raises(ValidationError) as e:
        app.records.record_meeting(ADMIN, meeting(a, [members[a][0], members[b][0]]))
    assert e.value.fields == ["attendees[1]"]
    assert "not a member of this branch" in e.value.errors[0]["message"]


def test_an_attendee_who_transferred_out_the_day_before_is_refused(org):
    app, colleges, branches, members = org
    a, b = branches[0], branches[1]
    mover = members[a][0]
    held = TODAY - 5 * DAY
    app.transfer_member(ADMIN, {"member_id": mover, "to_branch_id": b,
                                "effective_on": str(held - DAY)})
    with pytest.raises(ValidationError) as e:
        app.records.record_meeting(ADMIN, meeting(a, [members[a][1], mover], held_on=str(held)))
    assert e.value.fields == ["attendees[1]"]
    assert "transferred" in e.value.errors[0]["message"]
    # two days before, the mover was still in branch a
    app.records.record_meeting(ADMIN, meeting(a, [members[a][1], mover],
                                              held_on=str(held - 2 * DAY)))
    # and on the day, in branch b
    app.records.record_meeting(ADMIN, meeting(b, [mover], held_on=str(held)))


def test_who_may_record_and_read(org):
    app, colleges, branches, members = org
    a = branches[0]
    other_branch = Caller("s1", "branch_secretary", branches[1])
    other_college = Caller("c1", "college_secretary", colleges[1])
    own_college = Caller("c0", "college_secretary", colleges[0])
    for caller in (other_branch, other_college, AUDITOR, Caller(members[a][0], "member"),
                   Caller("ops", "ops")):
        with pytest.raises(Forbidden):
            app.records.record_meeting(caller, meeting(a, members[a][:1]))
    app.records.record_meeting(own_college, meeting(a, members[a][:1]))
    subject = members[a][1]
    rec = {"member_id": subject, "kind": "appraisal", "on": str(TODAY - DAY),
           "details": {"grade": "excellent"}}
    app.records.record_member_record(Caller("s0", "branch_secretary", a), rec)
    with pytest.raises(ValidationError) as e:  # one 民主评议 a year
        app.records.record_member_record(ADMIN, rec)
    assert e.value.fields == ["on"]
    violation = {"member_id": subject, "kind": "violation", "on": str(TODAY - DAY),
                 "details": {"line": "red_line", "description": "违反中央八项规定精神",
                             "finding": "纪委办〔2026〕3号"}, "evidence": ["纪委办〔2026〕3号"]}
    for caller in (Caller("s0", "branch_secretary", a), own_college, AUDITOR):
        with pytest.raises(Forbidden):
            app.records.record_member_record(caller, violation)
    app.records.record_member_record(ADMIN, violation)
    with pytest.raises(ValidationError) as e:
        app.records.record_member_record(ADMIN, {**violation, "evidence": None})
    assert e.value.fields == ["evidence"]
    readers = (ADMIN, AUDITOR, Caller(subject, "member"), Caller("s0", "branch_secretary", a),
               own_college)
    for caller in readers:
        got = app.records.member_records(caller, {"member_id": subject})
        assert [r["kind"] for r in got["records"]] == ["appraisal", "violation"]
        assert got["meetings"] == [] or got["meetings"][0]["attendance"] in ("attended",)
    for caller in (Caller(members[a][0], "member"), other_branch, other_college,
                   Caller("ops", "ops")):
        with pytest.raises(Forbidden):
            app.records.member_records(caller, {"member_id": subject})


def test_member_records_validated_per_kind(org):
    app, colleges, branches, members = org
    a = branches[0]
    student = members[a][0]
    with pytest.raises(ValidationError) as e:
        app.records.record_member_record(ADMIN, {
            "member_id": student, "kind": "team", "on": str(TODAY), "details": {"team": ""}})
    assert set(e.value.fields) == {"details.team", "member_id"}
    with pytest.raises(ValidationError) as e:
        app.records.record_member_record(ADMIN, {
            "member_id": members[a][1], "kind": "appraisal", "on": str(TODAY),
            "details": {"grade": "unqualified", "colour": "red"}})
    assert set(e.value.fields) == {"details.handling", "details.colour"}
    with pytest.raises(ValidationError) as e:
        app.records.record_member_record(ADMIN, {
            "member_id": members[a][1], "kind": "checkup", "on": "2010-01-01",
            "details": {"period": "2010", "items": {"理想信念": "坚定"}, "result": "good"}})
    assert e.value.fields == ["on"] and "not a member of any branch" in str(e.value)
