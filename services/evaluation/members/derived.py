"""Derived indicators (派生指标): a branch's or college's numbers computed from the
records evaluation already holds, so nothing is typed in twice.

Each provider answers for one organisation and one cycle (the cycle's period
names the year) with ``{"fraction": 0-1, "records": [...], "explanation"}`` —
the records behind the number — or ``None`` when there are no records at all
for that organisation and year (then the indicator is entered as before). A
value derived from records cannot be overwritten by a submission.

For a college (level 2), each number rolls up its active branches.
"""
from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal

from services.evaluation.members.domain import MEETINGS_3_1

PROVIDED = ("org_life.three_meetings_one_lesson_attendance", "org_life.theme_party_day_count",
            "org_life.meetings_held", "teams.teacher_participation",
            "members.double_leader_secretary", "members.pioneer_index_average",
            "ratings.branch_stars")


def _year(cycle: dict) -> int | None:
    match = re.search(r"(19|20|21)\d{2}", str(cycle.get("period") or ""))
    return int(match.group(0)) if match else None


def _frac(part, whole) -> float:
    if not whole:
        return 0.0
    return float((Decimal(part) / Decimal(whole)).quantize(Decimal("0.0001"),
                                                         rounding=ROUND_HALF_UP))


class Derivations:
    """The providers, bound to one evaluation application."""

    def __init__(self, app):
        self.app = app

    def providers(self) -> dict:
        return {
            "org_life.three_meetings_one_lesson_attendance": self.attendance,
            "org_life.theme_party_day_count": self.theme_days,
            "org_life.meetings_held": self.meetings_held,
            "teams.teacher_participation": self.teams,
            "members.double_leader_secretary": self.double_leader,
            "members.pioneer_index_average": self.index_average,
            "ratings.branch_stars": self.branch_stars,
        }

    def _branches(self, org_id) -> list[str]:
        org = self.app.directory.org(org_id)
        if org is None:
            return []
        if org["level"] == 3:
            return [str(org["id"])]
        if org["level"] == 2:
            return [str(r["id"]) for r in self.app.query(
                "SELECT id FROM dir_orgs WHERE parent_id = %s AND level = 3 AND "
                "status = 'active' ORDER BY name", (str(org["id"]),))]
        return []

    def _required(self) -> dict:
        return self.app.members.scheme()[0]["org_life"]["required_per_year"]

    def attendance(self, org_id, cycle: dict):
        """三会一课 attendance: attended / listed (请假 excused)."""
        year, branches = _year(cycle), self._branches(org_id)
        if year is None or not branches:
            return None
        rows = self.app.query(
            "SELECT m.record_id, m.kind, m.held_on, m.topic, "
            "count(*) FILTER (WHERE a.status = 'attended') AS attended, "
            "count(*) FILTER (WHERE a.status <> 'leave') AS listed "
            "FROM pi_meetings m JOIN pi_attendance a ON a.record_id = m.record_id "
            "WHERE m.branch_id = ANY(%s::uuid[]) AND m.year = %s AND m.kind = ANY(%s) "
            "GROUP BY m.record_id, m.kind, m.held_on, m.topic ORDER BY m.held_on",
            (branches, year, list(MEETINGS_3_1)))
        if not rows:
            return None
        attended, listed = sum(r["attended"] for r in rows), sum(r["listed"] for r in rows)
        return {"fraction": _frac(attended, listed),
                "explanation": f"{attended} attendances of {listed} expected (请假 excused) at "
                               f"{len(rows)} 三会一课 meetings in {year}",
                "records": [{"record_id": r["record_id"], "kind": r["kind"],
                             "on": r["held_on"].isoformat(), "topic": r["topic"],
                             "attended": r["attended"], "listed": r["listed"]} for r in rows]}

    def _held(self, branches: list[str], year: int, kinds: list[str]) -> list[dict]:
        return self.app.query(
            "SELECT record_id, branch_id::text AS branch_id, kind, held_on, topic, form "
            "FROM pi_meetings WHERE branch_id = ANY(%s::uuid[]) AND year = %s AND kind = ANY(%s) "
            "ORDER BY held_on", (branches, year, kinds))

    def theme_days(self, org_id, cycle: dict):
        """主题党日 held / required per branch (capped at the requirement)."""
        year, branches = _year(cycle), self._branches(org_id)
        if year is None or not branches:
            return None
        rows = self._held(branches, year, ["theme_day"])
        if not rows:
            return None
        required = self._required().get("theme_day", 0) * len(branches)
        held = sum(min(sum(1 for r in rows if r["branch_id"] == b),
                       self._required().get("theme_day", 0)) for b in branches)
        return {"fraction": _frac(held, required) if required else 1.0,
                "explanation": f"{len(rows)} 主题党日 held; {held} count against {required} "
                               f"required ({len(branches)} branches) in {year}",
                "records": [_meeting_ref(r) for r in rows]}

    def meetings_held(self, org_id, cycle: dict):
        """Meetings held against those required per year, kind by kind (capped)."""
        year, branches = _year(cycle), self._branches(org_id)
        if year is None or not branches:
            return None
        required = self._required()
        rows = self._held(branches, year, list(required))
        if not rows:
            return None
        counted, needed, per_kind = 0, 0, {}
        for kind, n in required.items():
            for b in branches:
                held = sum(1 for r in rows if r["branch_id"] == b and r["kind"] == kind)
                counted += min(held, n)
                needed += n
                per_kind.setdefault(kind, [0, 0])
                per_kind[kind][0] += held
                per_kind[kind][1] += n
        return {"fraction": _frac(counted, needed),
                "explanation": f"{counted} of {needed} required meetings held in {year}: "
                               + ", ".join(f"{k} {h}/{n}" for k, (h, n) in per_kind.items()),
                "records": [_meeting_ref(r) for r in rows]}

    def teams(self, org_id, cycle: dict):
        """R3: party-member teachers in a 项目攻坚团队 this year / party-member teachers."""
        year, branches = _year(cycle), self._branches(org_id)
        if year is None or not branches:
            return None
        teachers = self.app.query(
            "SELECT id::text AS id, name FROM dir_members WHERE branch_id = ANY(%s::uuid[]) "
            "AND active AND category = 'teacher' ORDER BY name", (branches,))
        if not teachers:
            return None
        joined = self.app.query(
            "SELECT record_id, member_id::text AS member_id, on_date, details->>'team' AS team "
            "FROM pi_records WHERE kind = 'team' AND year = %s AND member_id = ANY(%s::uuid[])",
            (year, [t["id"] for t in teachers]))
        if not joined:
            return None
        in_team = {r["member_id"] for r in joined}
        return {"fraction": _frac(len(in_team), len(teachers)),
                "explanation": f"{len(in_team)} of {len(teachers)} party-member teachers in a "
                               f"项目攻坚团队 in {year}",
                "records": [{"record_id": r["record_id"], "kind": "team",
                             "member_id": r["member_id"], "on": r["on_date"].isoformat(),
                             "team": r["team"]} for r in joined],
                "without": [t for t in teachers if t["id"] not in in_team]}

    def double_leader(self, org_id, cycle: dict):
        """R5: a branch's secretary is a 双带头人 (1 or 0); for a college, the share
        of its teacher branches whose secretary is one (from organizations' roles)."""
        org = self.app.directory.org(org_id)
        if org is None or org["level"] not in (2, 3):
            return None
        if org["level"] == 3:
            branches = [org]
        else:
            branches = self.app.query(
                "SELECT * FROM dir_orgs WHERE parent_id = %s AND kind = 'teacher_branch' "
                "AND status = 'active' ORDER BY name", (str(org["id"]),))
        if not branches:
            return None
        rows = []
        for b in branches:
            holders = self.app.directory.holders(b["id"], "secretary")
            rows.append({"branch_id": str(b["id"]), "branch_name": b["name"],
                         "secretary": holders[0]["name"] if holders else None,
                         "double_leader": bool(holders and holders[0]["double_leader"])})
        covered = sum(r["double_leader"] for r in rows)
        return {"fraction": _frac(covered, len(rows)),
                "explanation": f"{covered} of {len(rows)} branch secretaries are 双带头人",
                "records": rows}

    def index_average(self, org_id, cycle: dict):
        """Members' average published 锋领指数 (of 100)."""
        year, branches = _year(cycle), self._branches(org_id)
        if year is None or not branches:
            return None
        row = self.app.query_one(
            "SELECT count(*) AS n, avg(score) AS avg FROM pi_indices WHERE year = %s "
            "AND branch_id = ANY(%s::uuid[])", (year, branches))
        if not row["n"]:
            return None
        return {"fraction": _frac(Decimal(str(row["avg"])), 100),
                "explanation": f"average 锋领指数 {float(row['avg']):.2f} of {row['n']} members "
                               f"({year})", "records": []}

    def branch_stars(self, org_id, cycle: dict):
        """A college's roll-up: the share of its branches at ★4 and above."""
        org = self.app.directory.org(org_id)
        if org is None or org["level"] != 2:
            return None
        rows = self.app.query(
            "SELECT o.id::text AS org_id, o.name, r.stars FROM dir_orgs o "
            "JOIN eval_ratings r ON r.org_id = o.id WHERE o.parent_id = %s AND o.level = 3 "
            "AND o.status = 'active' AND r.stars IS NOT NULL ORDER BY o.name", (str(org["id"]),))
        if not rows:
            return None
        high = [r for r in rows if r["stars"] >= 4]
        return {"fraction": _frac(len(high), len(rows)),
                "explanation": f"{len(high)} of {len(rows)} rated branches at ★4 or above",
                "records": [{"org_id": r["org_id"], "name": r["name"], "stars": r["stars"]}
                            for r in rows]}


def _meeting_ref(r: dict) -> dict:
    return {"record_id": r["record_id"], "branch_id": r["branch_id"], "kind": r["kind"],
            "on": r["held_on"].isoformat(), "topic": r["topic"], "form": r["form"]}
