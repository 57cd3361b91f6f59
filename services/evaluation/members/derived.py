"""Derived indicators (派生指标): a branch's or college's numbers computed from the
records evaluation already holds, so nothing is typed in twice.

Each provider answers for one organisation and one cycle (the cycle's period
names the year) with ``{"fraction": 0-1, "records": [...], "explanation"}`` —
the records behind the number — or ``None`` when there are no records at all
for that organisation and year (then the indicator is entered as before). A
value derived from records cannot be overwritten by a submission.

Every source is computed per branch by set-based queries (``per_branch``), for
the branches asked or for all of them at once (``derive_all``: a dashboard, a
batch); a college (level 2) rolls up its active branches' numerators and
denominators.
"""
from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal

from services.evaluation.members.domain import MEETINGS_3_1

PROVIDED = ("org_life.three_meetings_one_lesson_attendance", "org_life.theme_party_day_count",
            "org_life.meetings_held", "teams.teacher_participation",
            "members.double_leader_secretary", "members.pioneer_index_average",
            "ratings.branch_stars")


def year_of(cycle: dict) -> int | None:
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
        def provider(source):
            def provide(org_id, cycle: dict):
                return self.for_org(source, org_id, cycle)
            return provide
        return {source: provider(source) for source in PROVIDED}

    # -- one organisation ------------------------------------------------------------------
    def _branches(self, org: dict, source: str) -> list[str]:
        if org["level"] == 3:
            return [str(org["id"])]
        sql = "SELECT id::text AS id FROM dir_orgs WHERE parent_id = %s AND level = 3 " \
              "AND status = 'active'"
        if source == "members.double_leader_secretary":
            sql += " AND kind = 'teacher_branch'"  # R5: 双带头人 of teacher branches
        return [r["id"] for r in self.app.query(sql + " ORDER BY name", (str(org["id"]),))]

    def for_org(self, source: str, org_id, cycle: dict):
        asked = cycle.get("asked")
        if asked is None:
            org = self.app.directory.org(org_id)
        else:  # one scoring's indicators ask for the same organisation: once
            key = ("org", str(org_id))
            if key not in asked:
                asked[key] = self.app.directory.org(org_id)
            org = asked[key]
        year = year_of(cycle)
        if org is None or org["level"] not in (2, 3) or year is None:
            return None
        if source == "ratings.branch_stars":
            return self.branch_stars(org) if org["level"] == 2 else None
        branches = self._branches(org, source)
        if not branches:
            return None
        parts = list(self.per_branch(source, year, branches).values())
        return _combine(source, parts, year, len(branches)) if _has(parts) else None

    # -- every branch at once --------------------------------------------------------------------
    def derive_all(self, year: int, branches: list[str] | None = None) -> dict:
        """branch id -> {source: provider result or None}, every source computed
        for all branches (or those given) with a few set-based queries."""
        if branches is None:
            branches = [r["id"] for r in self.app.query(
                "SELECT id::text AS id FROM dir_orgs WHERE level = 3 AND status = 'active'")]
        out = {b: {} for b in branches}
        for source in PROVIDED:
            per = {} if source == "ratings.branch_stars" else \
                self.per_branch(source, year, branches)
            for b in branches:
                part = per.get(b)
                out[b][source] = _combine(source, [part], year, 1) if part and _has([part]) \
                    else None
        return out

    def per_branch(self, source: str, year: int, branches: list[str]) -> dict:
        """branch -> {num, den, records, ...} for one source (absent: no records)."""
        return {
            "org_life.three_meetings_one_lesson_attendance": self._attendance,
            "org_life.theme_party_day_count": self._theme_days,
            "org_life.meetings_held": self._meetings_held,
            "teams.teacher_participation": self._teams,
            "members.double_leader_secretary": self._double_leader,
            "members.pioneer_index_average": self._index_average,
        }[source](year, branches)

    def _required(self) -> dict:
        return self.app.members.scheme()[0]["org_life"]["required_per_year"]

    def _attendance(self, year: int, branches: list[str]) -> dict:
        """三会一课 attendance: attended / expected (请假 excused)."""
        out: dict = {}
        for r in self.app.query(
                "SELECT m.branch_id::text AS b, m.record_id, m.kind, m.held_on::text AS held_on, "
                "m.topic, count(*) FILTER (WHERE a.status = 'attended') AS attended, "
                "count(*) FILTER (WHERE a.status <> 'leave') AS listed "
                "FROM pi_meetings m JOIN pi_attendance a ON a.record_id = m.record_id "
                "WHERE m.branch_id = ANY(%s::uuid[]) AND m.year = %s AND m.kind = ANY(%s) "
                "GROUP BY m.record_id ORDER BY m.held_on", (branches, year, list(MEETINGS_3_1))):
            part = out.setdefault(r["b"], {"num": 0, "den": 0, "records": []})
            part["num"] += r["attended"]
            part["den"] += r["listed"]
            part["records"].append({"record_id": r["record_id"], "kind": r["kind"],
                                    "on": r["held_on"], "topic": r["topic"],
                                    "attended": r["attended"], "listed": r["listed"]})
        return out

    def _held(self, year: int, branches: list[str], kinds: list[str]) -> dict:
        out: dict = {}
        for r in self.app.query(
                "SELECT branch_id::text AS b, record_id, kind, held_on::text AS held_on, topic, "
                "form FROM pi_meetings WHERE branch_id = ANY(%s::uuid[]) AND year = %s "
                "AND kind = ANY(%s) ORDER BY held_on", (branches, year, kinds)):
            out.setdefault(r["b"], []).append(
                {"record_id": r["record_id"], "kind": r["kind"], "on": r["held_on"],
                 "topic": r["topic"], "form": r["form"]})
        return out

    def _theme_days(self, year: int, branches: list[str]) -> dict:
        """主题党日 held / required (capped at the requirement)."""
        required = self._required().get("theme_day", 0)
        return {b: {"num": min(len(rows), required), "den": required, "records": rows,
                    "held": len(rows)}
                for b, rows in self._held(year, branches, ["theme_day"]).items()}

    def _meetings_held(self, year: int, branches: list[str]) -> dict:
        """Meetings held against those required per year, kind by kind (capped)."""
        required = self._required()
        out = {}
        for b, rows in self._held(year, branches, list(required)).items():
            per_kind = {k: [sum(1 for r in rows if r["kind"] == k), n]
                        for k, n in required.items()}
            out[b] = {"num": sum(min(h, n) for h, n in per_kind.values()),
                      "den": sum(required.values()), "records": rows, "per_kind": per_kind}
        return out

    def _teams(self, year: int, branches: list[str]) -> dict:
        """R3: party-member teachers in a 项目攻坚团队 this year / party-member teachers."""
        teachers: dict = {}
        for r in self.app.query(
                "SELECT branch_id::text AS b, id::text AS id, name FROM dir_members "
                "WHERE branch_id = ANY(%s::uuid[]) AND active AND category = 'teacher' "
                "ORDER BY name", (branches,)):
            teachers.setdefault(r["b"], []).append({"id": r["id"], "name": r["name"]})
        joined: dict = {}
        for r in self.app.query(
                "SELECT m.branch_id::text AS b, r.record_id, r.member_id::text AS member_id, "
                "r.on_date::text AS on_date, r.details->>'team' AS team FROM pi_records r "
                "JOIN dir_members m ON m.id = r.member_id WHERE r.kind = 'team' AND r.year = %s "
                "AND m.branch_id = ANY(%s::uuid[]) AND m.active AND m.category = 'teacher'",
                (year, branches)):
            joined.setdefault(r["b"], []).append(
                {"record_id": r["record_id"], "kind": "team", "member_id": r["member_id"],
                 "on": r["on_date"], "team": r["team"]})
        out = {}
        for b, members in teachers.items():
            recs = joined.get(b, [])
            in_team = {r["member_id"] for r in recs}
            out[b] = {"num": len(in_team), "den": len(members), "records": recs,
                      "without": [t for t in members if t["id"] not in in_team]}
        return out

    def _double_leader(self, year: int, branches: list[str]) -> dict:
        """R5: the branch's secretary is a 双带头人 (from organizations' roles)."""
        out = {}
        for r in self.app.query(
                "SELECT o.id::text AS b, o.name AS branch_name, m.name AS secretary, "
                "coalesce(m.double_leader, false) AS double_leader FROM dir_orgs o "
                "LEFT JOIN dir_roles s ON s.org_id = o.id AND s.role = 'secretary' "
                "LEFT JOIN dir_members m ON m.id = s.member_id AND m.active "
                "WHERE o.id = ANY(%s::uuid[])", (branches,)):
            out[r["b"]] = {"num": int(r["double_leader"]), "den": 1, "records": [
                {"branch_id": r["b"], "branch_name": r["branch_name"],
                 "secretary": r["secretary"], "double_leader": r["double_leader"]}]}
        return out

    def _index_average(self, year: int, branches: list[str]) -> dict:
        """Members' average published 锋领指数 (of 100)."""
        return {r["b"]: {"num": Decimal(str(r["total"])), "den": 100 * r["n"], "records": [],
                         "members": r["n"]}
                for r in self.app.query(
                    "SELECT branch_id::text AS b, count(*) AS n, sum(score) AS total "
                    "FROM pi_indices WHERE year = %s AND branch_id = ANY(%s::uuid[]) "
                    "GROUP BY branch_id", (year, branches))}

    def branch_stars(self, org: dict):
        """A college's roll-up: the share of its rated branches at ★4 and above."""
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


def _has(parts: list[dict]) -> bool:
    """Any records behind the parts (else the indicator is entered)."""
    return any(p["records"] or p.get("members") for p in parts)


def _combine(source: str, parts: list[dict], year: int, branches: int) -> dict:
    """One organisation's value from its branches' parts (one part for a branch)."""
    num = sum(p["num"] for p in parts)
    den = sum(p["den"] for p in parts)
    if source in ("org_life.theme_party_day_count", "org_life.meetings_held"):
        den = parts[0]["den"] * branches  # every branch owes them, records or not
    records = [r for p in parts for r in p["records"]]
    out = {"fraction": _frac(num, den) if den else 0.0, "records": records}
    if source == "org_life.three_meetings_one_lesson_attendance":
        out["explanation"] = (f"{num} attendances of {den} expected (请假 excused) at "
                              f"{len(records)} 三会一课 meetings in {year}")
    elif source == "org_life.theme_party_day_count":
        out["explanation"] = (f"{sum(p['held'] for p in parts)} 主题党日 held; {num} count "
                              f"against {den} required ({branches} branches) in {year}")
    elif source == "org_life.meetings_held":
        per_kind: dict = {}
        for p in parts:
            for k, (h, n) in p["per_kind"].items():
                per_kind.setdefault(k, [0, 0])
                per_kind[k][0] += h
                per_kind[k][1] += n
        out["explanation"] = (f"{num} of {den} required meetings held in {year}: "
                              + ", ".join(f"{k} {h}/{n}" for k, (h, n) in per_kind.items()))
    elif source == "teams.teacher_participation":
        out["explanation"] = (f"{num} of {den} party-member teachers in a 项目攻坚团队 in "
                              f"{year}")
        out["without"] = [t for p in parts for t in p["without"]]
    elif source == "members.double_leader_secretary":
        out["explanation"] = f"{num} of {den} branch secretaries are 双带头人"
    elif source == "members.pioneer_index_average":
        members = sum(p["members"] for p in parts)
        out["explanation"] = (f"average 锋领指数 {float(num) / members:.2f} of {members} "
                              f"members ({year})")
    return out
