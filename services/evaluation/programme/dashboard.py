"""The school-wide programme dashboard (三级联创 总览) for 组织部's portal: candidacies
by title, tier and stage; targets against achievements; the task book's status
and overdue milestones. Every number lists what is behind it.

A mixin of ``ProgrammeOperations`` (it uses ``programme_progress`` and the
task-book rows); read models only, a handful of queries grouped and built as
JSON by PostgreSQL. An answer is kept per scope and reused while the read
models' position in the log and the date are unchanged (any instance applying
an event moves the position, so no answer outlives a change).
"""
from __future__ import annotations

from shared.commands import CollegeFilter
from shared.errors import Forbidden
from shared.identity import AUDITOR, COLLEGE_SECRETARY, ORG_ADMIN, Caller
from services.evaluation.programme.domain import STAGE_ZH, STAGES, TIER_ZH, TIERS, TITLES

TASK_STATUSES = ("unplanned", "in_progress", "overdue", "completed")


class DashboardQueries:

    def programme_dashboard(self, caller: Caller, college_id: str | None = None) -> dict:
        """The whole programme at a glance, or one college's part of its candidacies
        (a college secretary sees its own college's)."""
        college_id = CollegeFilter.of(college_id=college_id).college_id
        if caller.role == COLLEGE_SECRETARY:
            college_id = college_id or caller.org
            if str(college_id) != str(caller.org):
                raise Forbidden("a college secretary reads its own college's dashboard")
        else:
            caller.require_role(ORG_ADMIN, AUDITOR)
        # The answer depends only on the read models (their position in the log)
        # and today's date: while neither moves, the last answer is still true.
        key = (self.app.projector.position(), self._today())
        cache = self._dashboards
        scope = str(college_id) if college_id else None
        hit = cache.get(scope)
        if hit is not None and hit[0] == key:
            return hit[1]
        answer = {"college_id": scope, "as_of": key[1],
                  "candidacies": self._candidacies_by_title(college_id),
                  "targets": self._targets(caller) if college_id is None else None,
                  "task_book": self._task_book_summary() if college_id is None else None}
        cache[scope] = (key, answer)
        return answer

    def _candidacies_by_title(self, college_id) -> list[dict]:
        """[{title, title_zh, tiers: [{tier, tier_zh, total, stages: [{stage, stage_zh,
        count, organizations: [{org_id, org_name, candidacy_id, stage_on, college_id,
        college_name}]}]}]}]"""
        # grouped and built as JSON by PostgreSQL: one row per cell, not per candidacy
        where, params = "", ()
        if college_id is not None:
            where, params = "WHERE c.college_id = %s", (str(college_id),)
        # each organisation with its college (an export groups them per college)
        cells = {(r["title"], r["tier"], r["stage"]): r["organizations"] for r in self.app.query(
            "SELECT c.title, c.tier, c.stage, json_agg(json_build_object("
            "'org_id', c.org_id, 'org_name', c.org_name, 'candidacy_id', c.id, "
            "'stage_on', c.stage_on, 'college_id', c.college_id, 'college_name', d.name) "
            "ORDER BY c.org_name, c.attempt) AS organizations FROM prog_candidacies c "
            f"LEFT JOIN dir_orgs d ON d.id = c.college_id {where} "
            "GROUP BY c.title, c.tier, c.stage", params)}
        out = []
        for level, (title, title_zh, _) in sorted(TITLES.items()):
            tiers = []
            for tier in TIERS:
                stages = [{"stage": s, "stage_zh": STAGE_ZH[s],
                           "count": len(cells.get((title, tier, s), ())),
                           "organizations": cells.get((title, tier, s), [])} for s in STAGES]
                tiers.append({"tier": tier, "tier_zh": TIER_ZH[tier],
                              "total": sum(s["count"] for s in stages), "stages": stages})
            out.append({"title": title, "title_zh": title_zh, "level": level, "tiers": tiers})
        return out

    def _targets(self, caller: Caller) -> dict:
        """``programme_progress`` of the current plan, each number with the ids of
        the candidacies behind it (their organisations are in ``candidacies``;
        ``programme_progress`` gives them in full)."""
        progress = self.programme_progress(caller)
        for t in progress["targets"]:
            behind = t.pop("candidacies")
            t["counted_ids"] = [c["id"] for c in behind if c["counted"]]
            t["pursuing_ids"] = [c["id"] for c in behind if not c["counted"]]
        return progress

    def _task_book_summary(self) -> dict:
        tasks = self._task_rows(expand=False)
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
