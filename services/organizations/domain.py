"""Organisations (党组织) and members (党员): the aggregates, pure of I/O.

Three levels (seed 二-四): the university committee (学校党委, level 1), college
Party organisations (二级学院党组织: 党总支 or 二级学院党委, level 2) and branches
(党支部, level 3: teacher, student, or 师生网络e支部 with its basis, 三.4).

Public methods check invariants and raise ``ValidationError`` naming the field;
the ``@event`` methods they call only record what happened. Every event carries
the actor and, where one was given, the reason.
"""
from __future__ import annotations

from uuid import UUID, uuid4

from eventsourcing.domain import Aggregate, event

from shared.domain import derived_id, parse_date, require, today
from shared.envelope import internal, personal_data

COMMITTEE, COLLEGE, BRANCH = 1, 2, 3

# kind -> (level, Chinese name)
ORG_KINDS = {
    "committee": (COMMITTEE, "学校党委"),
    "general_branch": (COLLEGE, "党总支"),
    "college_committee": (COLLEGE, "二级学院党委"),
    "teacher_branch": (BRANCH, "教师党支部"),
    "student_branch": (BRANCH, "学生党支部"),
    "network_e_branch": (BRANCH, "师生网络e支部"),
}
# The basis a 师生网络e支部 is built on (三.4).
E_BRANCH_BASES = {
    "specialty_cluster": "专业群",
    "innovation_team": "创新团队",
    "student_apartment": "学生公寓",
    "student_society": "社团",
    "interns_graduates": "实习毕业生",
}
# Roles held in an organisation; a secretary is held by one member at a time.
ORG_ROLES = {
    "secretary": "书记",
    "deputy_secretary": "副书记",
    "committee_member": "委员",
    "organiser": "专职组织员",
}
SINGLE_HOLDER_ROLES = {"secretary"}
MEMBER_CATEGORIES = {"teacher": "教师", "student": "学生", "staff": "职工"}
MEMBER_STATUSES = {"probationary": "预备党员", "full": "正式党员"}

# Functional departments (职能部门) are records of their own: services/organizations/departments.

MAX_NAME = 100

# Chinese labels of the events, for auditors' histories (审计履历).
EVENT_LABELS = {
    "organization_created": "建立党组织", "organization_renamed": "更名",
    "organization_moved": "调整隶属关系", "organization_merged": "合并支部",
    "organization_dissolved": "撤销党组织", "organization_role_assigned": "任职",
    "organization_role_revoked": "免职", "organization_member_admitted": "党员转入本支部",
    "organization_member_released": "党员转出本支部", "member_registered": "党员登记",
    "member_transferred": "组织关系转接", "member_converted_to_full": "预备党员转正",
    "member_category_changed": "党员类别变更", "member_double_leader_set": "双带头人认定",
    "member_left": "党员离开", "audit_read_recorded": "审计查阅",
    "branch_life_opened": "建立组织生活记录", "branch_life_meeting_recorded": "记录组织生活",
    "branch_life_meeting_corrected": "更正组织生活记录", "member_file_opened": "建立党员记实档案",
    "member_file_recorded": "记入党员记实档案", "member_file_corrected": "更正党员记实档案",
}


def clean_name(name, field: str = "name") -> str:
    require(isinstance(name, str), field, "must be text")
    name = " ".join(name.split())
    require(bool(name), field, "must not be empty")
    require(len(name) <= MAX_NAME, field, f"at most {MAX_NAME} characters")
    return name


# Personal data kept off the bus (docs/events.md): the member's name is already
# on member_registered, which consumers need; no consumer needs it again here.
@personal_data(RoleAssigned=("member_name",))
class Organization(Aggregate):
    """A Party organisation (党组织) at one of the three levels."""

    id: UUID  # always given: a new uuid4, or a known id from an import (demo data)

    @event("Created")
    def __init__(self, name: str, kind: str, level: int, parent_id: UUID | None,
                 basis: str | None, actor: dict, reason: str | None = None):
        self.name = name
        self.kind = kind
        self.level = level
        self.parent_id = parent_id
        self.basis = basis
        self.status = "active"
        self.merged_into: UUID | None = None
        self.officers: dict[str, list[str]] = {}
        # A branch's members, kept on the branch itself so that admitting a member
        # and dissolving or merging the branch cannot both succeed at one moment.
        self.member_ids: list[str] = []

    # -- creation --------------------------------------------------------
    @classmethod
    def found(cls, name, kind, parent: "Organization | None", actor: dict,
              basis: str | None = None, reason: str | None = None,
              org_id: UUID | None = None) -> "Organization":
        name = clean_name(name)
        require(kind in ORG_KINDS, "kind", f"unknown kind {kind!r}; one of {', '.join(ORG_KINDS)}")
        level = ORG_KINDS[kind][0]
        if level == COMMITTEE:
            require(parent is None, "parent_id", "the university committee (学校党委) has no parent")
        else:
            require(parent is not None, "parent_id", "required for a level-%d organisation" % level)
            cls._check_parent(parent, level)
        if kind == "network_e_branch":
            require(basis in E_BRANCH_BASES, "basis",
                    f"a 师生网络e支部 needs its basis, one of {', '.join(E_BRANCH_BASES)}")
        else:
            require(basis is None, "basis", "only a 师生网络e支部 has a basis")
        kwargs = dict(name=name, kind=kind, level=level,
                      parent_id=parent.id if parent is not None else None,
                      basis=basis, actor=actor, reason=reason)
        return cls(id=org_id or uuid4(), **kwargs)

    @staticmethod
    def _check_parent(parent: "Organization", level: int) -> None:
        require(parent.is_active, "parent_id", f"parent '{parent.name}' is {parent.status}")
        require(parent.level == level - 1, "parent_id",
                "a branch (党支部) sits under a college organisation (level 2); "
                "a college organisation under the university committee (level 1)"
                f"; '{parent.name}' is level {parent.level}")

    @property
    def is_active(self) -> bool:
        return self.status == "active"

    def _require_active(self) -> None:
        require(self.is_active, "org_id", f"'{self.name}' is {self.status}")

    # -- changes ---------------------------------------------------------
    def rename(self, name, actor: dict, reason: str | None = None) -> None:
        self._require_active()
        name = clean_name(name)
        require(name != self.name, "name", "is the current name")
        self._renamed(name=name, previous_name=self.name, actor=actor, reason=reason)

    @event("Renamed")
    def _renamed(self, name: str, previous_name: str, actor: dict, reason: str | None):
        self.name = name

    def move(self, new_parent: "Organization", ancestors_of_new_parent: list[UUID],
             actor: dict, reason: str | None = None) -> None:
        self._require_active()
        require(self.level != COMMITTEE, "org_id", "the university committee cannot be moved")
        require(new_parent.id != self.id, "parent_id", "an organisation cannot be its own parent")
        require(self.id not in ancestors_of_new_parent, "parent_id",
                "the new parent lies under this organisation (the move would make a cycle)")
        require(new_parent.id != self.parent_id, "parent_id", "is already the parent")
        self._check_parent(new_parent, self.level)
        self._moved(parent_id=new_parent.id, previous_parent_id=self.parent_id,
                    actor=actor, reason=reason)

    @event("Moved")
    def _moved(self, parent_id: UUID, previous_parent_id: UUID | None, actor: dict,
               reason: str | None):
        self.parent_id = parent_id

    def dissolve(self, active_children: int, actor: dict, reason: str | None = None) -> None:
        self._require_active()
        require(self.level != COMMITTEE, "org_id", "the university committee cannot be dissolved")
        require(active_children == 0, "org_id",
                f"has {active_children} live sub-organisations; move or dissolve them first")
        require(not self.member_ids, "org_id",
                f"has {len(self.member_ids)} members; transfer them first (or merge the branch)")
        require(bool(reason), "reason", "a dissolution needs a reason")
        self._dissolved(actor=actor, reason=reason)

    @event("Dissolved")
    def _dissolved(self, actor: dict, reason: str | None):
        self.status = "dissolved"
        self.officers = {}

    def merge_into(self, target: "Organization", members: list["Member"], actor: dict,
                   reason: str | None = None) -> None:
        """Merge this branch into ``target``: its members are transferred there."""
        self._require_active()
        require(self.level == BRANCH, "source_id", "only branches (党支部) can be merged")
        require(target.level == BRANCH, "target_id", "only into another branch (党支部)")
        require(target.is_active, "target_id", f"'{target.name}' is {target.status}")
        require(target.id != self.id, "target_id", "cannot merge a branch into itself")
        require(sorted(str(m.id) for m in members) == sorted(self.member_ids), "source_id",
                "the members given are not the branch's members")
        for member in members:
            member.transfer(self, target, today(), actor,
                            f"合并支部 merged into {target.name}: {reason}")
        self._merged(target_id=target.id, target_name=target.name, actor=actor, reason=reason)

    @event("Merged")
    def _merged(self, target_id: UUID, target_name: str, actor: dict, reason: str | None):
        self.status = "merged"
        self.merged_into = target_id
        self.officers = {}

    # -- the branch's members ---------------------------------------------------
    # Each roster event carries the actor and reason of the member's change that
    # caused it (events stored before they did have neither: None).
    def admit(self, member_id: UUID, field: str, actor: dict, reason: str) -> None:
        check_branch_takes_members(self, field)
        if str(member_id) not in self.member_ids:
            self._member_admitted(member_id=member_id, actor=actor, reason=reason)

    @event("MemberAdmitted")
    def _member_admitted(self, member_id: UUID, actor: dict | None = None,
                         reason: str | None = None):
        self.member_ids.append(str(member_id))

    def release(self, member_id: UUID, actor: dict, reason: str) -> None:
        if str(member_id) in self.member_ids:
            self._member_released(member_id=member_id, actor=actor, reason=reason)

    @event("MemberReleased")
    def _member_released(self, member_id: UUID, actor: dict | None = None,
                         reason: str | None = None):
        self.member_ids.remove(str(member_id))

    # -- roles (书记, 副书记, 委员, 专职组织员) ----------------------------------
    def assign_role(self, member: "Member", role: str, member_college_id: UUID | None,
                    actor: dict, reason: str | None = None) -> None:
        self._require_active()
        require(role in ORG_ROLES, "role", f"unknown role {role!r}; one of {', '.join(ORG_ROLES)}")
        require(member.is_active, "member_id", f"member {member.name} has left")
        if self.level == BRANCH:
            require(member.branch_id == self.id, "member_id",
                    f"{member.name} is not a member of '{self.name}'")
        elif self.level == COLLEGE:
            require(member_college_id == self.id, "member_id",
                    f"{member.name} is not a member of a branch of '{self.name}'")
        holders = self.officers.get(role, [])
        require(str(member.id) not in holders, "role", f"{member.name} already holds it")
        if role in SINGLE_HOLDER_ROLES:
            require(not holders, "role",
                    f"'{self.name}' already has a {role} ({ORG_ROLES[role]}); revoke it first")
        self._role_assigned(member_id=member.id, member_name=member.name, role=role,
                            actor=actor, reason=reason)

    @event("RoleAssigned")
    def _role_assigned(self, member_id: UUID, member_name: str, role: str, actor: dict,
                       reason: str | None):
        self.officers.setdefault(role, []).append(str(member_id))

    def revoke_role(self, member_id: UUID, role: str, actor: dict,
                    reason: str | None = None) -> None:
        require(role in ORG_ROLES, "role", f"unknown role {role!r}")
        require(str(member_id) in self.officers.get(role, []), "member_id",
                f"does not hold the role {role} in '{self.name}'")
        self._role_revoked(member_id=member_id, role=role, actor=actor, reason=reason)

    @event("RoleRevoked")
    def _role_revoked(self, member_id: UUID, role: str, actor: dict, reason: str | None):
        self.officers[role].remove(str(member_id))
        if not self.officers[role]:
            del self.officers[role]

    def roles_of(self, member_id: UUID) -> list[str]:
        return [role for role, holders in self.officers.items() if str(member_id) in holders]


@internal
class SiblingName(Aggregate):
    """A name claimed among the children of one parent: saved atomically with the
    organisation, so two live siblings can never share a name (a concurrent
    claim is a version conflict)."""

    @staticmethod
    def create_id(parent_key: str, name: str) -> UUID:
        return derived_id("sibling-name", parent_key, name.casefold())

    @staticmethod
    def key_for(parent_id: UUID | None) -> str:
        return str(parent_id) if parent_id else "root"

    @event("Claimed")
    def __init__(self, parent_key: str, name: str, org_id: UUID):
        self.holder: UUID | None = org_id

    def claim(self, org_id: UUID) -> None:
        require(self.holder is None, "name", "already used by a live sibling organisation")
        self._claimed_again(org_id=org_id)

    @event("Reclaimed")
    def _claimed_again(self, org_id: UUID):
        self.holder = org_id

    def release(self, org_id: UUID) -> None:
        if self.holder == org_id:
            self._released(org_id=org_id)

    @event("Released")
    def _released(self, org_id: UUID):
        self.holder = None


# The ID number (工号/学号) stays in this service: no consumer needs it. The name
# stays public: notifications addresses notices by it (…同志) — see docs/events.md.
@personal_data(Registered=("staff_no",))
class Member(Aggregate):
    """A Party member (党员): one branch at a time, with dated status changes."""

    id: UUID  # always given: a new uuid4, or a known id from an import (demo data)

    @event("Registered")
    def __init__(self, name: str, branch_id: UUID, category: str, status: str,
                 joined_on: str, full_on: str | None, double_leader: bool,
                 staff_no: str | None, actor: dict, reason: str | None = None):
        self.name = name
        self.branch_id: UUID | None = branch_id
        self.category = category
        self.status = status
        self.joined_on = joined_on
        self.full_on = full_on
        self.double_leader = double_leader
        self.staff_no = staff_no
        self.active = True
        self.left_on: str | None = None

    @classmethod
    def register(cls, name, branch: Organization, category, status, joined_on,
                 actor: dict, full_on=None, double_leader: bool = False,
                 staff_no: str | None = None, reason: str | None = None,
                 member_id: UUID | None = None) -> "Member":
        name = clean_name(name)
        check_branch_takes_members(branch, "branch_id")
        require(category in MEMBER_CATEGORIES, "category",
                f"unknown category {category!r}; one of {', '.join(MEMBER_CATEGORIES)}")
        require(status in MEMBER_STATUSES, "status",
                f"unknown status {status!r}; one of {', '.join(MEMBER_STATUSES)}")
        joined_on = parse_date(joined_on, "joined_on")
        if status == "full":
            full_on = parse_date(full_on, "full_on") if full_on else joined_on
            require(full_on >= joined_on, "full_on", "cannot be before joined_on")
        else:
            require(full_on is None, "full_on", "a probationary member (预备党员) has no full date")
        require(isinstance(double_leader, bool), "double_leader", "must be true or false")
        kwargs = dict(name=name, branch_id=branch.id, category=category, status=status,
                      joined_on=joined_on, full_on=full_on, double_leader=double_leader,
                      staff_no=staff_no, actor=actor, reason=reason)
        member = cls(id=member_id or uuid4(), **kwargs)
        branch.admit(member.id, "branch_id", actor, _roster_reason("党员登记 registered", reason))
        return member

    @property
    def is_active(self) -> bool:
        return self.active

    def _require_active(self) -> None:
        require(self.active, "member_id", f"{self.name} left on {self.left_on}")

    def transfer(self, from_branch: Organization, to_branch: Organization, effective_on,
                 actor: dict, reason: str | None = None) -> None:
        """Move to another branch; both branches' rosters change in the same save."""
        self._require_active()
        require(from_branch.id == self.branch_id, "member_id", "is not in the branch given")
        require(to_branch.id != self.branch_id, "to_branch_id", "is the member's current branch")
        to_branch.admit(self.id, "to_branch_id", actor,
                        _roster_reason(f"转入 transferred in from {from_branch.name}", reason))
        from_branch.release(self.id, actor,
                            _roster_reason(f"转出 transferred out to {to_branch.name}", reason))
        self._transferred(from_branch_id=self.branch_id, to_branch_id=to_branch.id,
                          effective_on=parse_date(effective_on, "effective_on"),
                          actor=actor, reason=reason)

    @event("Transferred")
    def _transferred(self, from_branch_id: UUID, to_branch_id: UUID, effective_on: str,
                     actor: dict, reason: str | None):
        self.branch_id = to_branch_id

    def convert_to_full(self, effective_on, actor: dict, reason: str | None = None) -> None:
        """预备党员转正: a probationary member becomes a full member."""
        self._require_active()
        require(self.status == "probationary", "status", "is already a full member (正式党员)")
        effective_on = parse_date(effective_on, "effective_on")
        require(effective_on >= self.joined_on, "effective_on", "cannot be before joined_on")
        self._converted(effective_on=effective_on, actor=actor, reason=reason)

    @event("ConvertedToFull")
    def _converted(self, effective_on: str, actor: dict, reason: str | None):
        self.status = "full"
        self.full_on = effective_on

    def change_category(self, category, effective_on, actor: dict,
                        reason: str | None = None) -> None:
        self._require_active()
        require(category in MEMBER_CATEGORIES, "category",
                f"unknown category {category!r}; one of {', '.join(MEMBER_CATEGORIES)}")
        require(category != self.category, "category", "is the current category")
        self._category_changed(category=category, previous_category=self.category,
                               effective_on=parse_date(effective_on, "effective_on"),
                               actor=actor, reason=reason)

    @event("CategoryChanged")
    def _category_changed(self, category: str, previous_category: str, effective_on: str,
                          actor: dict, reason: str | None):
        self.category = category

    def set_double_leader(self, flag, actor: dict, reason: str | None = None) -> None:
        """双带头人: a teacher-branch secretary who is also an academic leader."""
        self._require_active()
        require(isinstance(flag, bool), "double_leader", "must be true or false")
        require(flag != self.double_leader, "double_leader", f"is already {flag}")
        self._double_leader_set(double_leader=flag, actor=actor, reason=reason)

    @event("DoubleLeaderSet")
    def _double_leader_set(self, double_leader: bool, actor: dict, reason: str | None):
        self.double_leader = double_leader

    def leave(self, branch: Organization, effective_on, actor: dict,
              reason: str | None = None) -> None:
        self._require_active()
        require(bool(reason), "reason", "leaving needs a reason (转出, 去世, 出党 …)")
        require(branch.id == self.branch_id, "member_id", "is not in the branch given")
        branch.release(self.id, actor, _roster_reason("离开 left", reason))
        self._left(branch_id=self.branch_id, effective_on=parse_date(effective_on, "effective_on"),
                   actor=actor, reason=reason)

    @event("Left")
    def _left(self, branch_id: UUID, effective_on: str, actor: dict, reason: str | None):
        self.active = False
        self.left_on = effective_on


def _roster_reason(cause: str, reason: str | None) -> str:
    """The reason a branch's roster changed: the member's change, and its reason."""
    return f"{cause}: {reason}" if reason else cause


def check_branch_takes_members(org: Organization, field: str) -> None:
    require(org.level == BRANCH, field, f"'{org.name}' is not a branch (党支部)")
    require(org.is_active, field, f"'{org.name}' is {org.status} and takes no members")
