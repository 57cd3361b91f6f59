"""The organisation and member aggregates: pure rules, no I/O."""
import uuid

import pytest

from services.organizations.domain import Member, Organization, SiblingName
from shared.errors import ValidationError

ACTOR = {"sub": "admin", "role": "org_admin"}


@pytest.fixture
def tree():
    committee = Organization.found("学校党委", "committee", None, ACTOR)
    college = Organization.found("机电学院党总支", "general_branch", committee, ACTOR)
    other_college = Organization.found("电信学院党总支", "general_branch", committee, ACTOR)
    branch = Organization.found("教工一支部", "teacher_branch", college, ACTOR)
    branch2 = Organization.found("学生一支部", "student_branch", college, ACTOR)
    return committee, college, other_college, branch, branch2


def fields(exc_info):
    return exc_info.value.fields


def test_levels_must_nest(tree):
    committee, college, _, branch, _ = tree
    with pytest.raises(ValidationError) as e:
        Organization.found("错层支部", "teacher_branch", committee, ACTOR)
    assert fields(e) == ["parent_id"] and "level 2" in str(e.value)
    with pytest.raises(ValidationError) as e:
        Organization.found("错层总支", "general_branch", college, ACTOR)
    assert fields(e) == ["parent_id"]
    with pytest.raises(ValidationError) as e:
        Organization.found("第二党委", "committee", committee, ACTOR)
    assert fields(e) == ["parent_id"]
    with pytest.raises(ValidationError) as e:
        Organization.found("孤儿支部", "teacher_branch", None, ACTOR)
    assert fields(e) == ["parent_id"]


def test_network_e_branch_needs_its_basis(tree):
    _, college, _, _, _ = tree
    with pytest.raises(ValidationError) as e:
        Organization.found("网络e支部", "network_e_branch", college, ACTOR)
    assert fields(e) == ["basis"]
    e_branch = Organization.found("公寓e支部", "network_e_branch", college, ACTOR,
                                  basis="student_apartment")
    assert e_branch.basis == "student_apartment"
    with pytest.raises(ValidationError) as e:
        Organization.found("教工支部", "teacher_branch", college, ACTOR, basis="student_apartment")
    assert fields(e) == ["basis"]


def test_names_are_cleaned_and_checked(tree):
    _, college, _, _, _ = tree
    org = Organization.found("  教工   三支部 ", "teacher_branch", college, ACTOR)
    assert org.name == "教工 三支部"
    for bad in ("", "   ", "x" * 101, 42):
        with pytest.raises(ValidationError) as e:
            Organization.found(bad, "teacher_branch", college, ACTOR)
        assert fields(e) == ["name"]


def test_move_rejects_cycles_wrong_levels_and_closed_parents(tree):
    committee, college, other, branch, _ = tree
    branch.move(other, [committee.id, other.id], ACTOR, "调整")
    assert branch.parent_id == other.id
    with pytest.raises(ValidationError) as e:
        college.move(college, [committee.id, college.id], ACTOR)
    assert fields(e) == ["parent_id"]
    with pytest.raises(ValidationError) as e:
        # a parent whose ancestry contains the organisation itself: a cycle
        college.move(other, [committee.id, college.id, other.id], ACTOR)
    assert "cycle" in str(e.value)
    with pytest.raises(ValidationError):
        branch.move(committee, [committee.id], ACTOR)
    with pytest.raises(ValidationError) as e:
        committee.move(college, [], ACTOR)
    assert fields(e) == ["org_id"]
    closed = Organization.found("旧学院党总支", "general_branch", committee, ACTOR)
    closed.dissolve(0, ACTOR, "撤销")
    with pytest.raises(ValidationError) as e:
        branch.move(closed, [committee.id, closed.id], ACTOR)
    assert "dissolved" in str(e.value)


def test_dissolve_needs_an_empty_organisation_and_a_reason(tree):
    _, college, _, branch, _ = tree
    member = Member.register("张三", branch, "teacher", "full", "2010-07-01", ACTOR)
    with pytest.raises(ValidationError) as e:
        branch.dissolve(0, ACTOR, "撤销")
    assert "1 members" in str(e.value)
    with pytest.raises(ValidationError) as e:
        college.dissolve(2, ACTOR, "撤销")
    assert "2 live sub-organisations" in str(e.value)
    member.leave(branch, "2026-01-01", ACTOR, "转出")
    with pytest.raises(ValidationError) as e:
        branch.dissolve(0, ACTOR, None)
    assert fields(e) == ["reason"]
    branch.dissolve(0, ACTOR, "撤销")
    assert branch.status == "dissolved"
    with pytest.raises(ValidationError):
        branch.rename("新名字", ACTOR)


def test_dissolved_branch_takes_no_members(tree):
    _, _, _, branch, branch2 = tree
    member = Member.register("张三", branch2, "teacher", "full", "2010-07-01", ACTOR)
    branch.dissolve(0, ACTOR, "撤销")
    with pytest.raises(ValidationError) as e:
        Member.register("李四", branch, "teacher", "full", "2010-07-01", ACTOR)
    assert fields(e) == ["branch_id"] and "dissolved" in str(e.value)
    with pytest.raises(ValidationError) as e:
        member.transfer(branch2, branch, "2026-01-01", ACTOR)
    assert fields(e) == ["to_branch_id"]
    assert branch2.member_ids == [str(member.id)]  # nothing moved


def test_members_belong_to_branches_only(tree):
    _, college, _, _, _ = tree
    with pytest.raises(ValidationError) as e:
        Member.register("张三", college, "teacher", "full", "2010-07-01", ACTOR)
    assert fields(e) == ["branch_id"]


def test_member_status_dates(tree):
    *_, branch, _ = tree
    m = Member.register("王五", branch, "student", "probationary", "2025-06-01", ACTOR)
    with pytest.raises(ValidationError) as e:
        m.convert_to_full("2025-01-01", ACTOR)
    assert fields(e) == ["effective_on"]
    m.convert_to_full("2026-06-01", ACTOR)
    assert (m.status, m.full_on) == ("full", "2026-06-01")
    with pytest.raises(ValidationError) as e:
        m.convert_to_full("2026-07-01", ACTOR)
    assert fields(e) == ["status"]
    with pytest.raises(ValidationError) as e:
        Member.register("赵六", branch, "student", "probationary", "2025-06-01", ACTOR,
                        full_on="2026-01-01")
    assert fields(e) == ["full_on"]
    with pytest.raises(ValidationError) as e:
        Member.register("赵六", branch, "alien", "full", "not-a-date", ACTOR)
    assert fields(e) == ["category"]


def test_member_transfer_and_leave(tree):
    *_, branch, branch2 = tree
    m = Member.register("张三", branch, "teacher", "full", "2010-07-01", ACTOR)
    assert branch.member_ids == [str(m.id)]
    with pytest.raises(ValidationError) as e:
        m.transfer(branch, branch, "2026-01-01", ACTOR)
    assert fields(e) == ["to_branch_id"]
    with pytest.raises(ValidationError) as e:
        m.transfer(branch2, branch, "2026-01-01", ACTOR)
    assert fields(e) == ["member_id"]
    m.transfer(branch, branch2, "2026-01-01", ACTOR, "工作调动")
    assert (m.branch_id, branch.member_ids, branch2.member_ids) == (branch2.id, [], [str(m.id)])
    with pytest.raises(ValidationError) as e:
        m.leave(branch2, "2026-02-01", ACTOR, None)
    assert fields(e) == ["reason"]
    m.leave(branch2, "2026-02-01", ACTOR, "转出")
    assert not m.active and branch2.member_ids == []
    with pytest.raises(ValidationError):
        m.transfer(branch2, branch, "2026-03-01", ACTOR)


def test_roles_scope_and_single_secretary(tree):
    _, college, other, branch, branch2 = tree
    a = Member.register("张三", branch, "teacher", "full", "2010-07-01", ACTOR)
    b = Member.register("李四", branch, "teacher", "full", "2010-07-01", ACTOR)
    c = Member.register("王五", branch2, "student", "full", "2010-07-01", ACTOR)
    branch.assign_role(a, "secretary", college.id, ACTOR)
    with pytest.raises(ValidationError) as e:
        branch.assign_role(b, "secretary", college.id, ACTOR)
    assert fields(e) == ["role"] and "revoke it first" in str(e.value)
    with pytest.raises(ValidationError) as e:
        branch.assign_role(c, "committee_member", college.id, ACTOR)
    assert fields(e) == ["member_id"]
    branch.assign_role(b, "deputy_secretary", college.id, ACTOR)
    branch.assign_role(b, "committee_member", college.id, ACTOR)
    assert branch.roles_of(b.id) == ["deputy_secretary", "committee_member"]
    # a college role goes to a member of one of the college's branches only
    college.assign_role(c, "organiser", college.id, ACTOR)
    with pytest.raises(ValidationError):
        other.assign_role(c, "secretary", college.id, ACTOR)
    branch.revoke_role(a.id, "secretary", ACTOR)
    branch.assign_role(b, "secretary", college.id, ACTOR)
    with pytest.raises(ValidationError) as e:
        branch.revoke_role(a.id, "secretary", ACTOR)
    assert fields(e) == ["member_id"]
    with pytest.raises(ValidationError) as e:
        branch.assign_role(a, "chairman", college.id, ACTOR)
    assert fields(e) == ["role"]


def test_merge_branches_only(tree):
    _, college, _, branch, branch2 = tree
    a = Member.register("张三", branch, "teacher", "full", "2010-07-01", ACTOR)
    b = Member.register("李四", branch, "teacher", "full", "2010-07-01", ACTOR)
    with pytest.raises(ValidationError) as e:
        college.merge_into(branch, [], ACTOR, "合并")
    assert fields(e) == ["source_id"]
    with pytest.raises(ValidationError) as e:
        branch.merge_into(branch, [a, b], ACTOR, "合并")
    assert fields(e) == ["target_id"]
    with pytest.raises(ValidationError) as e:
        branch.merge_into(branch2, [a], ACTOR, "合并")  # b would be left behind
    assert fields(e) == ["source_id"]
    branch.merge_into(branch2, [a, b], ACTOR, "合并")
    assert (branch.status, branch.merged_into) == ("merged", branch2.id)
    assert (a.branch_id, b.branch_id) == (branch2.id, branch2.id)
    assert sorted(branch2.member_ids) == sorted([str(a.id), str(b.id)]) and branch.member_ids == []


def test_sibling_name_claims():
    parent = uuid.uuid4()
    first, second = uuid.uuid4(), uuid.uuid4()
    claim = SiblingName(parent_key=str(parent), name="一支部", org_id=first)
    assert claim.id == SiblingName.create_id(str(parent), "一支部")
    with pytest.raises(ValidationError) as e:
        claim.claim(second)
    assert fields(e) == ["name"]
    claim.release(second)  # not the holder: nothing happens
    assert claim.holder == first
    claim.release(first)
    claim.claim(second)
    assert claim.holder == second


def test_events_record_actor_and_reason(tree):
    *_, branch, _ = tree
    branch.rename("教工第一党支部", ACTOR, "规范名称")
    event = branch.collect_events()[-1]
    assert (event.actor, event.reason, event.previous_name) == (ACTOR, "规范名称", "教工一支部")


def test_branch_roster_events_carry_the_actor_and_reason_of_their_cause(tree):
    _, _, _, branch, branch2 = tree
    for org in (branch, branch2):
        org.collect_events()
    member = Member.register("张三", branch, "teacher", "full", "2010-07-01", ACTOR)
    admitted = branch.collect_events()
    assert [(type(e).__name__, e.actor, e.reason) for e in admitted] == [
        ("MemberAdmitted", ACTOR, "党员登记 registered")]
    clerk = {"sub": "wang", "role": "college_secretary", "org": "c1"}
    member.transfer(branch, branch2, "2026-12-01", clerk, "工作调动")
    (released,), (admitted,) = branch.collect_events(), branch2.collect_events()
    assert (type(released).__name__, released.actor, released.reason) == (
        "MemberReleased", clerk, "转出 transferred out to 学生一支部: 工作调动")
    assert (type(admitted).__name__, admitted.actor, admitted.reason) == (
        "MemberAdmitted", clerk, "转入 transferred in from 教工一支部: 工作调动")


def test_roster_events_stored_before_they_had_an_actor_still_replay(tree):
    _, _, _, branch, _ = tree
    created = branch.collect_events()
    Member.register("李四", branch, "teacher", "full", "2010-07-01", ACTOR)
    (admitted,) = branch.collect_events()
    del admitted.__dict__["actor"], admitted.__dict__["reason"]  # as stored before
    replayed = None
    for e in (*created, admitted):
        replayed = e.mutate(replayed)
    assert replayed.member_ids == branch.member_ids
