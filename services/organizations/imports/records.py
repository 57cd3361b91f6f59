"""Imports of organisational-life records (组织生活记录导入): planners, no entrypoints.

* ``meetings``: a branch's 三会一课 and 主题党日, one row per meeting, keyed by
  branch, kind, date and topic (``records.domain.topic_key``);
* ``appraisals``: 民主评议党员 results, one row per member and year
  (``records.domain.record_key``).

Each row runs the records domain's own checks (``check_meeting``,
``check_member_record``, the aggregates' uniqueness) on aggregates loaded
once per import, so a preview finds every error a single ``record_meeting`` /
``record_member_record`` would raise. A row's record id derives from its key:
the row imported again is ``unchanged``; the same key recorded by hand (another
id) is a row error — it is corrected there, not overwritten by a file.
"""
from __future__ import annotations

import re
from uuid import UUID

from shared.domain import derived_id
from shared.errors import ValidationError
from shared.identity import COLLEGE_SECRETARY
from shared.imports import ImportContext, Plan, add_domain_error
from shared.spreadsheets import read_sheet
from services.organizations.domain import BRANCH, COLLEGE
from services.organizations.imports.sheets import FIELD_COLUMNS, SHEETS
from services.organizations.records.domain import (
    MEETING_KINDS, THEME_DAY_FORMS, BranchLife, MemberFile, check_meeting, check_member_record,
    record_key, topic_key)

_OUTSIDE = "outside your college: a college secretary imports its own college's records only"
UNKNOWN_MEMBER = "unknown member (党员不存在)"


def member_of_row(errors, row: int, v: dict, known: dict[str, dict]) -> dict | None:
    """The member a row names by 工号/学号 and 姓名 (``known``: member rows by
    number), or None with the row's error added: unknown number, or a number
    that belongs to someone else."""
    member = known.get(v["staff_no"])
    if member is None:
        errors.add(row, "工号/学号", v["staff_no"], UNKNOWN_MEMBER)
        return None
    if member["name"] != " ".join(v["name"].split()):
        errors.add(row, "姓名", v["name"], f"工号/学号 {v['staff_no']} belongs to {member['name']}")
        return None
    return member


class RecordImports:
    """Planners for the records kinds, run on the organisations application."""

    def __init__(self, app):
        self.app = app

    @staticmethod
    def _read(ctx: ImportContext, kind: str):
        title, columns = SHEETS[kind]
        sheet = read_sheet(ctx.data, columns, title)
        return sheet, Plan.of(sheet)

    @staticmethod
    def _scope(caller) -> str | None:
        return caller.org if caller.role == COLLEGE_SECRETARY else None

    def _members_by_number(self, numbers) -> dict[str, dict]:
        return {m["staff_no"]: m for m in self.app.query(
            "SELECT id, staff_no, name, branch_id, category, active FROM member_view "
            "WHERE staff_no = ANY(%s)", (list(numbers),))}

    # -- 三会一课 / 主题党日 ---------------------------------------------------------
    def plan_meetings(self, ctx: ImportContext) -> Plan:
        sheet, plan = self._read(ctx, "meetings")
        errors = sheet.errors
        orgs = self.app.query("SELECT id, name, level, parent_id, status FROM org_view "
                              "WHERE level IN (%s, %s)", (COLLEGE, BRANCH))
        colleges = {o["name"].casefold(): o for o in orgs
                    if o["level"] == COLLEGE and o["status"] == "active"}
        branches = {(str(o["parent_id"]), o["name"].casefold()): o for o in orgs
                    if o["level"] == BRANCH}
        listed_numbers = {n for r in sheet.rows for n in
                          (r.values["attendees"] or []) + (r.values["absent"] or [])
                          + [n for n, _ in (r.values["leave"] or [])]}
        known = self._members_by_number(listed_numbers)
        scope = self._scope(ctx.caller)
        lives: dict[str, BranchLife] = {}
        seen: dict[tuple, int] = {}
        headers = FIELD_COLUMNS["meetings"]
        today = self.app.records.today()
        for row in sheet.rows:
            v = row.values
            college = colleges.get(v["college"].casefold())
            if college is None:
                errors.add(row.number, "所属学院", v["college"], "unknown college (学院不存在)")
                continue
            if scope is not None and str(college["id"]) != scope:
                errors.add(row.number, "所属学院", v["college"], _OUTSIDE)
                continue
            branch = branches.get((str(college["id"]), v["branch"].casefold()))
            if branch is None:
                errors.add(row.number, "所在支部", v["branch"],
                           f"unknown branch (支部不存在) in {college['name']}")
                continue
            if branch["status"] != "active":
                errors.add(row.number, "所在支部", v["branch"], f"the branch is {branch['status']}")
                continue
            branch_id = str(branch["id"])
            # members by 工号/学号: each unknown number is its own error
            attendees, absentees, unknown = [], [], False
            listed: list[tuple[str, str]] = []  # (column, 工号) by position, for errors
            for number in v["attendees"]:
                member = known.get(number)
                if member is None:
                    errors.add(row.number, "出席人员", number, UNKNOWN_MEMBER)
                    unknown = True
                else:
                    attendees.append(str(member["id"]))
            absent = [(n, "请假人员", "leave", note) for n, note in v["leave"] or []] + \
                     [(n, "缺席人员", "absent", None) for n in v["absent"] or []]
            for number, column, kind, note in absent:
                member = known.get(number)
                if member is None:
                    errors.add(row.number, column, number, UNKNOWN_MEMBER)
                    unknown = True
                else:
                    absentees.append({"member_id": str(member["id"]), "kind": kind, "note": note})
                    listed.append((column, number))
            if unknown:
                continue
            try:
                content = check_meeting(v["kind"], v["held_on"], v["topic"], v["form"],
                                        attendees, absentees, today)
            except ValidationError as exc:
                self._meeting_errors(errors, row.number, exc, v, listed, headers)
                continue
            key = topic_key(content["kind"], content["held_on"], content["topic"])
            if (branch_id, key) in seen:
                errors.add(row.number, "主题", v["topic"], "duplicate row (重复): the same "
                           f"{MEETING_KINDS[v['kind']]} as row {seen[(branch_id, key)]}")
                continue
            seen[(branch_id, key)] = row.number
            record_id = str(derived_id("import-meeting", branch_id, key))
            life = lives.get(branch_id) or self.app.records._branch_life(branch_id)
            lives[branch_id] = life
            holder = life.keys.get(key)
            if holder == record_id:
                plan.unchanged += 1  # imported before
                continue
            if holder is not None:
                errors.add(row.number, "主题", v["topic"],
                           f"already in the system (已存在): record {holder} of this branch on "
                           "that date and topic; correct it there")
                continue
            roster = self.app.records._roster_errors(
                branch_id, content["held_on"],
                [(f"attendees[{i}]", a) for i, a in enumerate(attendees)]
                + [(f"absentees[{i}].member_id", a["member_id"])
                   for i, a in enumerate(absentees)])
            try:
                life.record_meeting(record_id, content, roster, ctx.actor,
                                    ctx.row_reason(row.number), None)
            except ValidationError as exc:
                self._meeting_errors(errors, row.number, exc, v, listed, headers)
                continue
            plan.created[f"{MEETING_KINDS[content['kind']]} meeting"] += 1
        plan.aggregates = [life for life in lives.values() if life.pending_events]
        return plan

    @staticmethod
    def _meeting_errors(errors, row: int, exc: ValidationError, v: dict,
                        absent: list[tuple[str, str]], headers: dict) -> None:
        """The domain's errors on a row, by column: a listed member's error names
        the column that listed them and their 工号/学号."""
        for e in exc.errors:
            field = e["field"]
            index = re.match(r"(attendees|absentees)\[(\d+)\]", field)
            if index and index.group(1) == "attendees":
                errors.add(row, "出席人员", v["attendees"][int(index.group(2))], e["message"])
            elif index:
                column, number = absent[int(index.group(2))]
                errors.add(row, column, number, e["message"])
            else:
                column = headers.get(field)
                value = v.get(field) if column else None
                labels = {"kind": MEETING_KINDS, "form": THEME_DAY_FORMS}.get(field, {})
                errors.add(row, column, labels.get(value, value), e["message"])

    # -- 民主评议党员 --------------------------------------------------------------------
    def plan_appraisals(self, ctx: ImportContext) -> Plan:
        sheet, plan = self._read(ctx, "appraisals")
        errors = sheet.errors
        known = self._members_by_number(r.values["staff_no"] for r in sheet.rows)
        scope = self._scope(ctx.caller)
        records = self.app.records
        today = records.today()
        files: dict[str, MemberFile] = {}
        seen: dict[tuple, int] = {}
        headers = FIELD_COLUMNS["appraisals"]
        colleges: dict[str, UUID | None] = {}
        for row in sheet.rows:
            v = row.values
            member = member_of_row(errors, row.number, v, known)
            if member is None:
                continue
            details = {"grade": v["grade"]}
            if v["handling"] is not None:
                details["handling"] = v["handling"]
            try:
                content = check_member_record("appraisal", v["on"], details, today,
                                              member["category"], None)
            except ValidationError as exc:
                add_domain_error(errors, row.number, exc, headers,
                                 {"on": v["on"], "details.grade": v["grade"],
                                  "details.handling": v["handling"]})
                continue
            member_id = str(member["id"])
            branch_id = records.branches_on([member_id], content["on"])[member_id]
            if branch_id is None:
                errors.add(row.number, "评议日期", v["on"],
                           f"{member['name']} was not a member of any branch on that date")
                continue
            if scope is not None:
                if branch_id not in colleges:
                    colleges[branch_id] = self.app.college_of(branch_id)
                if str(colleges[branch_id]) != scope:
                    errors.add(row.number, "工号/学号", v["staff_no"], _OUTSIDE)
                    continue
            key = record_key(content)
            if (member_id, key) in seen:
                errors.add(row.number, "评议日期", v["on"], "duplicate row (重复): this member's "
                           f"{content['year']} 民主评议 is also row {seen[(member_id, key)]}")
                continue
            seen[(member_id, key)] = row.number
            record_id = str(derived_id("import-appraisal", member_id, content["year"]))
            file = files.get(member_id) or records._member_file(member_id)
            files[member_id] = file
            holder = file.keys.get(key)
            if holder == record_id:
                plan.unchanged += 1
                continue
            if holder is not None:
                errors.add(row.number, "评议日期", v["on"],
                           f"already in the system (已存在): this member's {content['year']} "
                           f"民主评议 is record {holder}; correct it there")
                continue
            file.record(record_id, branch_id, content, ctx.actor, ctx.row_reason(row.number),
                        None)
            plan.created["民主评议 appraisal"] += 1
        plan.aggregates = [f for f in files.values() if f.pending_events]
        return plan
