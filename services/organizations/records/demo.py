"""Demo organisational-life records (组织生活记录) for this year, on the demo
university: each branch's 三会一课 and 主题党日 of the months gone by, and each
member's 党性体检, 民主评议, 攻坚团队 (teachers), 课程思政 and 亮诺践诺 — so that
the pioneer index (锋领指数) and the derived indicators have something to show.

Loaded through the organizations RPC as org_admin, after the evaluation demo
(whose self-assessments were entered before any record existed). Ids are
derived from names, and what is already recorded is skipped: running it again
changes nothing.
"""
from __future__ import annotations

import datetime as dt
import random

from services.organizations.application import demo_id
from services.organizations.records.domain import MEETING_KINDS

QUARTERS = (3, 6, 9, 12)
FORMS = ("standard", "volunteer", "social_practice", "innovation", "deliberation",
         "community")


def _meetings(year: int, until: dt.date):
    """(kind, month) of the meetings a branch holds this year before ``until``."""
    for month in range(1, 13):
        if dt.date(year, month, 20) >= until:
            return
        if month in QUARTERS:
            yield "general_meeting", month
            yield "party_lecture", month
        yield "committee_meeting", month
        yield "group_meeting", month
        yield "theme_day", month


def plan(orgs: list[dict], members: list[dict], roles: list[dict], today: dt.date,
         branches: int | None = None, seed: int = 2026) -> tuple[list, list]:
    """The records as data: (meetings, member records) for the demo plan's branches."""
    rng = random.Random(seed)
    year = today.year
    meetings, records = [], []
    level3 = [o for o in orgs if o["kind"] in ("teacher_branch", "student_branch",
                                               "network_e_branch")][:branches]
    for branch in level3:
        people = [m for m in members if m["branch_id"] == branch["org_id"]]
        # 支委会: the branch committee (书记, 副书记, 委员)
        committee = {str(r["member_id"]) for r in roles if r["org_id"] == branch["org_id"]}
        for kind, month in _meetings(year, today):
            held_on = dt.date(year, month, 20 if kind == "theme_day" else 10)
            present = [m for m in people if dt.date.fromisoformat(m["joined_on"]) <= held_on]
            if kind == "committee_meeting":
                present = [m for m in present if str(m["member_id"]) in committee] or present[:3]
            if not present:
                continue
            attendees, absentees = [], []
            for m in present:
                roll = rng.random()
                if roll < 0.05 and len(present) > 2:
                    absentees.append({"member_id": str(m["member_id"]), "kind": "leave",
                                      "note": rng.choice(["出差", "病假", "教学任务冲突"])})
                elif roll < 0.08 and len(present) > 2:
                    absentees.append({"member_id": str(m["member_id"]), "kind": "absent"})
                else:
                    attendees.append(str(m["member_id"]))
            meetings.append({
                "record_id": str(demo_id("meeting", branch["name"], kind, month)),
                "branch_id": str(branch["org_id"]), "kind": kind,
                "held_on": held_on.isoformat(),
                "topic": f"{month}月{MEETING_KINDS[kind]}",
                "form": FORMS[month % len(FORMS)] if kind == "theme_day" else None,
                "attendees": attendees, "absentees": absentees})
        for m in people:
            joined = dt.date.fromisoformat(m["joined_on"])
            member_id = str(m["member_id"])

            def add(kind, on: dt.date, details: dict, key: str):
                if joined <= on < today:
                    records.append({"record_id": str(demo_id("record", member_id, key)),
                                    "member_id": member_id, "kind": kind,
                                    "on": on.isoformat(), "details": details})
            add("checkup", dt.date(year, 6, 28),
                {"period": f"{year}上半年", "items": {"理想信念": "坚定", "纪律规矩": "严守"},
                 "result": rng.choices(["excellent", "good", "fair", "poor"],
                                       [25, 60, 12, 3])[0]}, "checkup-h1")
            add("appraisal", dt.date(year, 1, 15),
                {"grade": rng.choices(["excellent", "qualified", "basically_qualified"],
                                      [25, 72, 3])[0]}, "appraisal")
            add("pledge", dt.date(year, 3, 5),
                {"content": rng.choice(["带头攻坚一项教学改革", "结对帮扶一名学生",
                                        "参加志愿服务不少于20小时"]),
                 "status": rng.choice(["pledged", "fulfilled", "fulfilled"])}, "pledge")
            if m["category"] == "teacher":
                if rng.random() < 0.8:
                    add("team", dt.date(year, 3, 1),
                        {"team": rng.choice(["智能制造攻坚团队", "双高专业群建设团队",
                                             "课程思政教学创新团队"])}, "team")
                if rng.random() < 0.45:
                    add("course_project", dt.date(year, 4, 1),
                        {"title": "课程思政示范课程建设", "status": rng.choice(
                            ["undertaken", "completed"])}, "course-project")
    return meetings, records


def _in_waves(calls: list[list[dict]], send, width: int = 16) -> int:
    """Send each list's calls in order, lists side by side: the n-th call of every
    list goes out together (``call_async``, ``width`` at a time) — different
    branches or members never touch the same aggregate, one list's calls never
    overlap."""
    sent, depth = 0, max((len(c) for c in calls), default=0)
    for n in range(depth):
        wave = [c[n] for c in calls if n < len(c)]
        for start in range(0, len(wave), width):
            for reply in [send(payload) for payload in wave[start:start + width]]:
                reply.result()
                sent += 1
    return sent


def load(rpc, orgs: list[dict], members: list[dict], roles: list[dict],
         branches: int | None = None, today: dt.date | None = None) -> dict:
    """Record the plan through ``rpc.organizations`` (an org_admin proxy); idempotent."""
    meetings, records = plan(orgs, members, roles, today or dt.date.today(), branches)
    year = (today or dt.date.today()).year
    known: set[str] = set()
    for branch_id in {m["branch_id"] for m in meetings}:
        known |= {m["record_id"] for m in rpc.organizations.list_meetings(
            branch_id=branch_id, year=year)["meetings"]}
    for member_id in {r["member_id"] for r in records}:
        known |= {r["record_id"] for r in rpc.organizations.member_records(
            member_id=member_id, year=year)["records"]}
    by_branch: dict[str, list] = {}
    for meeting in meetings:
        if meeting["record_id"] not in known:
            by_branch.setdefault(meeting["branch_id"], []).append(meeting)
    by_member: dict[str, list] = {}
    for record in records:
        if record["record_id"] not in known:
            by_member.setdefault(record["member_id"], []).append(record)
    reason = "演示数据 demo data"
    return {"meetings": _in_waves(list(by_branch.values()), lambda m: (
                rpc.organizations.record_meeting.call_async(**m, reason=reason))),
            "member_records": _in_waves(list(by_member.values()), lambda r: (
                rpc.organizations.record_member_record.call_async(**r, reason=reason)))}
