"""The school-wide programme dashboard (三级联创 总览) for 组织部's portal: candidacies
by title, tier and stage; targets against achievements; the task book's status
and overdue milestones. Every number lists what is behind it.

A mixin of ``ProgrammeOperations`` (it uses ``programme_progress`` and the
task-book rows); read models only, a handful of indexed queries.
"""
from __future__ import annotations

from shared.errors import Forbidden
from shared.identity import AUDITOR, COLLEGE_SECRETARY, ORG_ADMIN, Caller
from services.evaluation.programme.domain import STAGE_ZH, STAGES, TIER_ZH, TIERS, TITLES

TASK_STATUSES = ("unplanned", "in_progress", "overdue", "completed")


class DashboardQueries:

    def programme_dashboard(self, caller: Caller, college_id: str | None = None) -> dict:
        """The whole programme at a glance, or one college's part of its candidacies
        (a college secretary sees its own college's)."""
        if caller.role == COLLEGE_SECRETARY:
            college_id = college_id or caller.org
            if str(college_id) != str(caller.org):
                raise Forbidden("a college secretary reads its own college's dashboard")
        else:
            caller.require_role(ORG_ADMIN, AUDITOR)
        return {"college_id": str(college_id) if college_id else None,
                "as_of": self._today(),
                "candidacies": self._candidacies_by_title(college_id),
                "targets": self.programme_progress(caller) if college_id is None else None,
                "task_book": self._task_book_summary() if college_id is None else None}

    def _candidacies_by_title(self, college_id) -> list[dict]:
        """[{title, title_zh, tiers: [{tier, tier_zh, total, stages: [{stage, stage_zh,
        count, organizations: [{org_id, org_name, candidacy_id, stage_on}]}]}]}]"""
        sql = ("SELECT id, org_id, org_name, title, tier, stage, stage_on FROM prog_candidacies")
        params: tuple = ()
        if college_id is not None:
            sql += " WHERE college_id = %s"
            params = (str(college_id),)
        cells: dict[tuple, list] = {}
        for r in self.app.query(sql + " ORDER BY org_name, attempt", params):
            cells.setdefault((r["title"], r["tier"], r["stage"]), []).append(
                {"org_id": str(r["org_id"]), "org_name": r["org_name"],
                 "candidacy_id": str(r["id"]), "stage_on": r["stage_on"].isoformat()})
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

    def _task_book_summary(self) -> dict:
        tasks = self._task_rows()
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
