"""Organisational-life records (组织生活记录): pure aggregates, no I/O.

* ``BranchLife`` (支部组织生活): a branch's meetings — 三会一课 (支部党员大会,
  支委会, 党小组会, 党课) and 主题党日 (with its 主题党日+ forms) — each with its
  date, topic, attendees and absentees (请假 / 缺席). One per branch.
* ``MemberFile`` (党员记实档案): records about one member — 党性体检, 民主评议党员,
  项目攻坚团队, 课程思政 demonstration projects, 亮诺践诺 pledges, 红线/底线
  violations. One per member.

A record is never changed in place: a correction is a new event carrying the
whole corrected record and its reason; the earlier event stays. Whether
attendees and subjects belonged to the branch on the date is checked by the
application (it reads the member moves) and handed in as ``roster_errors``;
everything else is checked here, and every bad field is named at once.
"""
from __future__ import annotations

import datetime as dt
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from shared.domain import derived_id
from shared.errors import ValidationError

MEETING_KINDS = {
    "general_meeting": "支部党员大会",
    "committee_meeting": "支委会",
    "group_meeting": "党小组会",
    "party_lecture": "党课",
    "theme_day": "主题党日",
}
# 三会一课: the three meetings and the lecture.
THREE_MEETINGS_ONE_LESSON = ("general_meeting", "committee_meeting", "group_meeting",
                             "party_lecture")
# 主题党日+ forms (seed 四.1).
THEME_DAY_FORMS = {
    "standard": "主题党日",
    "volunteer": "主题党日+志愿服务",
    "social_practice": "主题党日+社会实践",
    "innovation": "主题党日+创业创新",
    "deliberation": "主题党日+师生议事",
    "community": "主题党日+校地共建",
}
ABSENCE_KINDS = {"leave": "请假", "absent": "缺席"}

MEMBER_RECORD_KINDS = {
    "checkup": "党性体检",
    "appraisal": "民主评议党员",
    "team": "项目攻坚团队",
    "course_project": "课程思政示范项目",
    "pledge": "亮诺践诺",
    "violation": "红线底线违规",
}
CHECKUP_RESULTS = {"excellent": "优秀", "good": "良好", "fair": "一般", "poor": "较差"}
APPRAISAL_GRADES = {"excellent": "优秀", "qualified": "合格",
                    "basically_qualified": "基本合格", "unqualified": "不合格"}
# How a 不合格 member was handled (党章 and the 民主评议 rules).
UNQUALIFIED_HANDLING = {"rectify_in_time": "限期改正", "persuade_to_leave": "劝其退党",
                        "removed": "除名"}
COURSE_PROJECT_STATUSES = {"undertaken": "立项承担", "completed": "结项完成"}
PLEDGE_STATUSES = {"pledged": "已亮诺", "fulfilled": "已践诺", "unfulfilled": "未践诺"}
VIOLATION_LINES = {"red_line": "红线", "bottom_line": "底线"}

MAX_TEXT = 500


def _text(errors: list, field: str, value: Any, required: bool = True,
          limit: int = MAX_TEXT) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            errors.append({"field": field, "message": "required"})
        return None
    if not isinstance(value, str):
        errors.append({"field": field, "message": "must be text"})
        return None
    value = " ".join(value.split())
    if len(value) > limit:
        errors.append({"field": field, "message": f"at most {limit} characters"})
    return value


def _date(errors: list, field: str, value: Any, today: dt.date) -> str | None:
    try:
        day = value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))
    except (TypeError, ValueError):
        errors.append({"field": field, "message": f"not a date (YYYY-MM-DD): {value!r}"})
        return None
    if day > today:
        errors.append({"field": field, "message": f"{day.isoformat()} is in the future"})
    return day.isoformat()


def _one_of(errors: list, field: str, value: Any, allowed: dict) -> Any:
    if value not in allowed:
        errors.append({"field": field,
                       "message": f"unknown {value!r}; one of {', '.join(allowed)}"})
    return value


def _raise(errors: list) -> None:
    if errors:
        raise ValidationError(errors)


def is_id(value: Any) -> bool:
    """A member id as text (a UUID)."""
    try:
        UUID(str(value))
    except (TypeError, ValueError, AttributeError):
        return False
    return isinstance(value, str)


def topic_key(kind: str, held_on: str, topic: str) -> str:
    """What makes two meetings the same meeting: branch (the aggregate), kind,
    date and topic (case and spacing ignored)."""
    return f"{kind}|{held_on}|{' '.join(topic.split()).casefold()}"


# -- meetings ----------------------------------------------------------------------
def check_meeting(kind, held_on, topic, form, attendees, absentees, today: dt.date) -> dict:
    """A meeting's content, cleaned, or one ValidationError naming every bad field."""
    errors: list[dict] = []
    _one_of(errors, "kind", kind, MEETING_KINDS)
    held_on = _date(errors, "held_on", held_on, today)
    topic = _text(errors, "topic", topic)
    if kind == "theme_day":
        form = form or "standard"
        _one_of(errors, "form", form, THEME_DAY_FORMS)
    elif form is not None:
        errors.append({"field": "form", "message": "only a 主题党日 (theme_day) has a form"})
    attendees = [str(a) for a in attendees or []]
    if not attendees:
        errors.append({"field": "attendees", "message": "at least one member attended"})
    seen: dict[str, str] = {}
    for i, a in enumerate(attendees):
        if a in seen:
            errors.append({"field": f"attendees[{i}]", "message": f"{a} is listed twice"})
        seen[a] = f"attendees[{i}]"
    cleaned_absent = []
    for i, a in enumerate(absentees or []):
        field = f"absentees[{i}]"
        if not isinstance(a, dict):
            errors.append({"field": field, "message": "{member_id, kind, note}"})
            continue
        for key in a:
            if key not in ("member_id", "kind", "note"):
                errors.append({"field": f"{field}.{key}",
                               "message": "unknown; known: member_id, kind, note"})
        if not is_id(a.get("member_id")):
            errors.append({"field": f"{field}.member_id", "message": "a member id"})
            continue
        member_id = str(UUID(a["member_id"]))
        if member_id in seen:
            errors.append({"field": f"{field}.member_id",
                           "message": f"{member_id} is also listed at {seen[member_id]}"})
        seen[member_id] = field
        absence = _one_of(errors, f"{field}.kind", a.get("kind"), ABSENCE_KINDS)
        note = _text(errors, f"{field}.note", a.get("note"), required=absence == "leave")
        cleaned_absent.append({"member_id": member_id, "kind": absence, "note": note})
    _raise(errors)
    return {"kind": kind, "held_on": held_on, "topic": topic, "form": form,
            "attendees": attendees, "absentees": cleaned_absent}


class BranchLife(Aggregate):
    """支部组织生活: the meetings a branch held (三会一课, 主题党日)."""

    id: UUID  # derived from the branch's id (id_for)

    @staticmethod
    def id_for(branch_id) -> UUID:
        return derived_id("branch-life", branch_id)

    @event("Opened")
    def __init__(self, branch_id: str):
        self.branch_id = branch_id
        self.meetings: dict[str, dict] = {}
        self.keys: dict[str, str] = {}  # topic_key -> record_id

    @classmethod
    def open_for(cls, branch_id) -> "BranchLife":
        return cls(id=cls.id_for(branch_id), branch_id=str(branch_id))

    def _check_unique(self, content: dict, record_id: str | None) -> None:
        key = topic_key(content["kind"], content["held_on"], content["topic"])
        holder = self.keys.get(key)
        if holder is not None and holder != record_id:
            raise ValidationError.single(
                "topic", f"this branch already recorded a {MEETING_KINDS[content['kind']]} "
                f"on {content['held_on']} on this topic (record {holder})")

    def record_meeting(self, record_id: str, content: dict, roster_errors: list[dict],
                       actor: dict, reason: str | None, evidence: list | None) -> None:
        _raise(roster_errors)
        self._check_unique(content, None)
        self._meeting_recorded(record_id=record_id, branch_id=self.branch_id, **content,
                               actor=actor, reason=reason, evidence=evidence)

    @event("MeetingRecorded")
    def _meeting_recorded(self, record_id: str, branch_id: str, kind: str, held_on: str,
                          topic: str, form: str | None, attendees: list, absentees: list,
                          actor: dict, reason: str | None, evidence: list | None):
        self._put(record_id, kind, held_on, topic, form, attendees, absentees)

    def correct_meeting(self, record_id: str, content: dict, roster_errors: list[dict],
                        actor: dict, reason: str, evidence: list | None) -> None:
        errors = list(roster_errors)
        if record_id not in self.meetings:
            errors.insert(0, {"field": "record_id", "message": "no such meeting in this branch"})
        if not (reason or "").strip():
            errors.append({"field": "reason", "message": "a correction needs its reason"})
        _raise(errors)
        previous = self.meetings[record_id]
        if all(previous[k] == content[k] for k in content):
            raise ValidationError.single("record_id", "the correction changes nothing")
        self._check_unique(content, record_id)
        self._meeting_corrected(record_id=record_id, branch_id=self.branch_id, **content,
                                corrections=previous["corrections"] + 1,
                                actor=actor, reason=reason, evidence=evidence)

    @event("MeetingCorrected")
    def _meeting_corrected(self, record_id: str, branch_id: str, kind: str, held_on: str,
                           topic: str, form: str | None, attendees: list, absentees: list,
                           corrections: int, actor: dict, reason: str,
                           evidence: list | None):
        old = self.meetings[record_id]
        self.keys.pop(topic_key(old["kind"], old["held_on"], old["topic"]), None)
        self._put(record_id, kind, held_on, topic, form, attendees, absentees, corrections)

    def _put(self, record_id, kind, held_on, topic, form, attendees, absentees,
             corrections: int = 0) -> None:
        self.meetings[record_id] = {"kind": kind, "held_on": held_on, "topic": topic,
                                    "form": form, "attendees": list(attendees),
                                    "absentees": list(absentees), "corrections": corrections}
        self.keys[topic_key(kind, held_on, topic)] = record_id


# -- member records ------------------------------------------------------------------
def check_member_record(kind, on, details: dict, today: dt.date, category: str | None,
                        evidence: list | None) -> dict:
    """One member record's content, cleaned: ``{kind, on, year, details}``."""
    errors: list[dict] = []
    _one_of(errors, "kind", kind, MEMBER_RECORD_KINDS)
    on = _date(errors, "on", on, today)
    d = dict(details or {})
    out: dict[str, Any] = {}
    known: tuple = ()
    if kind == "checkup":
        known = ("period", "items", "result")
        out["period"] = _text(errors, "details.period", d.get("period"), limit=20)
        items = d.get("items")
        if not isinstance(items, dict) or not items or not all(
                isinstance(k, str) and isinstance(v, str) and k.strip() and v.strip()
                for k, v in items.items()):
            errors.append({"field": "details.items", "message":
                           "the check-up's items: a non-empty mapping item → finding (text)"})
        else:
            out["items"] = {" ".join(k.split()): " ".join(v.split()) for k, v in items.items()}
        out["result"] = _one_of(errors, "details.result", d.get("result"), CHECKUP_RESULTS)
    elif kind == "appraisal":
        known = ("grade", "handling")
        out["grade"] = _one_of(errors, "details.grade", d.get("grade"), APPRAISAL_GRADES)
        if d.get("grade") == "unqualified":
            out["handling"] = _one_of(errors, "details.handling", d.get("handling"),
                                      UNQUALIFIED_HANDLING)
        elif d.get("handling") is not None:
            errors.append({"field": "details.handling",
                           "message": "only a 不合格 (unqualified) grade is handled"})
    elif kind == "team":
        known = ("team", "role")
        out["team"] = _text(errors, "details.team", d.get("team"), limit=200)
        out["role"] = _text(errors, "details.role", d.get("role"), required=False, limit=100)
        if category is not None and category != "teacher":
            errors.append({"field": "member_id", "message":
                           "项目攻坚团队 membership is recorded for party-member teachers"})
    elif kind == "course_project":
        known = ("title", "status", "professional_course")
        out["title"] = _text(errors, "details.title", d.get("title"), limit=200)
        out["status"] = _one_of(errors, "details.status", d.get("status"),
                                COURSE_PROJECT_STATUSES)
        pc = d.get("professional_course", True)
        if not isinstance(pc, bool):
            errors.append({"field": "details.professional_course", "message": "true or false"})
        out["professional_course"] = pc
        if category is not None and category != "teacher":
            errors.append({"field": "member_id", "message":
                           "课程思政 projects are recorded for party-member teachers"})
    elif kind == "pledge":
        known = ("content", "status")
        out["content"] = _text(errors, "details.content", d.get("content"))
        out["status"] = _one_of(errors, "details.status", d.get("status"), PLEDGE_STATUSES)
    elif kind == "violation":
        known = ("line", "description", "finding")
        out["line"] = _one_of(errors, "details.line", d.get("line"), VIOLATION_LINES)
        out["description"] = _text(errors, "details.description", d.get("description"))
        out["finding"] = _text(errors, "details.finding", d.get("finding"), limit=200)
        if not evidence:
            errors.append({"field": "evidence",
                           "message": "a violation is recorded with its evidence (纪委办's finding)"})
    for key in d:
        if kind in MEMBER_RECORD_KINDS and key not in known:
            errors.append({"field": f"details.{key}", "message": f"unknown for {kind}; known: "
                           + ", ".join(known)})
    _raise(errors)
    return {"kind": kind, "on": on, "year": int(on[:4]), "details": out}


def record_key(content: dict) -> str | None:
    """Records a member has at most one of: one 民主评议 a year, one 党性体检 a
    period, one membership of a team a year, one project of a title, one pledge
    of a content a year."""
    d, kind, year = content["details"], content["kind"], content["year"]
    if kind == "appraisal":
        return f"appraisal|{year}"
    if kind == "checkup":
        return f"checkup|{d['period'].casefold()}"
    if kind == "team":
        return f"team|{year}|{d['team'].casefold()}"
    if kind == "course_project":
        return f"course_project|{d['title'].casefold()}"
    if kind == "pledge":
        return f"pledge|{year}|{d['content'].casefold()}"
    return None


class MemberFile(Aggregate):
    """党员记实档案: the records about one member."""

    id: UUID  # derived from the member's id (id_for)

    @staticmethod
    def id_for(member_id) -> UUID:
        return derived_id("member-file", member_id)

    @event("Opened")
    def __init__(self, member_id: str):
        self.member_id = member_id
        self.records: dict[str, dict] = {}
        self.keys: dict[str, str] = {}

    @classmethod
    def open_for(cls, member_id) -> "MemberFile":
        return cls(id=cls.id_for(member_id), member_id=str(member_id))

    def _check_unique(self, content: dict, record_id: str | None) -> None:
        key = record_key(content)
        holder = self.keys.get(key) if key else None
        if holder is not None and holder != record_id:
            field = {"appraisal": "on", "checkup": "details.period", "team": "details.team",
                     "course_project": "details.title", "pledge": "details.content"}[
                         content["kind"]]
            raise ValidationError.single(
                field, f"this member already has this {MEMBER_RECORD_KINDS[content['kind']]} "
                f"record (record {holder}); correct it instead")

    def record(self, record_id: str, branch_id: str, content: dict, actor: dict,
               reason: str | None, evidence: list | None) -> None:
        self._check_unique(content, None)
        self._recorded(record_id=record_id, member_id=self.member_id, branch_id=branch_id,
                       **content, actor=actor, reason=reason, evidence=evidence)

    @event("Recorded")
    def _recorded(self, record_id: str, member_id: str, branch_id: str, kind: str, on: str,
                  year: int, details: dict, actor: dict, reason: str | None,
                  evidence: list | None):
        self._put(record_id, branch_id, kind, on, year, details, 0)

    def correct(self, record_id: str, branch_id: str, content: dict, actor: dict, reason: str,
                evidence: list | None) -> None:
        errors = []
        if record_id not in self.records:
            errors.append({"field": "record_id", "message": "no such record for this member"})
        if not (reason or "").strip():
            errors.append({"field": "reason", "message": "a correction needs its reason"})
        _raise(errors)
        previous = self.records[record_id]
        if previous["kind"] != content["kind"]:
            raise ValidationError.single("kind", f"the record is a {previous['kind']}; a "
                                         "correction keeps its kind")
        if all(previous[k] == content[k] for k in ("on", "details")) \
                and previous["branch_id"] == branch_id:
            raise ValidationError.single("record_id", "the correction changes nothing")
        self._check_unique(content, record_id)
        self._corrected(record_id=record_id, member_id=self.member_id, branch_id=branch_id,
                        **content, corrections=previous["corrections"] + 1, actor=actor,
                        reason=reason, evidence=evidence)

    @event("Corrected")
    def _corrected(self, record_id: str, member_id: str, branch_id: str, kind: str, on: str,
                   year: int, details: dict, corrections: int, actor: dict, reason: str,
                   evidence: list | None):
        old = self.records[record_id]
        old_key = record_key(old)
        if old_key:
            self.keys.pop(old_key, None)
        self._put(record_id, branch_id, kind, on, year, details, corrections)

    def _put(self, record_id, branch_id, kind, on, year, details, corrections) -> None:
        content = {"kind": kind, "on": on, "year": year, "details": dict(details),
                   "branch_id": branch_id, "corrections": corrections}
        self.records[record_id] = content
        key = record_key(content)
        if key:
            self.keys[key] = record_id
