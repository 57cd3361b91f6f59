"""Records flow from organizations into evaluation's inbox; the pioneer index
(锋领指数) is published at the year's close, revised by later records with their
cause, and read only by the member, their secretaries, 组织部 and 纪委办."""
import datetime as dt

import pytest

from services.evaluation.application import EvaluationApplication
from services.organizations.application import OrganizationsApplication
from shared.errors import Forbidden, ValidationError
from shared.identity import Caller

ADMIN = Caller("zzb", "org_admin")
AUDITOR = Caller("jwb", "auditor")
YEAR = dt.date.today().year


def day(month, d=1):
    return str(min(dt.date(YEAR, month, d), dt.date.today() - dt.timedelta(days=1)))


class World:
    def __init__(self, databases):
        self.org = OrganizationsApplication(databases["organizations"])
        self.ev = EvaluationApplication(databases["evaluation"])
        self.position = 0

    def sync(self):
        """Deliver organizations' events to evaluation, as the relay and inbox do."""
        while page := self.org.read_envelopes(self.position, 500):
            for envelope in page:
                self.ev.directory.handle(envelope)
            self.position = page[-1]["position"]

    def close(self):
        self.org.close()
        self.ev.close()


@pytest.fixture
def world(clean_databases):
    w = World(clean_databases)
    committee = w.org.create_organization(ADMIN, {"name": "学校党委", "kind": "committee"})
    w.colleges, w.branches, w.members = [], [], {}
    for c in range(2):
        college = w.org.create_organization(ADMIN, {"name": f"学院{c}", "kind": "general_branch",
                                                    "parent_id": committee["id"]})
        w.colleges.append(college["id"])
        branch = w.org.create_organization(ADMIN, {"name": f"教工{c}支部",
                                                   "kind": "teacher_branch",
                                                   "parent_id": college["id"]})["id"]
        w.branches.append(branch)
        w.members[branch] = [w.org.register_member(ADMIN, {
            "name": f"党员{c}-{n}", "branch_id": branch, "category": "teacher",
            "status": "full", "joined_on": "2015-07-01"})["id"] for n in range(3)]
    yield w
    w.close()


def test_index_published_at_close_revised_later_and_private(world):
    a = world.branches[0]
    m = world.members[a]
    sec = Caller("sec-a", "branch_secretary", a)
    for month in (3, 4, 5, 6):
        world.org.records.record_meeting(sec, {
            "branch_id": a, "kind": "general_meeting", "held_on": day(month),
            "topic": f"{month}月支部党员大会", "attendees": m[:2],
            "absentees": [{"member_id": m[2], "kind": "absent"}]})
    world.org.records.record_member_record(sec, {
        "member_id": m[0], "kind": "team", "on": day(2), "details": {"team": "攻坚团队"}})
    world.sync()
    # before the close: the index so far, with its records
    so_far = world.ev.members.get_member_index(Caller(m[0], "member"),
                                               {"member_id": m[0], "year": YEAR})
    assert not so_far["published"] and so_far["score"] == 60 + 6 + 3
    out = world.ev.members.close_year(ADMIN, {"year": YEAR})
    assert out["published"] == 6 and out["zeroed"] == 0
    with pytest.raises(ValidationError):
        world.ev.members.close_year(ADMIN, {"year": YEAR})
    # a member registered after the close: calling it again publishes only theirs
    late = world.org.register_member(ADMIN, {"name": "新党员", "branch_id": a,
                                             "category": "student", "status": "probationary",
                                             "joined_on": day(10)})["id"]
    world.sync()
    again = world.ev.members.close_year(ADMIN, {"year": YEAR})
    assert (again["published"], again["already_published"]) == (1, 6)
    assert world.ev.members.get_member_index(ADMIN, {"member_id": late, "year": YEAR})[
        "published"]
    got = world.ev.members.get_member_index(Caller(m[0], "member"),
                                            {"member_id": m[0], "year": YEAR})
    assert got["published"] and got["score"] == 69.0
    team = next(i for i in got["breakdown"]["positive"]["items"] if i["code"] == "project_team")
    assert team["records"][0]["label"].startswith("项目攻坚团队")
    absent = world.ev.members.get_member_index(ADMIN, {"member_id": m[2], "year": YEAR})
    assert absent["score"] == 60 - 8  # four meetings missed without leave, 2 each

    # privacy, per role
    college_a, college_b = world.colleges
    readers = [ADMIN, AUDITOR, Caller(m[0], "member"), sec,
               Caller("c-a", "college_secretary", college_a)]
    for caller in readers:
        world.ev.members.get_member_index(caller, {"member_id": m[0], "year": YEAR})
    others = [Caller(m[1], "member"), Caller("sec-b", "branch_secretary", world.branches[1]),
              Caller("c-b", "college_secretary", college_b), Caller("ops", "ops")]
    for caller in others:
        with pytest.raises(Forbidden):
            world.ev.members.get_member_index(caller, {"member_id": m[0], "year": YEAR})

    # a red-line violation recorded after the close zeroes the index, naming its cause
    world.org.records.record_member_record(ADMIN, {
        "member_id": m[0], "kind": "violation", "on": day(7),
        "details": {"line": "red_line", "description": "严重违纪", "finding": "纪委办〔2026〕7号"},
        "evidence": ["纪委办〔2026〕7号"], "reason": "纪委办通报"})
    world.sync()
    zeroed = world.ev.members.get_member_index(sec, {"member_id": m[0], "year": YEAR})
    assert zeroed["score"] == 0.0 and zeroed["zeroed"] and zeroed["revisions"] == 1
    assert zeroed["last_cause"]["type"] == "member_file_recorded"
    assert zeroed["last_cause"]["reason"] == "纪委办通报"
    history = world.ev.members.index_history(AUDITOR, {"member_id": m[0], "year": YEAR})
    assert [h["type"] for h in history] == ["pioneer_index_published", "pioneer_index_revised"]
    assert history[1]["data"]["previous_score"] == 69.0 and history[1]["data"]["zeroed"]
    # redelivery changes nothing twice
    world.position = 0
    world.sync()
    assert world.ev.members.get_member_index(ADMIN, {"member_id": m[0], "year": YEAR})[
        "revisions"] == 1


def test_derived_branch_indicators_from_known_records(world):
    from services.evaluation.schemes import DERIVATION_PROVIDERS

    a, b = world.branches
    m = world.members[a]
    for month in (3, 4, 5, 6):
        world.org.records.record_meeting(ADMIN, {
            "branch_id": a, "kind": "general_meeting", "held_on": day(month),
            "topic": f"{month}月党员大会", "attendees": m[:2],
            "absentees": [{"member_id": m[2], "kind": "absent"}]})
    for month in (7, 8, 9):
        world.org.records.record_meeting(ADMIN, {
            "branch_id": a, "kind": "theme_day", "form": "volunteer", "held_on": day(month),
            "topic": f"{month}月主题党日", "attendees": m})
    world.org.records.record_member_record(ADMIN, {
        "member_id": m[0], "kind": "team", "on": day(2), "details": {"team": "攻坚团队"}})
    world.org.assign_role(ADMIN, {"org_id": a, "member_id": m[0], "role": "secretary"})
    world.org.set_double_leader(ADMIN, {"member_id": m[0], "double_leader": True})
    world.sync()

    cycle = {"period": str(YEAR)}
    held = DERIVATION_PROVIDERS["org_life.meetings_held"](a, cycle)
    # required a year: 4 大会 + 12 支委会 + 12 小组会 + 4 党课 + 12 主题党日 = 44; held 4 + 3
    assert held["fraction"] == round(7 / 44, 4) and len(held["records"]) == 7
    college = world.colleges[0]
    assert DERIVATION_PROVIDERS["members.double_leader_secretary"](college, cycle)[
        "fraction"] == 1.0
    assert DERIVATION_PROVIDERS["members.double_leader_secretary"](
        world.colleges[1], cycle)["fraction"] == 0.0

    deadlines = {s: (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=d)).isoformat()
                 for s, d in (("self_assessment", 1), ("review", 2), ("approval", 3))}
    c = world.ev.open_cycle(ADMIN, {"name": "考评", "level": 3, "period": str(YEAR),
                                    "deadlines": deadlines, "scheme_id": "model_branch"})
    definition = world.ev.get_scheme(ADMIN, "model_branch")["definition"]
    derived = {"three_meetings_one_lesson", "theme_party_day_plus", "project_teams"}
    entries = {"scores": {i["code"]: i["max_score"] for i in definition["indicators"]
                          if i["code"] not in derived},
               "evidence": {i["code"]: ["doc"] for i in definition["indicators"]
                            if i["evidence"]}, "appraisal": 90}
    sec = Caller("sec-a", "branch_secretary", a)
    with pytest.raises(ValidationError) as e:  # a derived value cannot be entered
        world.ev.submit_self_assessment(sec, {
            "cycle_id": c["id"], "org_id": a, **entries,
            "scores": {**entries["scores"], "three_meetings_one_lesson": 10}})
    assert e.value.fields == ["scores.three_meetings_one_lesson"]
    assert "cannot be entered" in e.value.errors[0]["message"]
    out = world.ev.submit_self_assessment(sec, {"cycle_id": c["id"], "org_id": a, **entries})
    items = {i["code"]: i for d in out["self_assessment"]["result"]["dimensions"]
             for i in d["indicators"]}
    # attendance 8 of 12 expected → 6.67 of 10; 主题党日 3 of 12 → 2.5; teachers in a team
    # 1 of 3 → 3.33
    assert items["three_meetings_one_lesson"]["score"] == 6.67
    assert items["theme_party_day_plus"]["score"] == 2.5
    assert items["project_teams"]["score"] == 3.33
    behind = items["three_meetings_one_lesson"]["derivation"]
    assert len(behind["records"]) == 4 and "8 attendances of 12" in behind["explanation"]
    assert [t["name"] for t in items["project_teams"]["derivation"]["without"]] == \
        ["党员0-1", "党员0-2"]
    # a branch with no records enters those indicators as before
    full = {**entries, "scores": {i["code"]: i["max_score"] for i in definition["indicators"]}}
    world.ev.submit_self_assessment(Caller("sec-b", "branch_secretary", b),
                                    {"cycle_id": c["id"], "org_id": b, **full})
