"""Organizations imports (批量导入) and exports: planners run on the application.

Each planner reads its sheet, resolves names against the read models, then
runs the domain's own methods on the aggregates in memory (a preview checks
every invariant a single command checks); apply saves them all with the
``Import`` record in one atomic append (``shared.imports``).

Who may import: the org tree, 组织部 (org_admin) only; members, roles and the
organisational-life records (三会一课/主题党日, 民主评议: ``imports.records``),
org_admin anywhere and a college secretary within its own college (a row
outside it is a row error).
"""
from __future__ import annotations

import datetime as dt
from uuid import UUID

from shared.domain import derived_id
from shared.errors import ValidationError
from shared.identity import COLLEGE_SECRETARY, ORG_ADMIN
from shared.imports import ImportContext, Importer, ImportKind, Plan, add_domain_error
from shared.spreadsheets import (ENVELOPE_HEADERS, Table, envelope_rows, read_sheet, template,
                                 write_tables, xlsx_file)
from services.organizations.domain import (BRANCH, COLLEGE, COMMITTEE, ORG_KINDS, Member,
                                           Organization)
from services.organizations.imports.records import RecordImports, member_of_row
from services.organizations.imports.sheets import (FIELD_COLUMNS, NOTES, SHEETS,
                                                   field_values)

IMPORT_KINDS = tuple(SHEETS)


class OrganizationImports:
    """Imports and exports of the organizations service's own data."""

    def __init__(self, app):
        self.app = app
        records = RecordImports(app)
        self.importer = Importer(app, {"org_tree": self._plan_org_tree,
                                       "members": self._plan_members,
                                       "roles": self._plan_roles,
                                       "meetings": records.plan_meetings,
                                       "appraisals": records.plan_appraisals})

    # -- entry points ------------------------------------------------------------
    def preview(self, caller, payload: dict) -> dict:
        self._may_import(caller, payload.get("kind"))
        return self.importer.preview(caller, payload)

    def apply(self, caller, payload: dict) -> dict:
        self._may_import(caller, payload.get("kind"))
        return self.importer.apply(caller, payload)

    def template(self, caller, kind: str) -> dict:
        caller.require_role(ORG_ADMIN, COLLEGE_SECRETARY)
        kind = ImportKind.of(kind=kind).kind
        if kind not in SHEETS:
            raise ValidationError.single("kind", f"unknown import {kind!r}; one of "
                                         + ", ".join(SHEETS))
        title, columns = SHEETS[kind]
        return xlsx_file(f"{title}导入模板 {kind}-template.xlsx",
                         template(title, columns, NOTES[kind]))

    def export_history(self, caller, aggregate_id) -> dict:
        """An organisation's or member's full event history, one event a row (纪委办)."""
        envelopes = self.app.get_history(caller, aggregate_id)  # its roles, its checks
        first = envelopes[0]
        name = first["data"].get("name", "")
        return xlsx_file(f"history-{aggregate_id}.xlsx", write_tables([Table(
            name="历史 history", headers=ENVELOPE_HEADERS, rows=envelope_rows(envelopes),
            title=[f"{name} 变更历史 history of {first['aggregate_type']} {aggregate_id}",
                   f"导出时间 exported at {dt.datetime.now(dt.timezone.utc).isoformat()}"],
            widths=[8, 28, 30, 14, 20, 18, 50, 30, 80])]))

    @staticmethod
    def _may_import(caller, kind) -> None:
        if kind == "org_tree":
            caller.require_role(ORG_ADMIN)
        else:
            caller.require_role(ORG_ADMIN, COLLEGE_SECRETARY)

    # -- lookups -----------------------------------------------------------------
    def _active_orgs(self) -> list[dict]:
        return self.app.query("SELECT id, name, kind, level, parent_id, basis FROM org_view "
                              "WHERE status = 'active'")

    def _scope(self, caller) -> str | None:
        """The college a college secretary is confined to (None: anywhere)."""
        return caller.org if caller.role == COLLEGE_SECRETARY else None

    def _loader(self):
        """Load each organisation aggregate once per import."""
        loaded: dict[str, Organization] = {}

        def load(org_id) -> Organization:
            key = str(org_id)
            if key not in loaded:
                loaded[key] = self.app.load(org_id, Organization, "organisation")
            return loaded[key]
        return load, loaded

    @staticmethod
    def _read(ctx: ImportContext, kind: str):
        title, columns = SHEETS[kind]
        sheet = read_sheet(ctx.data, columns, title)
        return sheet, Plan.of(sheet)

    # -- org tree ----------------------------------------------------------------
    def _plan_org_tree(self, ctx: ImportContext) -> Plan:
        sheet, plan = self._read(ctx, "org_tree")
        errors = sheet.errors
        orgs = self._active_orgs()
        committee = next((o for o in orgs if o["level"] == COMMITTEE), None)
        # name (casefolded) under a parent key -> org row (existing) or aggregate (new)
        by_parent: dict[tuple[str, str], object] = {
            (str(o["parent_id"] or "root"), o["name"].casefold()): o for o in orgs}
        load, loaded = self._loader()
        seen: dict[tuple[str, str], int] = {}
        claims = []
        headers = FIELD_COLUMNS["org_tree"]
        # Parents before children, whatever the order of the rows.
        for row in sorted(sheet.rows, key=lambda r: ORG_KINDS[r.values["kind"]][0]):
            v = row.values
            level = ORG_KINDS[v["kind"]][0]
            parent = None
            if level == COMMITTEE:
                if v["parent"]:
                    errors.add(row.number, "上级组织", v["parent"],
                               "the university committee (学校党委) has no parent")
                    continue
                parent_key = "root"
            else:
                if not v["parent"]:
                    errors.add(row.number, "上级组织", None, "required (必填)")
                    continue
                parent = self._find_parent(v["parent"], level, committee, by_parent)
                if parent is None:
                    errors.add(row.number, "上级组织", v["parent"],
                               "unknown parent organisation (上级组织不存在)"
                               + (" at level %d" % (level - 1)))
                    continue
                parent_key = str(parent["id"] if isinstance(parent, dict) else parent.id)
            key = (parent_key, v["name"].casefold())
            if key in seen:
                errors.add(row.number, "组织名称", v["name"],
                           f"duplicate row (重复): same organisation as row {seen[key]}")
                continue
            seen[key] = row.number
            existing = by_parent.get(key)
            if isinstance(existing, dict):
                if existing["kind"] != v["kind"] or existing["basis"] != v["basis"]:
                    errors.add(row.number, "组织类型", v["kind"],
                               f"'{existing['name']}' exists as {ORG_KINDS[existing['kind']][1]}"
                               + (f" ({existing['basis']})" if existing["basis"] else ""))
                else:
                    plan.unchanged += 1
                continue
            if isinstance(existing, Organization):
                plan.unchanged += 1
                continue
            parent_agg = None
            if parent is not None:
                parent_agg = load(parent["id"]) if isinstance(parent, dict) else parent
            try:
                org = Organization.found(
                    v["name"], v["kind"], parent_agg, ctx.actor, basis=v["basis"],
                    reason=ctx.row_reason(row.number),
                    org_id=derived_id("import-org", parent_key, v["name"].casefold()))
                claims.append(self.app._claim_name(org.parent_id, org.name, org.id))
                if level == COMMITTEE:
                    if committee is not None:
                        raise ValidationError.single(
                            "kind", "the university committee (学校党委) already exists: "
                            f"'{committee['name']}'")
                    committee = {"id": org.id, "name": org.name, "level": COMMITTEE}
                    claims.append(self.app._claim("the-university-committee", "committee",
                                                  org.id))
            except ValidationError as exc:
                add_domain_error(errors, row.number, exc, headers, field_values("org_tree", v))
                continue
            by_parent[key] = org
            loaded[str(org.id)] = org  # a parent of later rows
            plan.created[ORG_KINDS[v["kind"]][1]] += 1
            plan.aggregates.append(org)
        plan.aggregates += claims
        return plan

    @staticmethod
    def _find_parent(name: str, level: int, committee, by_parent):
        if level == COLLEGE:
            if committee is None:
                return None
            if name.casefold() != committee["name"].casefold():
                return None
            return committee
        # a branch's parent: a college under the committee
        if committee is None:
            return None
        return by_parent.get((str(committee["id"]), name.casefold()))

    # -- members -----------------------------------------------------------------
    def _branches(self) -> tuple[dict, dict]:
        """(college name casefolded -> college row, (college id, branch name) -> branch row)."""
        orgs = self._active_orgs()
        colleges = {o["name"].casefold(): o for o in orgs if o["level"] == COLLEGE}
        branches = {(str(o["parent_id"]), o["name"].casefold()): o
                    for o in orgs if o["level"] == BRANCH}
        return colleges, branches

    def _plan_members(self, ctx: ImportContext) -> Plan:
        sheet, plan = self._read(ctx, "members")
        errors = sheet.errors
        colleges, branches = self._branches()
        scope = self._scope(ctx.caller)
        numbers = [r.values["staff_no"] for r in sheet.rows]
        known = {m["staff_no"]: m for m in self.app.query(
            "SELECT id, staff_no, name, branch_id, category, status, double_leader, active, "
            "left_on FROM member_view WHERE staff_no = ANY(%s)", (numbers,))}
        load, loaded = self._loader()
        members: list = []
        changed: list = []
        seen: dict[str, int] = {}
        headers = FIELD_COLUMNS["members"]
        today = dt.date.today()
        for row in sheet.rows:
            v = row.values
            number = v["staff_no"]
            if number in seen:
                errors.add(row.number, "工号/学号", number,
                           f"duplicate 工号/学号 in the file (also row {seen[number]})")
                continue
            seen[number] = row.number
            college = colleges.get(v["college"].casefold())
            if college is None:
                errors.add(row.number, "所属学院", v["college"], "unknown college (学院不存在)")
                continue
            if scope is not None and str(college["id"]) != scope:
                errors.add(row.number, "所属学院", v["college"],
                           "outside your college: a college secretary imports its own "
                           "college's members only")
                continue
            branch = branches.get((str(college["id"]), v["branch"].casefold()))
            if branch is None:
                errors.add(row.number, "所在支部", v["branch"],
                           f"unknown branch (支部不存在) in {college['name']}")
                continue
            existing = known.get(number)
            try:
                if existing is None:
                    member = self._register(ctx, row.number, v, load(branch["id"]), number)
                    members.append(member)
                    plan.created["党员 member"] += 1
                else:
                    changes = self._update(ctx, row.number, v, existing, load(branch["id"]),
                                           load, loaded, today, changed)
                    if changes:
                        for kind in changes:
                            plan.changed[kind] += 1
                    else:
                        plan.unchanged += 1
            except ValidationError as exc:
                add_domain_error(errors, row.number, exc, headers, field_values("members", v))
        touched = [o for o in loaded.values() if o.pending_events]
        plan.aggregates = members + changed + touched
        return plan

    def _register(self, ctx, row: int, v: dict, branch: Organization, number: str) -> Member:
        return Member.register(
            v["name"], branch, v["category"], v["status"], v["joined_on"], ctx.actor,
            full_on=v["full_on"],
            double_leader=bool(v["double_leader"]), staff_no=number,
            reason=ctx.row_reason(row), member_id=derived_id("import-member", number))

    def _update(self, ctx, row: int, v: dict, existing: dict, branch: Organization, load,
                loaded: dict, today: dt.date, changed: list) -> list[str]:
        """A known 工号/学号: the changes its row makes (run on the aggregate)."""
        if existing["name"] != " ".join(v["name"].split()):
            raise ValidationError.single(
                "member_id", f"工号/学号 {existing['staff_no']} belongs to {existing['name']}")
        if not existing["active"]:
            raise ValidationError.single(
                "member_id", f"{existing['name']} left on {existing['left_on']}; "
                "re-admission is not imported")
        wanted = (str(branch.id) != str(existing["branch_id"]) or
                  v["category"] != existing["category"] or
                  v["status"] != existing["status"] or
                  (v["double_leader"] is not None and
                   bool(v["double_leader"]) != existing["double_leader"]))
        if not wanted:
            return []
        member = self.app.load(existing["id"], Member, "member")
        actor, reason = ctx.actor, ctx.row_reason(row)
        effective = v["effective_on"] or today
        changes = []
        if str(branch.id) != str(member.branch_id):
            from_branch = load(member.branch_id)
            member.transfer(from_branch, branch, effective, actor, reason)
            # roles held in the branch left behind end with the transfer
            revoked = self.app._revocations(
                member, {UUID(str(k)): o for k, o in loaded.items()},
                "member_id = %s AND org_id = %s", (str(member.id), str(from_branch.id)),
                actor, "转出 transferred out: " + reason)
            for org in revoked:
                loaded[str(org.id)] = org
            changes.append("转接 transfer")
        if v["category"] != member.category:
            member.change_category(v["category"], effective, actor, reason)
            changes.append("类别 category")
        if v["status"] != member.status:
            if v["status"] != "full":
                raise ValidationError.single("status", "a full member (正式党员) cannot become "
                                             "probationary by import")
            member.convert_to_full(v["full_on"] or effective, actor, reason)
            changes.append("转正 converted to full")
        if v["double_leader"] is not None and bool(v["double_leader"]) != member.double_leader:
            member.set_double_leader(bool(v["double_leader"]), actor, reason)
            changes.append("双带头人 double leader")
        changed.append(member)
        return changes

    # -- roles -------------------------------------------------------------------
    def _plan_roles(self, ctx: ImportContext) -> Plan:
        sheet, plan = self._read(ctx, "roles")
        errors = sheet.errors
        orgs = self._active_orgs()
        by_id = {str(o["id"]): o for o in orgs}
        by_parent = {(by_id[str(o["parent_id"])]["name"].casefold() if o["parent_id"]
                      and str(o["parent_id"]) in by_id else "", o["name"].casefold()): o
                     for o in orgs}
        numbers = [r.values["staff_no"] for r in sheet.rows]
        known = {m["staff_no"]: m for m in self.app.query(
            "SELECT id, staff_no, name, branch_id, active FROM member_view "
            "WHERE staff_no = ANY(%s)", (numbers,))}
        scope = self._scope(ctx.caller)
        load, loaded = self._loader()
        seen: dict[tuple, int] = {}
        members: dict[str, Member] = {}
        headers = FIELD_COLUMNS["roles"]
        for row in sheet.rows:
            v = row.values
            org = by_parent.get(((v["parent"] or "").casefold(), v["org"].casefold()))
            if org is None:
                errors.add(row.number, "组织名称", v["org"],
                           "unknown organisation (组织不存在) under "
                           + (v["parent"] or "no parent"))
                continue
            college = str(org["id"]) if org["level"] == COLLEGE else \
                str(org["parent_id"]) if org["level"] == BRANCH else None
            if scope is not None and college != scope:
                errors.add(row.number, "组织名称", v["org"],
                           "outside your college: a college secretary imports its own "
                           "college's roles only")
                continue
            member_row = member_of_row(errors, row.number, v, known)
            if member_row is None:
                continue
            key = (str(org["id"]), str(member_row["id"]), v["role"])
            if key in seen:
                errors.add(row.number, "职务", v["role"],
                           f"duplicate row (重复): same role as row {seen[key]}")
                continue
            seen[key] = row.number
            aggregate = load(org["id"])
            if str(member_row["id"]) in aggregate.officers.get(v["role"], []):
                plan.unchanged += 1
                continue
            try:
                member = members.get(str(member_row["id"])) or self.app.load(
                    member_row["id"], Member, "member")
                members[str(member.id)] = member
                member_college = None
                if member.branch_id is not None:
                    branch_row = by_id.get(str(member.branch_id))
                    member_college = UUID(str(branch_row["parent_id"])) if branch_row else None
                aggregate.assign_role(member, v["role"], member_college, ctx.actor,
                                      ctx.row_reason(row.number))
            except ValidationError as exc:
                add_domain_error(errors, row.number, exc, headers, field_values("roles", v))
                continue
            plan.created["职务 role"] += 1
        plan.aggregates = [o for o in loaded.values() if o.pending_events]
        return plan
