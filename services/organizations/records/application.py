"""Organisational-life records (组织生活记录): commands, queries, who may do what.

* A branch's secretary, its college's secretary or 组织部 (org_admin) records
  and corrects its meetings (三会一课, 主题党日) and its members' records
  (党性体检, 民主评议, 项目攻坚团队, 课程思政, 亮诺践诺).
* 红线/底线 violations are recorded by 组织部 (org_admin) only, on the 纪委办's
  finding, with evidence.
* Auditors (纪委办) read everything and change nothing; a member reads their
  own records.

Attendees and subjects must have been members of the branch on the date: the
member moves (``member_moves``: registration, transfers, leaving, each with the
date it took effect) say where each member was.
"""
from __future__ import annotations

import datetime as dt
from typing import Literal, Optional
from uuid import UUID, uuid4

from pydantic import Field

from shared.commands import Command, Evidence, Ids, Mapping, Reason, RequiredReason, RequiredText
from shared.errors import Forbidden, NotFound, ValidationError
from shared.identity import (AUDITOR, BRANCH_SECRETARY, COLLEGE_SECRETARY, MEMBER, ORG_ADMIN,
                             Caller)
from services.organizations.records.domain import (
    MEETING_KINDS, MEMBER_RECORD_KINDS, THEME_DAY_FORMS, BranchLife, MemberFile,
    check_meeting, check_member_record, is_id)

MeetingKind = Literal[tuple(MEETING_KINDS)]  # type: ignore[valid-type]
RecordKind = Literal[tuple(MEMBER_RECORD_KINDS)]  # type: ignore[valid-type]
ThemeDayForm = Literal[tuple(THEME_DAY_FORMS)]  # type: ignore[valid-type]
class MeetingContent(Command):
    branch_id: UUID
    kind: MeetingKind
    held_on: dt.date
    topic: RequiredText
    form: Optional[ThemeDayForm] = None
    attendees: Ids(max_length=2000) = Field(default_factory=list)
    # [{member_id, kind: leave (请假) | absent (缺席), note}], checked in the domain
    absentees: list[Mapping] = Field(default_factory=list, max_length=2000)
    evidence: Optional[Evidence] = None


class RecordMeeting(MeetingContent):
    reason: Optional[Reason] = None
    record_id: Optional[UUID] = None  # for imports: a known id makes a re-import idempotent


class CorrectMeeting(MeetingContent):
    record_id: UUID
    reason: RequiredReason


class MemberRecordContent(Command):
    member_id: UUID
    kind: RecordKind
    on: dt.date
    details: Mapping = Field(default_factory=dict)
    evidence: Optional[Evidence] = None


class RecordMemberRecord(MemberRecordContent):
    reason: Optional[Reason] = None
    record_id: Optional[UUID] = None


class CorrectMemberRecord(MemberRecordContent):
    record_id: UUID
    reason: RequiredReason


class ListMeetings(Command):
    branch_id: UUID
    year: Optional[int] = Field(default=None, ge=1921, le=2200)
    kind: Optional[MeetingKind] = None


class MemberRecords(Command):
    member_id: UUID
    year: Optional[int] = Field(default=None, ge=1921, le=2200)


class BranchLifeRecords:
    """The records part of the organisations application (``app.records``)."""

    def __init__(self, app, clock=dt.date.today):
        self.app = app
        self.today = clock

    # -- scope -------------------------------------------------------------------
    def _may_record(self, caller: Caller, branch_id) -> None:
        """org_admin anywhere; a branch secretary for its branch; a college
        secretary for the branches of its college."""
        if caller.role == ORG_ADMIN:
            return
        if caller.role == BRANCH_SECRETARY and caller.org == str(branch_id):
            return
        if caller.role == COLLEGE_SECRETARY and caller.org == str(self.app.college_of(branch_id)):
            return
        raise Forbidden("records of a branch are entered by its secretary, its college's "
                        "secretary or 组织部 (org_admin)")

    def may_read_member(self, caller: Caller, member_id, branch_id) -> None:
        """A member's records: the member, the secretaries of their branch and its
        college, org_admin and auditors — no one else."""
        if caller.role in (ORG_ADMIN, AUDITOR):
            return
        if caller.role == MEMBER and caller.sub == str(member_id):
            return
        if branch_id is not None:
            if caller.role == BRANCH_SECRETARY and caller.org == str(branch_id):
                return
            if caller.role == COLLEGE_SECRETARY and \
                    caller.org == str(self.app.college_of(branch_id)):
                return
        raise Forbidden("a member's records are read by the member, the secretaries of their "
                        "branch and college, 组织部 and 纪委办 only")

    # -- rosters -------------------------------------------------------------------
    def branches_on(self, member_ids: list[str], day) -> dict[str, str | None]:
        """Each member's branch on a day: the last move effective by then."""
        if not member_ids:
            return {}
        rows = self.app.query(
            """SELECT DISTINCT ON (member_id) member_id, to_branch_id FROM member_moves
               WHERE member_id = ANY(%s::uuid[]) AND effective_on <= %s
               ORDER BY member_id, effective_on DESC, version DESC""",
            (list(member_ids), day))
        found = {str(r["member_id"]): (str(r["to_branch_id"]) if r["to_branch_id"] else None)
                 for r in rows}
        return {m: found.get(m) for m in member_ids}

    def _roster_errors(self, branch_id: str, day, listed: list[tuple[str, str]]) -> list[dict]:
        """``listed``: (field, member_id); an error for each not in the branch that day."""
        ids = list(dict.fromkeys(m for _, m in listed))
        where = self.branches_on(ids, day)
        known = {str(r["id"]): r for r in self.app.query(
            "SELECT id, name FROM member_view WHERE id = ANY(%s::uuid[])", (ids,))}
        errors = []
        for field, member_id in listed:
            if member_id not in known:
                errors.append({"field": field, "message": f"no member {member_id}"})
            elif where.get(member_id) != branch_id:
                name = known[member_id]["name"]
                elsewhere = where.get(member_id)
                why = "was not yet a member or had left" if elsewhere is None \
                    else "belonged to another branch (transferred)"
                errors.append({"field": field, "message":
                               f"{name} was not a member of this branch on {day}: {why}"})
        return errors

    def _branch(self, branch_id) -> dict:
        row = self.app._org_row(branch_id)
        if row["level"] != 3:
            raise ValidationError.single("branch_id", f"'{row['name']}' is not a branch (党支部)")
        return row

    def _branch_life(self, branch_id) -> BranchLife:
        life_id = BranchLife.id_for(branch_id)
        if self.app.exists(life_id):
            return self.app.load(life_id, BranchLife, "branch records")
        return BranchLife.open_for(branch_id)

    def _member_file(self, member_id) -> MemberFile:
        file_id = MemberFile.id_for(member_id)
        if self.app.exists(file_id):
            return self.app.load(file_id, MemberFile, "member records")
        return MemberFile.open_for(member_id)

    # -- meetings --------------------------------------------------------------------
    def _meeting_content(self, cmd: MeetingContent) -> tuple[dict, list[dict]]:
        """The cleaned meeting and its roster errors; every bad field at once."""
        branch = self._branch(cmd.branch_id)
        if branch["status"] != "active":
            raise ValidationError.single("branch_id", f"'{branch['name']}' is {branch['status']}")
        listed = [(f"attendees[{i}]", str(a)) for i, a in enumerate(cmd.attendees)] + \
                 [(f"absentees[{i}].member_id", str(UUID(a["member_id"])))
                  for i, a in enumerate(cmd.absentees) if is_id(a.get("member_id"))]
        roster_errors = self._roster_errors(str(branch["id"]), cmd.held_on, listed)
        try:
            content = check_meeting(
                cmd.kind, cmd.held_on, cmd.topic, cmd.form, [str(a) for a in cmd.attendees],
                [dict(a) for a in cmd.absentees], self.today())
        except ValidationError as exc:
            named = set(exc.fields)
            raise ValidationError(exc.errors + [e for e in roster_errors
                                                if e["field"] not in named]) from None
        return content, roster_errors

    def record_meeting(self, caller: Caller, payload: dict) -> dict:
        """Record a 三会一课 meeting or 主题党日 held by a branch."""
        cmd = RecordMeeting.parse(payload)
        self._may_record(caller, cmd.branch_id)
        content, roster_errors = self._meeting_content(cmd)
        life = self._branch_life(cmd.branch_id)
        record_id = str(cmd.record_id or uuid4())
        if record_id in life.meetings:
            raise ValidationError.single("record_id", f"{record_id} is already recorded")
        life.record_meeting(record_id, content, roster_errors, caller.as_actor(), cmd.reason,
                            cmd.evidence)
        return self.app.commit(life, result=lambda: self.get_meeting(caller, cmd.branch_id,
                                                                     record_id))

    def correct_meeting(self, caller: Caller, payload: dict) -> dict:
        """A correction: the whole corrected meeting and its reason; the original stays."""
        cmd = CorrectMeeting.parse(payload)
        self._may_record(caller, cmd.branch_id)
        content, roster_errors = self._meeting_content(cmd)
        life_id = BranchLife.id_for(cmd.branch_id)
        if not self.app.exists(life_id):
            raise NotFound(f"meeting {cmd.record_id} not found in this branch")
        life = self.app.load(life_id, BranchLife, "branch records")
        life.correct_meeting(str(cmd.record_id), content, roster_errors, caller.as_actor(),
                             cmd.reason, cmd.evidence)
        return self.app.commit(life, result=lambda: self.get_meeting(caller, cmd.branch_id,
                                                                     cmd.record_id))

    def get_meeting(self, caller: Caller, branch_id, record_id) -> dict:
        self._may_read_branch(caller, branch_id)
        row = self.app.query_one("SELECT * FROM life_meetings WHERE record_id = %s AND "
                                 "branch_id = %s", (str(record_id), str(branch_id)))
        if row is None:
            raise NotFound(f"meeting {record_id} not found in this branch")
        return _meeting_out(row)

    def _may_read_branch(self, caller: Caller, branch_id) -> None:
        if caller.role in (ORG_ADMIN, AUDITOR):
            return
        self._may_record(caller, branch_id)

    def list_meetings(self, caller: Caller, payload: dict) -> dict:
        cmd = ListMeetings.parse(payload)
        self._may_read_branch(caller, cmd.branch_id)
        sql, params = "SELECT * FROM life_meetings WHERE branch_id = %s", [str(cmd.branch_id)]
        if cmd.year:
            sql += " AND extract(year FROM held_on) = %s"
            params.append(cmd.year)
        if cmd.kind:
            sql += " AND kind = %s"
            params.append(cmd.kind)
        rows = self.app.query(sql + " ORDER BY held_on, kind, topic", params)
        return {"branch_id": str(cmd.branch_id), "year": cmd.year,
                "meetings": [_meeting_out(r) for r in rows]}

    # -- member records ------------------------------------------------------------
    def _member_content(self, caller: Caller, cmd: MemberRecordContent) -> tuple[dict, str]:
        member = self.app.query_one("SELECT * FROM member_view WHERE id = %s",
                                    (str(cmd.member_id),))
        if member is None:
            raise NotFound(f"member {cmd.member_id} not found")
        if cmd.kind == "violation":
            caller.require_role(ORG_ADMIN)
        content = check_member_record(cmd.kind, cmd.on, cmd.details, self.today(),
                                      member["category"], cmd.evidence)
        branch_id = self.branches_on([str(cmd.member_id)], content["on"])[str(cmd.member_id)]
        if branch_id is None:
            raise ValidationError.single(
                "on", f"{member['name']} was not a member of any branch on {content['on']}")
        self._may_record(caller, branch_id)
        return content, branch_id

    def record_member_record(self, caller: Caller, payload: dict) -> dict:
        """Record one of a member's records (党性体检, 民主评议, 攻坚团队, 课程思政,
        亮诺践诺, or — org_admin only — a 红线/底线 violation)."""
        cmd = RecordMemberRecord.parse(payload)
        content, branch_id = self._member_content(caller, cmd)
        file = self._member_file(cmd.member_id)
        record_id = str(cmd.record_id or uuid4())
        if record_id in file.records:
            raise ValidationError.single("record_id", f"{record_id} is already recorded")
        file.record(record_id, branch_id, content, caller.as_actor(), cmd.reason, cmd.evidence)
        return self.app.commit(file, result=lambda: self._record_out(cmd.member_id, record_id))

    def correct_member_record(self, caller: Caller, payload: dict) -> dict:
        cmd = CorrectMemberRecord.parse(payload)
        content, branch_id = self._member_content(caller, cmd)
        file_id = MemberFile.id_for(cmd.member_id)
        if not self.app.exists(file_id):
            raise NotFound(f"record {cmd.record_id} not found for this member")
        file = self.app.load(file_id, MemberFile, "member records")
        previous = file.records.get(str(cmd.record_id))
        if previous is not None and previous["kind"] == "violation":
            caller.require_role(ORG_ADMIN)
        file.correct(str(cmd.record_id), branch_id, content, caller.as_actor(), cmd.reason,
                     cmd.evidence)
        return self.app.commit(file, result=lambda: self._record_out(cmd.member_id,
                                                                     cmd.record_id))

    def _record_out(self, member_id, record_id) -> dict:
        row = self.app.query_one("SELECT * FROM life_member_records WHERE record_id = %s",
                                 (str(record_id),))
        return _record_out(row)

    def member_records(self, caller: Caller, payload: dict) -> dict:
        """A member's own records and the meetings they were listed at, by year."""
        cmd = MemberRecords.parse(payload)
        member = self.app.query_one("SELECT id, name, branch_id FROM member_view WHERE id = %s",
                                    (str(cmd.member_id),))
        if member is None:
            raise NotFound(f"member {cmd.member_id} not found")
        self.may_read_member(caller, cmd.member_id, member["branch_id"])
        year_sql, params = ("", []) if cmd.year is None else (" AND year = %s", [cmd.year])
        records = self.app.query(
            f"SELECT * FROM life_member_records WHERE member_id = %s{year_sql} "
            "ORDER BY on_date, kind", [str(cmd.member_id), *params])
        meetings = self.app.query(
            "SELECT * FROM life_meetings WHERE (attendees ? %s OR absentees @> %s::jsonb)"
            + ("" if cmd.year is None else " AND extract(year FROM held_on) = %s")
            + " ORDER BY held_on", [str(cmd.member_id),
                                    f'[{{"member_id": "{cmd.member_id}"}}]', *params])
        return {"member_id": str(member["id"]), "name": member["name"], "year": cmd.year,
                "records": [_record_out(r) for r in records],
                "meetings": [_meeting_out(m, for_member=str(cmd.member_id)) for m in meetings]}


def _meeting_out(r: dict, for_member: str | None = None) -> dict:
    out = {"record_id": r["record_id"], "branch_id": str(r["branch_id"]),
           "aggregate_id": str(BranchLife.id_for(r["branch_id"])), "kind": r["kind"],
           "kind_zh": MEETING_KINDS[r["kind"]], "held_on": r["held_on"].isoformat(),
           "topic": r["topic"], "form": r["form"],
           "form_zh": THEME_DAY_FORMS.get(r["form"]) if r["form"] else None,
           "corrections": r["corrections"], "recorded_at": r["recorded_at"].isoformat(),
           "updated_at": r["updated_at"].isoformat()}
    if for_member is None:
        out.update(attendees=r["attendees"], absentees=r["absentees"])
    else:
        absent = next((a for a in r["absentees"] if a["member_id"] == for_member), None)
        out["attendance"] = "attended" if absent is None else absent["kind"]
    return out


def _record_out(r: dict) -> dict:
    return {"record_id": r["record_id"], "member_id": str(r["member_id"]),
            "aggregate_id": str(MemberFile.id_for(r["member_id"])),
            "branch_id": str(r["branch_id"]), "kind": r["kind"],
            "kind_zh": MEMBER_RECORD_KINDS[r["kind"]], "on": r["on_date"].isoformat(),
            "year": r["year"], "details": r["details"], "corrections": r["corrections"],
            "recorded_at": r["recorded_at"].isoformat(), "updated_at": r["updated_at"].isoformat()}
