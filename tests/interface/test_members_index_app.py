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
