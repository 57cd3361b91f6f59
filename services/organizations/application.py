"""Organisations application (组织管理): commands, queries and who may do what.

org_admin (组织部) manages the tree; a college secretary manages members and
roles within its college; a branch secretary reads its branch; auditors
(纪委办) read everything and change nothing.
"""
from __future__ import annotations

import datetime as dt
from uuid import UUID

from shared.imports import ImportFile
from shared.audit import AuditQueries
from shared.commands import (CollegeFilter, Command, Moment, Name, OrgRef, Page,  # noqa: F401
                             Query, Reason, RequiredReason)
from shared.config import DatabaseSettings
from shared.domain import parse_moment
from shared.errors import Forbidden, NotFound, ValidationError
from shared.history import AuditedHistory
from shared.identity import (AUDITOR, BRANCH_SECRETARY, COLLEGE_SECRETARY, MEMBER, OPS,
                             ORG_ADMIN, Caller)
from shared.office import Office, read_office
from shared.parking import ParkingOperations
from shared.projection import Projector
from shared.published_log import PublishedLogQueries
from shared.store import EventSourcedApplication
from services.organizations.domain import (BRANCH, COLLEGE, COMMITTEE,
                                           E_BRANCH_BASES, EVENT_LABELS,
                                           MEMBER_CATEGORIES,
                                           MEMBER_STATUSES, ORG_KINDS, ORG_ROLES, Member,
                                           Organization, SiblingName)
from services.organizations.asof.application import CoverageAsOf, MembersAsOf, coverage_of
from services.organizations.departments.application import Departments
from services.organizations.departments.domain import EVENT_LABELS as DEPARTMENT_LABELS
from services.organizations.departments.projections import DepartmentsReadModel
from services.organizations.asof.projections import MemberHistoryReadModel
from services.organizations.imports.application import OrganizationImports
from services.organizations.projections import OrganizationsReadModel
from services.organizations.commands import (  # noqa: F401  (re-exported)
    CreateOrganization, RenameOrganization, MoveOrganization, MergeBranches, DissolveOrganization, RegisterMember, TransferMember, ConvertMember, ChangeCategory, SetDoubleLeader, MemberLeaves, AssignRole, RevokeRole, ListMembers, MemberQuery, OrgAsOf, CoverageQuery, TreeQuery, AggregateRef, OrgKind, Basis, Category, Status, Role, StaffNo)
from services.organizations.views import (  # noqa: F401  (re-exported)
    demo_id, _s, _ratio, _roll_up_member_counts, _org_ref, _org_out, _history_ref, _history_out, _member_out)
from services.organizations.records.application import BranchLifeRecords
from services.organizations.records.domain import BranchLife, MemberFile
from services.organizations.records.projections import RecordsReadModel

ONE_COMMITTEE = "the-university-committee"
READERS = (ORG_ADMIN, COLLEGE_SECRETARY, BRANCH_SECRETARY, AUDITOR, OPS, MEMBER)


class OrganizationsApplication(MembersAsOf, CoverageAsOf, AuditedHistory, AuditQueries,
                               ParkingOperations, PublishedLogQueries, EventSourcedApplication):
    name = "organizations"
    # Models the API description cannot find by reading the code (shared.api):
    # the import entrypoints hand the payload through to shared.imports.
    API_MODELS = {"preview_import": ImportFile, "apply_import": ImportFile}
    # Long-lived aggregates (a branch's roles over the years) load from a snapshot.
    snapshotting_intervals = {Organization: 100, Member: 100, BranchLife: 100, MemberFile: 100}

    def __init__(self, settings: DatabaseSettings):
        super().__init__(settings)
        self.read_model = OrganizationsReadModel()
        # member_history copies member_view's new row: it runs after it.
        Projector(self, [self.read_model, MemberHistoryReadModel(), RecordsReadModel(),
                         DepartmentsReadModel()], service="organizations")
        self.records = BranchLifeRecords(self)  # 组织生活记录 (issue 8)
        self.imports = OrganizationImports(self)  # spreadsheets in and out (批量导入)
        self.departments = Departments(self, READERS)  # 职能部门 (issue 9)

    # -- scope -------------------------------------------------------------
    def _org_row(self, org_id) -> dict:
        row = self.query_one("SELECT * FROM org_view WHERE id = %s", (str(org_id),))
        if row is None:
            raise NotFound(f"organisation {org_id} not found")
        return row

    def office(self, org_id: str, roles: tuple) -> Office | None:
        """Who holds ``roles`` in an organisation now (``org_roles``): what a
        secretary's token is checked against (``shared.office``)."""
        return read_office(self, org_id, roles, orgs="org_view", role_table="org_roles")

    def college_of(self, org_id) -> UUID | None:
        """The level-2 organisation an organisation belongs to (itself at level 2)."""
        row = self._org_row(org_id)
        if row["level"] == COLLEGE:
            return row["id"]
        if row["level"] == BRANCH:
            return row["parent_id"]
        return None

    def _may_manage_members(self, caller: Caller, org_id) -> None:
        """org_admin anywhere; a college secretary within its own college."""
        if caller.role == ORG_ADMIN:
            return
        if caller.role == COLLEGE_SECRETARY:
            if str(self.college_of(org_id)) == caller.org:
                return
            raise Forbidden("a college secretary manages members of its own college only")
        raise Forbidden(f"role '{caller.role}' may not change members or roles")

    def _may_read_members(self, caller: Caller, org_id) -> None:
        if caller.role in (ORG_ADMIN, AUDITOR):
            return
        if caller.role == COLLEGE_SECRETARY:
            row = self._org_row(org_id)
            if row["level"] != COMMITTEE and str(self.college_of(org_id)) == caller.org:
                return
            raise Forbidden("a college secretary reads its own college only")
        if caller.role == BRANCH_SECRETARY:
            if str(org_id) == caller.org:
                return
            raise Forbidden("a branch secretary reads its own branch only")
        raise Forbidden(f"role '{caller.role}' may not read member lists")

    # -- organisations -------------------------------------------------------
    def create_organization(self, caller: Caller, payload: dict) -> dict:
        caller.require_role(ORG_ADMIN)
        cmd = CreateOrganization.parse(payload)
        if cmd.org_id is not None and self.exists(cmd.org_id):
            raise ValidationError.single("org_id", f"{cmd.org_id} already exists")
        parent = self.load(cmd.parent_id, Organization, "parent organisation") \
            if cmd.parent_id else None
        org = Organization.found(cmd.name, cmd.kind, parent, caller.as_actor(), basis=cmd.basis,
                                 reason=cmd.reason, org_id=cmd.org_id)
        claims = [self._claim_name(org.parent_id, org.name, org.id)]
        if cmd.kind == "committee":
            # There is one university committee: its claim makes a second one fail
            # even when two are created at the same moment.
            try:
                claims.append(self._claim(ONE_COMMITTEE, "committee", org.id))
            except ValidationError:
                raise ValidationError.single(
                    "kind", "the university committee (学校党委) already exists") from None
        return self.commit(org, *claims, result=lambda: self.get_organization(caller, org.id))

    def _claim_name(self, parent_id, name: str, org_id) -> SiblingName:
        return self._claim(SiblingName.key_for(parent_id), name, org_id)

    def _claim(self, key: str, name: str, org_id) -> SiblingName:
        claim_id = SiblingName.create_id(key, name)
        if self.exists(claim_id):
            claim = self.repository.get(claim_id)
            claim.claim(org_id)
            return claim
        return SiblingName(parent_key=key, name=name, org_id=org_id)

    def _release_name(self, org: Organization) -> SiblingName | None:
        claim_id = SiblingName.create_id(SiblingName.key_for(org.parent_id), org.name)
        if not self.exists(claim_id):
            return None
        claim = self.repository.get(claim_id)
        claim.release(org.id)
        return claim

    def rename_organization(self, caller: Caller, payload: dict) -> dict:
        caller.require_role(ORG_ADMIN)
        cmd = RenameOrganization.parse(payload)
        org = self.load(cmd.org_id, Organization, "organisation")
        released = self._release_name(org)
        org.rename(cmd.name, caller.as_actor(), cmd.reason)
        claim = self._claim_name(org.parent_id, org.name, org.id)
        return self.commit(*[a for a in (org, released, claim) if a is not None], result=lambda: self.get_organization(caller, org.id))

    def move_organization(self, caller: Caller, payload: dict) -> dict:
        caller.require_role(ORG_ADMIN)
        cmd = MoveOrganization.parse(payload)
        org = self.load(cmd.org_id, Organization, "organisation")
        new_parent = self.load(cmd.parent_id, Organization, "parent organisation")
        ancestors = [UUID(str(p["id"])) for p in self._path_rows(new_parent.id)]
        released = self._release_name(org)
        org.move(new_parent, ancestors, caller.as_actor(), cmd.reason)
        claim = self._claim_name(org.parent_id, org.name, org.id)
        return self.commit(*[a for a in (org, released, claim) if a is not None], result=lambda: self.get_organization(caller, org.id))

    def merge_branches(self, caller: Caller, payload: dict) -> dict:
        """Merge a branch into another: its members are transferred, it is closed."""
        caller.require_role(ORG_ADMIN)
        cmd = MergeBranches.parse(payload)
        source = self.load(cmd.source_id, Organization, "source branch")
        target = self.load(cmd.target_id, Organization, "target branch")
        members = [self.load(member_id, Member, "member") for member_id in source.member_ids]
        source.merge_into(target, members, caller.as_actor(), cmd.reason)
        released = self._release_name(source)
        return self.commit(
            *[a for a in (source, target, released, *members) if a is not None],
            result=lambda: {**self.get_organization(caller, target.id),
                            "members_moved": len(members)})

    def dissolve_organization(self, caller: Caller, payload: dict) -> dict:
        caller.require_role(ORG_ADMIN)
        cmd = DissolveOrganization.parse(payload)
        org = self.load(cmd.org_id, Organization, "organisation")
        children = self.query_one(
            "SELECT count(*) AS n FROM org_view WHERE parent_id = %s AND status = 'active'",
            (str(org.id),))["n"]
        org.dissolve(children, caller.as_actor(), cmd.reason)
        released = self._release_name(org)
        return self.commit(*[a for a in (org, released) if a is not None], result=lambda: self.get_organization(caller, org.id))

    # -- members -----------------------------------------------------------
    def register_member(self, caller: Caller, payload: dict) -> dict:
        cmd = RegisterMember.parse(payload)
        self._may_manage_members(caller, cmd.branch_id)
        if cmd.member_id is not None and self.exists(cmd.member_id):
            raise ValidationError.single("member_id", f"{cmd.member_id} already exists")
        branch = self.load(cmd.branch_id, Organization, "branch")
        member = Member.register(
            cmd.name, branch, cmd.category, cmd.status, cmd.joined_on, caller.as_actor(),
            full_on=cmd.full_on, double_leader=cmd.double_leader, staff_no=cmd.staff_no,
            reason=cmd.reason, member_id=cmd.member_id)
        return self.commit(member, branch, result=lambda: self.get_member(caller, member.id))

    def _member_for_change(self, caller: Caller, member_id) -> Member:
        member = self.load(member_id, Member, "member")
        if member.branch_id is not None:
            self._may_manage_members(caller, member.branch_id)
        return member

    def _revocations(self, member: Member, loaded: dict, where: str, params: tuple,
                     actor: dict, reason: str) -> list:
        """Organisations whose roles a member loses (saved with the change that
        caused it); ``loaded`` holds aggregates this change already loaded."""
        changed = []
        for row in self.query(f"SELECT DISTINCT org_id FROM org_roles WHERE {where}", params):
            org = loaded.get(row["org_id"]) or self.load(row["org_id"], Organization,
                                                          "organisation")
            roles = org.roles_of(member.id)
            for role in roles:
                org.revoke_role(member.id, role, actor, reason)
            if roles and org.id not in loaded:
                changed.append(org)
        return changed

    def transfer_member(self, caller: Caller, payload: dict) -> dict:
        cmd = TransferMember.parse(payload)
        member = self._member_for_change(caller, cmd.member_id)
        to_branch = self.load(cmd.to_branch_id, Organization, "branch")
        if caller.role == COLLEGE_SECRETARY:
            self._may_manage_members(caller, to_branch.id)
        from_branch = self.load(member.branch_id, Organization, "branch")
        member.transfer(from_branch, to_branch, cmd.effective_on, caller.as_actor(), cmd.reason)
        loaded = {from_branch.id: from_branch, to_branch.id: to_branch}
        orgs = self._revocations(member, loaded, "member_id = %s AND org_id = %s",
                                 (str(member.id), str(from_branch.id)), caller.as_actor(),
                                 "转出 transferred out")
        return self.commit(member, from_branch, to_branch, *orgs, result=lambda: self.get_member(caller, member.id))

    def _change_member(self, caller: Caller, member_id, change) -> dict:
        """Load a member the caller may manage, apply ``change(member, actor)``, save."""
        member = self._member_for_change(caller, member_id)
        change(member, caller.as_actor())
        return self.commit(member, result=lambda: self.get_member(caller, member.id))

    def convert_member_to_full(self, caller: Caller, payload: dict) -> dict:
        cmd = ConvertMember.parse(payload)
        return self._change_member(caller, cmd.member_id, lambda m, actor: m.convert_to_full(
            cmd.effective_on, actor, cmd.reason))

    def change_member_category(self, caller: Caller, payload: dict) -> dict:
        cmd = ChangeCategory.parse(payload)
        return self._change_member(caller, cmd.member_id, lambda m, actor: m.change_category(
            cmd.category, cmd.effective_on, actor, cmd.reason))

    def set_double_leader(self, caller: Caller, payload: dict) -> dict:
        cmd = SetDoubleLeader.parse(payload)
        return self._change_member(caller, cmd.member_id, lambda m, actor: m.set_double_leader(
            cmd.double_leader, actor, cmd.reason))

    def member_leaves(self, caller: Caller, payload: dict) -> dict:
        cmd = MemberLeaves.parse(payload)
        member = self._member_for_change(caller, cmd.member_id)
        branch = self.load(member.branch_id, Organization, "branch")
        member.leave(branch, cmd.effective_on, caller.as_actor(), cmd.reason)
        orgs = self._revocations(member, {branch.id: branch}, "member_id = %s",
                                 (str(member.id),), caller.as_actor(), "离开 left")
        return self.commit(member, branch, *orgs, result=lambda: self.get_member(caller, member.id))

    def assign_role(self, caller: Caller, payload: dict) -> dict:
        cmd = AssignRole.parse(payload)
        self._may_manage_members(caller, cmd.org_id)
        org = self.load(cmd.org_id, Organization, "organisation")
        member = self.load(cmd.member_id, Member, "member")
        member_college = self.college_of(member.branch_id) if member.branch_id else None
        org.assign_role(member, cmd.role, member_college, caller.as_actor(), cmd.reason)
        return self.commit(org, result=lambda: self.get_organization(caller, org.id))

    def revoke_role(self, caller: Caller, payload: dict) -> dict:
        cmd = RevokeRole.parse(payload)
        self._may_manage_members(caller, cmd.org_id)
        org = self.load(cmd.org_id, Organization, "organisation")
        org.revoke_role(cmd.member_id, cmd.role, caller.as_actor(), cmd.reason)
        return self.commit(org, result=lambda: self.get_organization(caller, org.id))

    # -- queries -------------------------------------------------------------
    PATH_SQL = """WITH RECURSIVE up AS (
                 SELECT id, name, kind, level, parent_id, 0 AS depth FROM org_view WHERE id = %s
                 UNION ALL
                 SELECT o.id, o.name, o.kind, o.level, o.parent_id, up.depth + 1
                 FROM org_view o JOIN up ON o.id = up.parent_id WHERE up.depth < 10)
               SELECT id, name, kind, level FROM up ORDER BY depth DESC"""

    def _path_rows(self, org_id) -> list[dict]:
        return self.query(self.PATH_SQL, (str(org_id),))

    def get_path(self, caller: Caller, org_id) -> list[dict]:
        caller.require_role(*READERS)
        org_id = OrgRef.of(org_id=org_id).org_id
        rows = self._path_rows(org_id)  # empty: no such organisation (one query)
        if not rows:
            raise NotFound(f"organisation {org_id} not found")
        return [_org_ref(r) for r in rows]

    def get_organization(self, caller: Caller, org_id, as_of: str | None = None) -> dict:
        caller.require_role(*READERS)
        query = OrgAsOf.of(org_id=org_id, as_of=as_of)
        org_id, as_of = query.org_id, query.as_of
        if as_of:
            return self._organization_as_of(org_id, as_of)
        # one round trip: the organisation, its children, officers and path
        rows, children, officers, path = self.queries(
            ("SELECT * FROM org_view WHERE id = %s", (str(org_id),)),
            ("SELECT * FROM org_view WHERE parent_id = %s ORDER BY level, name", (str(org_id),)),
            ("SELECT r.role, r.member_id, m.name FROM org_roles r JOIN member_view m "
             "ON m.id = r.member_id WHERE r.org_id = %s ORDER BY r.role, m.name", (str(org_id),)),
            (self.PATH_SQL, (str(org_id),)))
        if not rows:
            raise NotFound(f"organisation {org_id} not found")
        row = rows[0]
        result = _org_out(row)
        result["member_count"] = row["head_count"]
        result["path"] = [_org_ref(r) for r in path]
        result["officers"] = [{"role": o["role"], "role_zh": ORG_ROLES[o["role"]],
                               "member_id": str(o["member_id"]), "name": o["name"]}
                              for o in officers]
        result["children"] = [dict(_org_out(c), member_count=c["head_count"])
                              for c in children]
        return result

    def _organization_as_of(self, org_id, as_of: str) -> dict:
        moment = parse_moment(as_of, "as_of")
        rows = self.query(
            "SELECT * FROM org_history WHERE valid_from <= %s AND (valid_to IS NULL OR valid_to > %s)",
            (moment, moment))
        by_id = {str(r["org_id"]): r for r in rows}
        row = by_id.get(str(org_id))
        if row is None:
            raise NotFound(f"organisation {org_id} did not exist at {as_of}")
        children = sorted((r for r in rows if str(r["parent_id"]) == str(org_id)),
                          key=lambda r: (r["level"], r["name"]))
        path, cursor = [], row
        while cursor is not None:
            path.insert(0, cursor)
            cursor = by_id.get(str(cursor["parent_id"])) if cursor["parent_id"] else None
        return {**_history_out(row), "as_of": moment.isoformat(),
                "path": [_history_ref(r) for r in path],
                "children": [_history_out(c) for c in children]}

    def get_tree(self, caller: Caller, as_of: str | None = None,
                 include_closed: bool = False) -> list[dict]:
        """The whole tree (optionally as of a moment), nested from the committee down."""
        caller.require_role(*READERS)
        query = TreeQuery.of(as_of=as_of, include_closed=include_closed)
        as_of, include_closed = query.as_of, query.include_closed
        if as_of:
            moment = parse_moment(as_of, "as_of")
            rows = [dict(_history_out(r)) for r in self.query(
                "SELECT * FROM org_history WHERE valid_from <= %s AND "
                "(valid_to IS NULL OR valid_to > %s) ORDER BY level, name", (moment, moment))]
        else:
            rows = [dict(_org_out(r), member_count=r["head_count"])
                    for r in self.query("SELECT * FROM org_view ORDER BY level, name")]
        if not include_closed:
            rows = [r for r in rows if r["status"] == "active"]
        nodes = {r["id"]: dict(r, children=[]) for r in rows}
        roots = []
        for node in nodes.values():
            parent = nodes.get(node["parent_id"]) if node["parent_id"] else None
            (parent["children"] if parent else roots).append(node)
        if as_of:
            effective, recorded = self._members_per_branch_as_of(moment)
            for root in roots:
                _roll_up_member_counts(root, effective)
                _roll_up_member_counts(root, recorded, "member_count_recorded")
        return roots

    def _members_per_branch_as_of(self, moment: dt.datetime) -> tuple[dict, dict]:
        """Members in each branch at a moment, two ways (both times are kept):
        by effective date — each member's last move (registration at the 入党日期,
        transfer, leaving) in effect on that day, as known now, so a roster
        imported today with past join dates counts from those dates; and as
        recorded — each member's last move recorded by then."""
        def per_branch(where: str, order: str, param) -> dict[str, int]:
            return {str(r["branch_id"]): int(r["n"]) for r in self.query(
                f"""SELECT branch_id, count(*) AS n FROM (
                      SELECT DISTINCT ON (member_id) member_id, to_branch_id AS branch_id
                      FROM member_moves WHERE {where}
                      ORDER BY member_id, {order}) latest
                    WHERE branch_id IS NOT NULL GROUP BY branch_id""", (param,))}
        return (per_branch("effective_on <= %s", "effective_on DESC, version DESC",
                           moment.date()),
                per_branch("recorded_at <= %s", "version DESC", moment))

    def list_members(self, caller: Caller, payload: dict) -> dict:
        cmd = ListMembers.parse(payload)
        row = self._org_row(cmd.org_id)
        self._may_read_members(caller, cmd.org_id)
        if cmd.as_of:
            self.record_audit_read(caller, row["id"], "list_members",
                                   cmd.model_dump(mode="json", exclude={"org_id"}))
            return self.list_members_as_of(row["id"], cmd.as_of, cmd)
        where, params = ["m.branch_id IN (SELECT id FROM sub)"], [str(row["id"])]
        if not cmd.include_left:
            where.append("m.active")
        if cmd.category:
            where.append("m.category = %s")
            params.append(cmd.category)
        if cmd.status:
            where.append("m.status = %s")
            params.append(cmd.status)
        if cmd.name_contains:
            where.append("m.name ILIKE %s")
            params.append(f"%{cmd.name_contains}%")
        sql = f"""WITH RECURSIVE sub AS (
                    SELECT id FROM org_view WHERE id = %s
                    UNION ALL SELECT o.id FROM org_view o JOIN sub ON o.parent_id = sub.id)
                  SELECT m.*, b.name AS branch_name, count(*) OVER () AS total
                  FROM member_view m JOIN org_view b ON b.id = m.branch_id
                  WHERE {' AND '.join(where)}
                  ORDER BY b.name, m.name, m.id LIMIT %s OFFSET %s"""
        params += [cmd.page_size, (cmd.page - 1) * cmd.page_size]
        rows = self.query(sql, params)
        return {"org_id": str(row["id"]), "page": cmd.page, "page_size": cmd.page_size,
                "total": int(rows[0]["total"]) if rows else 0,
                "members": [_member_out(r) for r in rows]}

    def get_member(self, caller: Caller, member_id, as_of: str | None = None,
                   replay: bool = False) -> dict:
        """A member now, or as of a moment (from the read model, or replayed
        from the store with ``replay``); the caller must be allowed to read the
        branch the member was in then."""
        q = MemberQuery.of(member_id=member_id, as_of=as_of, replay=replay)
        member_id, as_of, replay = q.member_id, q.as_of, q.replay
        if as_of:
            then = self.member_as_of(member_id, as_of, replay=replay)
            if not (caller.role == MEMBER and caller.sub == then["id"]):
                self._may_read_members(caller, then["branch_id"])
            self.record_audit_read(caller, member_id, "get_member",
                                   {"as_of": as_of, "replay": replay})
            return then
        # one round trip: the member, its roles and its moves (returned only
        # once the caller is found allowed to read the member's branch)
        rows, roles, moves = self.queries(
            ("SELECT m.*, b.name AS branch_name FROM member_view m "
             "LEFT JOIN org_view b ON b.id = m.branch_id WHERE m.id = %s", (str(member_id),)),
            ("SELECT r.org_id, o.name, r.role FROM org_roles r JOIN org_view o "
             "ON o.id = r.org_id WHERE r.member_id = %s ORDER BY o.level", (str(member_id),)),
            ("SELECT * FROM member_moves WHERE member_id = %s ORDER BY version",
             (str(member_id),)))
        if not rows:
            raise NotFound(f"member {member_id} not found")
        row = rows[0]
        if not (caller.role == MEMBER and caller.sub == str(member_id)):
            self._may_read_members(caller, row["branch_id"])
        result = _member_out(row)
        result["roles"] = [{"org_id": str(r["org_id"]), "org_name": r["name"], "role": r["role"],
                            "role_zh": ORG_ROLES[r["role"]]} for r in roles]
        result["history"] = [{"kind": h["kind"], "from_branch_id": _s(h["from_branch_id"]),
                              "to_branch_id": _s(h["to_branch_id"]),
                              "effective_on": _s(h["effective_on"]),
                              "recorded_at": h["recorded_at"].isoformat()} for h in moves]
        return result

    def double_leader_coverage(self, caller: Caller, college_id: str | None = None,
                               as_of: str | None = None) -> dict:
        """R5 (二.5, 三.4): 双带头人 secretaries of teacher branches, per college and
        school-wide; ``as_of`` (a timestamp, or a date meaning the end of that day,
        UTC): the teacher branches in being then under the college they had then,
        the secretary (书记) each had then and whether that member was a 双带头人
        then (``double_leader_coverage_as_of``)."""
        caller.require_role(ORG_ADMIN, COLLEGE_SECRETARY, AUDITOR, OPS)
        q = CoverageQuery.of(college_id=college_id, as_of=as_of)
        college_id = q.college_id
        if caller.role == COLLEGE_SECRETARY:
            if college_id and str(college_id) != caller.org:
                raise Forbidden("a college secretary sees its own college only")
            college_id = caller.org
        if q.as_of:
            return self.double_leader_coverage_as_of(college_id, q.as_of)
        rows = self.query(
            """SELECT c.id AS college_id, c.name AS college_name, b.id AS branch_id,
                      b.name AS branch_name, s.member_id AS secretary_id, m.name AS secretary_name,
                      coalesce(m.double_leader, false) AS covered
               FROM org_view b JOIN org_view c ON c.id = b.parent_id
               LEFT JOIN org_roles s ON s.org_id = b.id AND s.role = 'secretary'
               LEFT JOIN member_view m ON m.id = s.member_id
               WHERE b.kind = 'teacher_branch' AND b.status = 'active' AND c.status = 'active'
               ORDER BY c.name, b.name""")
        return coverage_of(rows, college_id)

    def get_history(self, caller: Caller, payload) -> list[dict] | dict:
        """The event history of an organisation or member (for 纪委办 auditors),
        filtered by time and kind, labelled in Chinese, as JSON or CSV; the
        read is recorded."""
        caller.require_role(ORG_ADMIN, AUDITOR)
        if not isinstance(payload, dict):  # an id alone: the whole history
            payload = {"aggregate_id": payload}
        return self.audited_history(caller, payload, {**EVENT_LABELS, **DEPARTMENT_LABELS},
                                    "organisation, member or department")

    # -- metrics -------------------------------------------------------------
    def business_gauges(self) -> list[dict]:
        orgs = self.query("SELECT level, kind, status, count(*) AS n FROM org_view "
                          "GROUP BY level, kind, status")
        members = self.query("SELECT category, status, count(*) AS n FROM member_view "
                             "WHERE active GROUP BY category, status")
        coverage = self.query(
            """SELECT count(*) AS total, count(*) FILTER (WHERE m.double_leader) AS covered
               FROM org_view b LEFT JOIN org_roles s ON s.org_id = b.id AND s.role = 'secretary'
               LEFT JOIN member_view m ON m.id = s.member_id
               WHERE b.kind = 'teacher_branch' AND b.status = 'active'""")[0]
        return [
            {"name": "lianchuang_organizations", "help": "Organisations by level, kind and status",
             "labels": ["level", "kind", "status"],
             "samples": [((str(r["level"]), r["kind"], r["status"]), r["n"]) for r in orgs]},
            {"name": "lianchuang_members", "help": "Active members by category and status",
             "labels": ["category", "status"],
             "samples": [((r["category"], r["status"]), r["n"]) for r in members]},
            {"name": "lianchuang_double_leader_coverage_ratio",
             "help": "Share of teacher branches whose secretary is a 双带头人 (R5)",
             "labels": [], "samples": [((), _ratio(coverage["covered"], coverage["total"]))]},
        ]


