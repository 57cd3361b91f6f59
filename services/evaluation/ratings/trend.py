"""The star distribution's trend over cycles (五.2 "逐步提高四星级以上党组织比例",
三.4 "逐步消除三星及以下党组织"): per cycle, the share at ★4 and above and the count
at ★3 and below, school-wide, per college and per branch, each number with the
organisations behind it; as of any moment.

Read from ``eval_rating_history`` (every rating with its validity period): an
organisation's result in a cycle is the latest rating that cycle set (cause
``cycle`` or ``direct_grading``) recorded by the moment asked; a result redone
after an appeal or an upheld objection replaces the first from its own moment
on. The stars are the rating in effect (a major problem's cap included). One
query per answer: the organisations' stars are grouped per organisation and
built as JSON by PostgreSQL (one row, not one per organisation and cycle).
"""
from __future__ import annotations

import datetime as dt

from shared.domain import end_of_day_moment
from shared.identity import AUDITOR, COLLEGE_SECRETARY, ORG_ADMIN, Caller
from services.evaluation.audit.application import DistributionQuery

RESULT_CAUSES = ["cycle", "direct_grading"]
# Each organisation's result in each cycle: the latest rating that cycle set, recorded
# by the moment asked (index eval_rating_history_cycle).
RESULTS = ("WITH results AS (SELECT DISTINCT ON (h.cycle_id, h.org_id) h.cycle_id, h.org_id, "
           "h.stars_after AS stars FROM eval_rating_history h "
           "WHERE h.cycle_id IS NOT NULL AND h.cause = ANY(%s) AND h.valid_from <= %s "
           "ORDER BY h.cycle_id, h.org_id, h.valid_from DESC, h.version DESC) ")


def as_of_moment(value: str) -> dt.datetime:
    """``as_of`` of a dashboard: a timestamp, or a date meaning the end of that day
    (UTC), so that everything recorded on it counts."""
    return end_of_day_moment(value, "as_of")


def _figures(results: list[tuple], listed: bool = True) -> dict:
    """{rated, four_or_above {count, share[, org_ids]}, three_or_below {count[, org_ids]}}
    over ``(org_id, stars)`` pairs."""
    high = [o for o, s in results if s is not None and s >= 4]
    low = [o for o, s in results if s is not None and s <= 3]
    rated = len(high) + len(low)
    out = {"rated": rated,
           "four_or_above": {"count": len(high),
                             "share": round(len(high) / rated, 4) if rated else 0.0},
           "three_or_below": {"count": len(low)}}
    if listed:
        out["four_or_above"]["org_ids"] = high
        out["three_or_below"]["org_ids"] = low
    return out


def _counted(high: int, low: int) -> dict:
    rated = high + low
    return {"rated": rated,
            "four_or_above": {"count": high,
                              "share": round(high / rated, 4) if rated else 0.0},
            "three_or_below": {"count": low}}


class StarTrend:
    """The trend, mixed into the evaluation application (the programme
    dashboard shows it; ``star_trend`` answers it alone)."""

    def star_trend(self, caller: Caller, college_id: str | None = None,
                   as_of: str | None = None) -> dict:
        caller.require_role(ORG_ADMIN, AUDITOR, COLLEGE_SECRETARY)
        q = DistributionQuery.of(college_id=college_id, as_of=as_of)
        college = caller.college_scope(q.college_id, "trend")
        moment = as_of_moment(q.as_of) if q.as_of else None
        return self.trend_of(college, moment)

    def trend_of(self, college_id=None, moment: dt.datetime | None = None,
                 listed: bool = True) -> dict:
        """School → college → branch. ``school.branches``: per branch cycle, the
        figures over every branch rated in it (the sums of the colleges');
        ``school.colleges``: per college cycle, over the colleges, with their ids;
        ``colleges``: per college, its branches' figures per branch cycle, each
        listing the branches' ids; ``organizations``: every organisation behind a
        number, with its name, college and stars per cycle (aligned with
        ``cycles``; null where it was not rated in that cycle). Without
        ``listed`` only the figures: no ids, no ``organizations``."""
        at = moment or self.clock()
        scope, params = "", [RESULT_CAUSES, at, at]
        if college_id is not None:
            scope = " AND (o.parent_id = %s OR o.id = %s)"
            params += [str(college_id), str(college_id)]
        if not listed:
            return self._trend_counts(college_id, at, scope, params)
        # One row, aggregated by PostgreSQL: the cycles in order (period, opening,
        # then the first name rated in them: the order rows by cycle and name gave)
        # and one entry per organisation with its stars by cycle index, listed in
        # order of first appearance (cycle, name) with its rank by name.
        row = self.query(
            RESULTS + ", scoped AS MATERIALIZED (SELECT r.cycle_id, r.org_id, r.stars, "
            "o.name AS org_name, o.level, o.parent_id, p.name AS parent_name FROM results r "
            "JOIN dir_orgs o ON o.id = r.org_id LEFT JOIN dir_orgs p ON p.id = o.parent_id "
            "WHERE r.cycle_id IN (SELECT id FROM eval_cycles WHERE opened_at <= %s)"
            + scope + "), "
            "cyc AS (SELECT c.id, c.name, c.period, c.level, c.opened_at, (row_number() OVER "
            "(ORDER BY c.period, c.opened_at, f.first_name) - 1)::int AS idx FROM eval_cycles c "
            "JOIN (SELECT cycle_id, min(org_name) AS first_name FROM scoped GROUP BY cycle_id) f "
            "ON f.cycle_id = c.id), "
            "per_org AS (SELECT s.org_id, s.org_name, s.level, s.parent_id, s.parent_name, "
            "json_agg(json_build_array(k.idx, s.stars) ORDER BY k.idx) AS stars, "
            "min(k.idx) AS first_idx, "
            "row_number() OVER (ORDER BY s.org_name) AS name_rank FROM scoped s "
            "JOIN cyc k ON k.id = s.cycle_id "
            "GROUP BY s.org_id, s.org_name, s.level, s.parent_id, s.parent_name) "
            "SELECT (SELECT json_agg(json_build_array(id::text, name, period, level) ORDER BY idx) "
            "FROM cyc) AS cycles, (SELECT array_agg(opened_at ORDER BY idx) FROM cyc) AS opened, "
            "(SELECT json_agg(json_build_array(org_id::text, org_name, level, parent_id::text, "
            "parent_name, stars, name_rank) ORDER BY first_idx, org_name, name_rank) "
            "FROM per_org) AS orgs", params)[0]
        cycles: dict[str, dict] = {}
        by_cycle: dict[tuple, list] = {}
        colleges: dict[str, dict] = {}
        orgs: dict[str, dict] = {}
        ids = []
        for (cid, name, period, level), opened in zip(row["cycles"] or [],
                                                      row["opened"] or []):
            ids.append(cid)
            cycles[cid] = {"cycle_id": cid, "name": name, "period": period, "level": level,
                           "opened_at": opened.isoformat(), "index": len(cycles)}
        entries = row["orgs"] or []
        for oid, name, level, parent, parent_name, _, _ in entries:
            college = str(parent) if level == 3 else None
            orgs[oid] = {"org_id": oid, "org_name": name, "level": level,
                         "college_id": college, "stars": {}}
            if college is not None and college not in colleges:
                colleges[college] = {"college_id": college, "college_name": parent_name,
                                     "results": {}}
        # per cycle, the organisations in order of name (as the rows were)
        for oid, _, level, _, _, stars, _ in sorted(entries, key=lambda e: e[6]):
            org = orgs[oid]
            for index, value in stars:
                cid = ids[index]
                org["stars"][index] = value
                by_cycle.setdefault((cid, level), []).append((oid, value))
                if level == 3:
                    colleges[org["college_id"]]["results"].setdefault(cid, []).append(
                        (oid, value))
        order = list(cycles)
        branch_cycles = [c for c in order if cycles[c]["level"] == 3]
        college_cycles = [c for c in order if cycles[c]["level"] == 2]
        for org in orgs.values():
            stars = org["stars"]
            org["stars"] = [stars.get(i) for i in range(len(order))]
        return {
            "as_of": at.isoformat(), "college_id": str(college_id) if college_id else None,
            "source": "eval_rating_history (validity periods)",
            "cycles": [{k: v for k, v in cycles[c].items() if k != "index"} for c in order],
            "school": {
                "branches": [{"cycle_id": c, **_figures(by_cycle.get((c, 3), []), False)}
                             for c in branch_cycles],
                "colleges": [{"cycle_id": c, **_figures(by_cycle.get((c, 2), []), listed)}
                             for c in college_cycles]},
            "colleges": [{"college_id": k, "college_name": v["college_name"],
                          "cycles": [{"cycle_id": c,
                                      **_figures(v["results"].get(c, []), listed)}
                                     for c in branch_cycles]}
                         for k, v in sorted(colleges.items(),
                                            key=lambda kv: kv[1]["college_name"] or "")],
            "organizations": sorted(orgs.values(), key=lambda o: (o["level"], o["org_name"]))
            if listed else None}

    def _trend_counts(self, college_id, at: dt.datetime, scope: str, params: list) -> dict:
        """The figures alone, counted by PostgreSQL: one row per cycle and college,
        not per organisation (the school-wide dashboard's part)."""
        rows = self.query(
            RESULTS + "SELECT c.id AS cycle_id, c.name AS cycle_name, c.period, "
            "c.level AS cycle_level, c.opened_at, o.level, "
            "CASE WHEN o.level = 3 THEN o.parent_id END AS college_id, "
            "min(p.name) AS college_name, count(*) FILTER (WHERE r.stars >= 4) AS high, "
            "count(*) FILTER (WHERE r.stars <= 3) AS low FROM eval_cycles c "
            "JOIN results r ON r.cycle_id = c.id JOIN dir_orgs o ON o.id = r.org_id "
            "LEFT JOIN dir_orgs p ON p.id = o.parent_id AND o.level = 3 "
            "WHERE c.opened_at <= %s" + scope + " GROUP BY c.id, c.name, c.period, c.level, "
            "c.opened_at, o.level, 7 ORDER BY c.period, c.opened_at", params)
        cycles: dict[str, dict] = {}
        school: dict[tuple, list] = {}
        colleges: dict[str, dict] = {}
        for r in rows:
            cid = str(r["cycle_id"])
            cycles.setdefault(cid, {"cycle_id": cid, "name": r["cycle_name"],
                                    "period": r["period"], "level": r["cycle_level"],
                                    "opened_at": r["opened_at"].isoformat()})
            total = school.setdefault((cid, r["level"]), [0, 0])
            total[0] += r["high"]
            total[1] += r["low"]
            if r["level"] == 3:
                entry = colleges.setdefault(str(r["college_id"]), {
                    "college_name": r["college_name"], "counts": {}})
                entry["counts"][cid] = (r["high"], r["low"])
        order = list(cycles)
        branch_cycles = [c for c in order if cycles[c]["level"] == 3]
        college_cycles = [c for c in order if cycles[c]["level"] == 2]
        return {
            "as_of": at.isoformat(), "college_id": str(college_id) if college_id else None,
            "source": "eval_rating_history (validity periods)",
            "cycles": [cycles[c] for c in order],
            "school": {
                "branches": [{"cycle_id": c, **_counted(*school.get((c, 3), (0, 0)))}
                             for c in branch_cycles],
                "colleges": [{"cycle_id": c, **_counted(*school.get((c, 2), (0, 0)))}
                             for c in college_cycles]},
            "colleges": [{"college_id": k, "college_name": v["college_name"],
                          "cycles": [{"cycle_id": c, **_counted(*v["counts"].get(c, (0, 0)))}
                                     for c in branch_cycles]}
                         for k, v in sorted(colleges.items(),
                                            key=lambda kv: kv[1]["college_name"] or "")],
            "organizations": None}
