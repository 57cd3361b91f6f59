"""A secretary's authority from the records (shared.office) and personal data kept
off the bus (shared.envelope audiences), pure."""
import datetime as dt
import uuid

import pytest
from eventsourcing.domain import Aggregate, event

from services.notifications.domain import Contact
from services.organizations.domain import Member, Organization
from shared.envelope import AUDIT, PUBLIC, build_envelope, personal_data
from shared.errors import Forbidden
from shared.identity import Caller
from shared.office import Office, confirm_office

COLLEGE, BRANCH, SECRETARY, OTHER = (str(uuid.uuid4()) for _ in range(4))
RECORDS = {COLLEGE: Office(level=2, active=True, holders=frozenset({SECRETARY})),
           BRANCH: Office(level=3, active=True, holders=frozenset({SECRETARY}))}


def lookup(org_id, roles):
    assert roles == ("secretary",)  # a deputy secretary (副书记) does not count
    return RECORDS.get(org_id)


@pytest.mark.parametrize("caller", [
    Caller(SECRETARY, "college_secretary", COLLEGE),
    Caller(SECRETARY, "branch_secretary", BRANCH),
    Caller(SECRETARY.upper(), "branch_secretary", BRANCH.upper()),  # ids compare as ids
    Caller("alice", "org_admin"),  # unscoped roles need no office
    Caller(OTHER, "member"),
])
def test_honoured_when_the_records_show_the_office(caller):
    assert confirm_office(caller, lookup) is caller


@pytest.mark.parametrize("caller, why", [
    (Caller(OTHER, "branch_secretary", BRANCH), "do not show member"),
    (Caller("wang", "college_secretary", COLLEGE), "member id"),
    (Caller(SECRETARY, "college_secretary", BRANCH), "level-2"),
    (Caller(SECRETARY, "branch_secretary", COLLEGE), "level-3"),
    (Caller(SECRETARY, "branch_secretary", str(uuid.uuid4())), "not an active organisation"),
    (Caller(SECRETARY, "branch_secretary", "b1"), "organisation id"),
])
def test_forbidden_unless_the_records_show_the_office(caller, why):
    with pytest.raises(Forbidden) as e:
        confirm_office(caller, lookup)
    assert why in str(e.value)


def test_a_closed_organisation_has_no_office():
    closed = {BRANCH: Office(level=3, active=False, holders=frozenset({SECRETARY}))}
    with pytest.raises(Forbidden):
        confirm_office(Caller(SECRETARY, "branch_secretary", BRANCH),
                       lambda org_id, roles: closed.get(org_id))


ACTOR = {"sub": "admin", "role": "org_admin"}


def test_member_staff_no_is_for_auditors_only():
    branch = Organization.found("教工一支部", "teacher_branch",
                                Organization.found("学院", "general_branch",
                                                   Organization.found("党委", "committee", None,
                                                                      ACTOR), ACTOR), ACTOR)
    member = Member.register("张三", branch, "teacher", "full", dt.date(2010, 7, 1), ACTOR,
                             staff_no="T123456")
    registered = member.collect_events()[0]
    public = build_envelope(registered, 7, "organizations")
    assert "staff_no" not in public["data"] and public["data"]["name"] == "张三"
    assert build_envelope(registered, 7, "organizations", PUBLIC) == public
    audit = build_envelope(registered, 7, "organizations", AUDIT)
    assert audit["data"]["staff_no"] == "T123456"
    assert {k: v for k, v in audit["data"].items() if k != "staff_no"} == public["data"]
    assert registered.staff_no == "T123456"  # the stored event is untouched
    with pytest.raises(ValueError):
        build_envelope(registered, 7, "organizations", "everyone")


def test_contact_details_are_for_auditors_only():
    contact = Contact.register("li.zzb", "组织部李老师", "staff", "li@example.edu",
                               "https://robot.example.edu/hook", ["org_admin"], ACTOR)
    contact.change(ACTOR, email="li2@example.edu", groups=["org_admin", "department:organization"])
    registered, changed = contact.collect_events()
    public = build_envelope(registered, 1, "notifications")["data"]
    assert public == {"recipient_id": "li.zzb", "kind": "staff", "groups": ["org_admin"]}
    assert build_envelope(changed, 2, "notifications")["data"] == {
        "changes": {"groups": ["department:organization", "org_admin"]}}
    assert build_envelope(changed, 2, "notifications", AUDIT)["data"]["changes"]["email"] == \
        "li2@example.edu"
    assert changed.changes["email"] == "li2@example.edu"
    audit = build_envelope(registered, 1, "notifications", AUDIT)["data"]
    assert (audit["email"], audit["webhook_url"]) == ("li@example.edu",
                                                      "https://robot.example.edu/hook")


def test_personal_fields_are_checked_against_the_event():
    with pytest.raises(TypeError) as e:
        @personal_data(Noted=("phone",))
        class Note(Aggregate):
            @event("Noted")
            def note(self, text: str):
                self.text = text
    assert "phone" in str(e.value)
