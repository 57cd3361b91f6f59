"""Yearly summaries (年度总结) per functional department and per college that the
基层党建述职评议 can cite (seed 六.1: the task book and timetable are "基层党建述职
评议的重点内容"): the measures it leads or cooperates on, their milestones of the
year met / overdue / open, its progress reports, the schedule rules it answers
for, and (a college) its own and its branches' candidacies, innovation projects
and brands. Read models only.

A mixin of ``ProgrammeOperations`` (``self.app``, ``self._departments()``,
``self._task_rows``, ``self._dept_name``).
"""
from __future__ import annotations

from typing import Annotated
from uuid import UUID

from pydantic import Field

from shared.commands import Key, Query
from shared.errors import Forbidden, NotFound, ValidationError
from shared.identity import AUDITOR, COLLEGE_SECRETARY, DEPARTMENT_STAFF, ORG_ADMIN, Caller
from services.evaluation.programme.domain import STAGE_ZH, TIER_ZH, TITLES
from services.evaluation.programme.projects.domain import COMPLETION_GRADES, PROJECT_STAGE_ZH
from services.evaluation.programme.taskbook import ALL_COLLEGES

Year = Annotated[int, Field(ge=1900, le=2200)]


class DepartmentYear(Query):
    department: Key
    year: Year


class CollegeYear(Query):
    college_id: UUID
    year: Year


def _iso(value):
    return value.isoformat() if value is not None else None


class YearlySummaries:

    def _milestones_of_year(self, measures: list[dict], year: int) -> dict:
        """The year's milestones of these measures: met (on time or late), overdue, open."""
        rows = []
        for t in measures:
            for m in t["milestones"]:
                if m["year"] != year:
                    continue
                status = "met" if m["status"] == "completed" else \
                    "overdue" if m["overdue"] else "open"
                rows.append({"number": t["number"], "title": t["title"],
                             "milestone_id": m["milestone_id"], "milestone": m["title"],
                             "due_on": m["due_on"], "completed_on": m["completed_on"],
                             "on_time": status == "met" and m["completed_on"] <= m["due_on"],
                             "status": status,
                             "overdue_recorded_at": m["overdue_recorded_at"]})
        return {"total": len(rows), "met": sum(r["status"] == "met" for r in rows),
                "met_on_time": sum(r["on_time"] for r in rows),
                "overdue": sum(r["status"] == "overdue" for r in rows),
                "open": sum(r["status"] == "open" for r in rows), "milestones": rows}

    def _reports(self, where: str, params: tuple) -> list[dict]:
        return [{"number": r["number"], "milestone_id": r["milestone_id"],
                 "on": r["on_date"].isoformat(), "text": r["text"],
                 "completed": r["completed"], "actor": r["actor"],
                 "evidence": r["evidence"] or []}
                for r in self.app.query(
                    "SELECT t.number, r.* FROM prog_task_reports r JOIN prog_tasks t "
                    f"ON t.id = r.task_id WHERE {where} ORDER BY r.on_date, r.version", params)]

    def _schedule_of_year(self, where: str, params: tuple, year: int) -> dict:
        """Items recorded in the year and overdue flags of periods ending in it."""
        items = self.app.query(
            "SELECT rule, period, subject_name, on_date, title, evidence FROM "
            f"prog_schedule_items WHERE {where} AND extract(year FROM on_date) = %s "
            "ORDER BY on_date", (*params, year))
        overdue = self.app.query(
            "SELECT rule, period, subject_name, required, recorded, flagged_at FROM "
            f"prog_schedule_overdue WHERE {where} AND extract(year FROM ends_on) = %s "
            "ORDER BY ends_on, rule", (*params, year))
        return {"recorded": [{"rule": r["rule"], "period": r["period"],
                              "subject_name": r["subject_name"], "on": r["on_date"].isoformat(),
                              "title": r["title"], "evidence": r["evidence"] or []}
                             for r in items],
                "overdue": [{"rule": r["rule"], "period": r["period"],
                             "subject_name": r["subject_name"], "required": r["required"],
                             "recorded": r["recorded"],
                             "flagged_at": r["flagged_at"].isoformat()} for r in overdue]}

    def department_summary(self, caller: Caller, department: str, year: int) -> dict:
        """A functional department's (职能部门) year: what it led and cooperated on,
        the year's milestones of the measures it leads, its progress reports and
        the schedule rules it answers for."""
        q = DepartmentYear.of(department=department, year=year)
        if caller.role == DEPARTMENT_STAFF:
            if q.department != caller.org:
                raise Forbidden("department staff read their own department's summary")
        else:
            caller.require_role(ORG_ADMIN, AUDITOR, DEPARTMENT_STAFF)
        known = self._departments()  # organizations' records, as evaluation has learnt them
        if q.department not in known or q.department == ALL_COLLEGES:
            raise ValidationError.single("department", "one of " + ", ".join(
                c for c in known if c != ALL_COLLEGES))
        tasks = self._task_rows(expand=False)
        leads = [t for t in tasks if t["lead_department"]["code"] == q.department]
        cooperates = [t for t in tasks if q.department in t["cooperating_codes"]]
        reports = self._reports("r.department = %s AND extract(year FROM r.on_date) = %s",
                                (q.department, q.year))
        milestones = self._milestones_of_year(leads, q.year)
        schedule = self._schedule_of_year(
            "rule = ANY(%s)", ([c for c, r in self._schedule_rules_all().items()
                                if r["department"] == q.department],), q.year)
        name = self._dept_name(q.department)
        return {
            "department": q.department, "name": name, "year": q.year,
            "leads": [{"number": t["number"], "title": t["title"], "status": t["status"]}
                      for t in leads],
            "cooperates": [{"number": t["number"], "title": t["title"],
                            "lead_department": t["lead_department"]} for t in cooperates],
            "milestones": milestones, "reports": {"count": len(reports), "items": reports},
            "schedule": schedule,
            "citation": (f"{name}{q.year}年度：牵头任务书举措{len(leads)}项、配合{len(cooperates)}项；"
                         f"本年度时间节点{milestones['total']}个，已完成{milestones['met']}个"
                         f"（按期{milestones['met_on_time']}个），逾期{milestones['overdue']}个；"
                         f"报送进展{len(reports)}次；制度落实逾期{len(schedule['overdue'])}项。")}

    def college_summary(self, caller: Caller, college_id, year: int) -> dict:
        """A college's (二级学院党组织) year: the measures 各二级学院 cooperate on and
        their milestones, the college's own progress reports, its 互查互评, its and
        its branches' candidacies (moves that year, titles held), innovation
        projects and brands."""
        q = CollegeYear.of(college_id=college_id, year=year)
        college = str(q.college_id)
        if caller.role == COLLEGE_SECRETARY:
            if college != str(caller.org):
                raise Forbidden("a college secretary reads its own college's summary")
        else:
            caller.require_role(ORG_ADMIN, AUDITOR, COLLEGE_SECRETARY)
        org = self.app.directory.org(college)
        if org is None:
            raise NotFound(f"college_id: organisation {college} is not known to evaluation")
        if org["level"] != 2:
            raise ValidationError.single("college_id", f"{org['name']} is not a college "
                                         "(level 2)")
        tasks = self._task_rows(expand=False)
        cooperates = [t for t in tasks if ALL_COLLEGES in t["cooperating_codes"]]
        milestones = self._milestones_of_year(cooperates, year=q.year)
        reports = self._reports(
            "r.department = %s AND r.actor->>'org' = %s AND extract(year FROM r.on_date) = %s",
            (ALL_COLLEGES, college, q.year))
        schedule = self._schedule_of_year("subject_id = %s", (college,), q.year)
        candidacies = []
        for c in self.app.query(
                "SELECT * FROM prog_candidacies WHERE college_id = %s ORDER BY level, org_name, "
                "tier, attempt", (college,)):
            moves = [{"to_stage": m["to_stage"], "to_stage_zh": STAGE_ZH[m["to_stage"]],
                      "on": m["on_date"].isoformat(), "reason": m["reason"]}
                     for m in self.app.query(
                         "SELECT * FROM prog_candidacy_moves WHERE candidacy_id = %s AND "
                         "extract(year FROM on_date) = %s ORDER BY version", (c["id"], q.year))]
            held = c["stage"] == "passed" and c["held_from"].year <= q.year and (
                c["held_until"] is None or c["held_until"].year >= q.year)
            if not moves and not held:
                continue
            acceptance = self.app.query_one(
                "SELECT score, outcome FROM prog_acceptances WHERE candidacy_id = %s "
                "ORDER BY version DESC LIMIT 1", (c["id"],))
            candidacies.append({
                "candidacy_id": str(c["id"]), "org_id": str(c["org_id"]),
                "org_name": c["org_name"], "title_zh": TITLES[c["level"]][1],
                "tier": c["tier"], "tier_zh": TIER_ZH[c["tier"]], "stage": c["stage"],
                "stage_zh": STAGE_ZH[c["stage"]], "title_held": held,
                "acceptance": acceptance, "moves_this_year": moves})
        projects = [{"project_id": str(p["id"]), "round": p["round"], "org_name": p["org_name"],
                     "name": p["name"], "stage": p["stage"],
                     "stage_zh": PROJECT_STAGE_ZH[p["stage"]], "results": p["results"],
                     "grade_zh": COMPLETION_GRADES.get(p["grade"])}
                    for p in self.app.query(
                        "SELECT * FROM prog_projects WHERE (college_id = %s OR org_id = %s) "
                        "AND (left(round, 4)::int = %s OR right(round, 4)::int = %s) "
                        "ORDER BY round, level, org_name", (college, college, q.year, q.year))]
        brands = [{"brand_id": str(b["id"]), "name": b["name"], "org_name": b["org_name"],
                   "recognitions": [r for r in b["recognitions"] if r["on"][:4] == str(q.year)]}
                  for b in self.app.query(
                      "SELECT b.* FROM prog_brands b JOIN dir_orgs o ON o.id = b.org_id "
                      "WHERE b.org_id = %s OR o.parent_id = %s ORDER BY b.name",
                      (college, college))]
        brands = [b for b in brands if b["recognitions"]]
        passed = sum(1 for c in candidacies if any(m["to_stage"] == "passed"
                                                   for m in c["moves_this_year"]))
        failed = sum(1 for c in candidacies if any(m["to_stage"] == "failed"
                                                   for m in c["moves_this_year"]))
        return {
            "college_id": college, "name": org["name"], "year": q.year,
            "cooperates": [{"number": t["number"], "title": t["title"],
                            "lead_department": t["lead_department"]} for t in cooperates],
            "milestones": milestones, "reports": {"count": len(reports), "items": reports},
            "schedule": schedule, "candidacies": candidacies, "projects": projects,
            "brands": brands,
            "citation": (f"{org['name']}{q.year}年度：配合任务书举措{len(cooperates)}项，报送进展"
                         f"{len(reports)}次；创建{len(candidacies)}项（本年达标{passed}项、未达标"
                         f"{failed}项）；党建创新项目{len(projects)}项；品牌认定{len(brands)}项；"
                         f"制度落实逾期{len(schedule['overdue'])}项。")}
