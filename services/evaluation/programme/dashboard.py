"""The school-wide programme dashboard (三级联创 总览) for 组织部's portal: candidacies
by title, tier and stage; targets against achievements; the task book's status
and overdue milestones; the star distribution's trend over cycles (五.2, 三.4;
``services/evaluation/ratings/trend.py``). Every number lists what is behind it.
The organisations owing a rectification (整改) are a query of their own beside it
(``rectifications_owing``, now or as of a moment): computing them in every
recomputed dashboard tripled its p99 at 1,000 branches (96 -> 273 ms).

As of a date (``as_of``, the end of that day UTC, or a timestamp): from read
models with validity periods, not by replay — candidacies from their dated
moves (``prog_candidacy_moves``: each candidacy's latest move on or before the
day), the star trend from ``eval_rating_history``, the rectifications owed from
the stage moments in ``eval_problems`` over the organisations in being then
(``dir_org_periods``), targets from the plan's versions (``prog_plan_versions``)
and the task book from its measures' and milestones' versions, completions and
overdue flags as recorded by the moment (``prog_task_versions``,
``prog_milestone_versions``, ``prog_task_reports``, ``prog_milestone_flags``);
各二级学院 stands for the colleges existing then.

A mixin of ``ProgrammeOperations`` (it uses ``programme_progress`` and the
task-book rows); read models only, a handful of queries grouped and built as
JSON by PostgreSQL. An answer is kept per scope and reused while the read
models' position in the log and the date are unchanged (any instance applying
an event moves the position, so no answer outlives a change).
"""
from __future__ import annotations

import datetime as dt

from shared.errors import Forbidden, NotFound
from shared.identity import AUDITOR, COLLEGE_SECRETARY, ORG_ADMIN, Caller
from services.evaluation.audit.application import DistributionQuery
from services.evaluation.ratings.trend import as_of_moment
from services.evaluation.programme.domain import STAGE_ZH, STAGES, TIER_ZH, TIERS, TITLES

TASK_STATUSES = ("unplanned", "in_progress", "overdue", "completed")


class DashboardQueries:

    def programme_dashboard(self, caller: Caller, college_id: str | None = None,
                            as_of: str | None = None, listed: bool | None = None) -> dict:
        """The whole programme at a glance, or one college's part of its candidacies
        and star trend (a college secretary sees its own college's); as of a date
        or moment when ``as_of`` is given."""
        query = DistributionQuery.of(college_id=college_id, as_of=as_of)
        college_id = query.college_id
        if caller.role == COLLEGE_SECRETARY:
            college_id = college_id or caller.org
            if str(college_id) != str(caller.org):
                raise Forbidden("a college secretary reads its own college's dashboard")
        else:
            caller.require_role(ORG_ADMIN, AUDITOR)
        moment = as_of_moment(query.as_of) if query.as_of else None
        # The answer depends only on the read models (their position in the log)
        # and today's date: while neither moves, the last answer is still true.
        key = (self.app.projector.position(), self._today())
        cache = self._dashboards
        school = college_id is None and moment is None
        # The school's answer of today carries the numbers; the organisations behind
        # them come from the drill-down queries (a thousand branches' names made every
        # answer half a megabyte). One college's, any as-of answer, or an in-process
        # caller asking ``listed`` (the .xlsx export) gets them.
        listed = (not school) if listed is None else listed
        scope = (str(college_id) if college_id else None,
                 moment.isoformat() if moment else None, listed)
        hit = cache.get(scope)
        if hit is not None and hit[0] == key:
            return hit[1]
        answer = {"college_id": scope[0],
                  "as_of": moment.isoformat() if moment else key[1],
                  "candidacies": self._candidacies_by_title(college_id, moment, listed),
                  "targets": self._targets(caller, moment) if college_id is None else None,
                  "task_book": self._task_book_summary(moment) if college_id is None
                  else None,
                  "star_trend": self.app.trend_of(college_id, moment, listed)}
        if len(cache) > 64:  # as-of answers are many; keep the cache small
            cache.clear()
        cache[scope] = (key, answer)
        return answer

    def _candidacies_by_title(self, college_id, moment: dt.datetime | None = None,
                              listed: bool = True) -> list[dict]:
        """[{title, title_zh, tiers: [{tier, tier_zh, total, stages: [{stage, stage_zh,
        count[, organizations: [{org_id, org_name, candidacy_id, stage_on, college_id,
        college_name}]]}]}]}] (``organizations`` when ``listed``; else
        ``list_candidacies(title, tier, stage)`` gives them)."""
        # grouped and built as JSON by PostgreSQL: one row per cell, not per candidacy
        where, params = [], []
        if college_id is not None:
            where.append("c.college_id = %s")
            params.append(str(college_id))
        source = "prog_candidacies c"
        if moment is not None:
            # each candidacy at its latest move on or before the day asked
            source = ("(SELECT c.id, c.org_id, c.org_name, c.college_id, c.title, c.tier, "
                      "c.attempt, m.to_stage AS stage, m.on_date AS stage_on "
                      "FROM prog_candidacies c JOIN LATERAL (SELECT to_stage, on_date "
                      "FROM prog_candidacy_moves WHERE candidacy_id = c.id AND on_date <= %s "
                      "ORDER BY on_date DESC, version DESC LIMIT 1) m ON true) AS c")
            params.insert(0, moment.date())
        # each organisation with its college (an export groups them per college)
        listing = ("json_agg(json_build_object('org_id', c.org_id, 'org_name', c.org_name, "
                   "'candidacy_id', c.id, 'stage_on', c.stage_on, 'college_id', c.college_id, "
                   "'college_name', d.name) ORDER BY c.org_name, c.attempt)"
                   if listed else "NULL")
        sql = (f"SELECT c.title, c.tier, c.stage, count(*) AS n, {listing} AS organizations "
               f"FROM {source} " + ("LEFT JOIN dir_orgs d ON d.id = c.college_id "
                                    if listed else "")
               + (f"WHERE {' AND '.join(where)} " if where else "")
               + "GROUP BY c.title, c.tier, c.stage")
        cells = {(r["title"], r["tier"], r["stage"]): r for r in self.app.query(sql, params)}
        out = []
        for level, (title, title_zh, _) in sorted(TITLES.items()):
            tiers = []
            for tier in TIERS:
                stages = []
                for stage in STAGES:
                    cell = cells.get((title, tier, stage))
                    entry = {"stage": stage, "stage_zh": STAGE_ZH[stage],
                             "count": cell["n"] if cell else 0}
                    if listed:
                        entry["organizations"] = cell["organizations"] if cell else []
                    stages.append(entry)
                tiers.append({"tier": tier, "tier_zh": TIER_ZH[tier],
                              "total": sum(s["count"] for s in stages), "stages": stages})
            out.append({"title": title, "title_zh": title_zh, "level": level, "tiers": tiers})
        return out

    def _targets(self, caller: Caller, moment: dt.datetime | None = None) -> dict | None:
        """``programme_progress`` of the current plan, each number with the ids of
        the candidacies behind it (their organisations are in ``candidacies``;
        ``programme_progress`` gives them in full)."""
        try:
            progress = self.programme_progress(caller, moment=moment)
        except NotFound:
            if moment is None:
                raise
            return None  # no plan was recorded yet at that moment
        for t in progress["targets"]:
            behind = t.pop("candidacies")
            t["counted_ids"] = [c["id"] for c in behind if c["counted"]]
            t["pursuing_ids"] = [c["id"] for c in behind if not c["counted"]]
        return progress

    def _task_book_summary(self, moment: dt.datetime | None = None) -> dict:
        tasks = self._task_rows(expand=False, moment=moment)
        by_status = {s: [] for s in TASK_STATUSES}
        overdue = []
        for t in tasks:
            by_status[t["status"]].append(t["number"])
            for m in t["milestones"]:
                if m["overdue"]:
                    overdue.append({"number": t["number"], "title": t["title"],
                                    "lead_department": t["lead_department"],
                                    "milestone_id": m["milestone_id"], "milestone": m["title"],
                                    "due_on": m["due_on"]})
        return {"measures": len(tasks),
                "by_status": {s: {"count": len(v), "numbers": v} for s, v in by_status.items()},
                "overdue": sorted(overdue, key=lambda o: o["due_on"])}

