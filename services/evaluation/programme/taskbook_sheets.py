"""The task book (任务书) in spreadsheets: the import of milestones (时间节点导入)
and the progress export (任务书进展) 组织部 files and prints.

A mixin of ``ProgrammeOperations`` (with ``TaskBookOperations``). The import is
one kind of evaluation's imports (``task_milestones``: ``shared.imports``, so
preview, then all-or-nothing apply, recorded as one ``Import``): a row is keyed
by measure, year and milestone title, so a re-applied file creates nothing
twice and a row with a new due date moves its milestone. The export writes
what ``task_book_progress`` returns.
"""
from __future__ import annotations

import datetime as dt
from typing import Annotated, Optional

from pydantic import Field

from shared.commands import Query
from shared.errors import ValidationError
from shared.identity import AUDITOR, DEPARTMENT_STAFF, OPS, ORG_ADMIN
from shared.imports import ImportContext, Plan, add_domain_error
from shared.spreadsheets import Column, Table, date, number, read_sheet, template, text, \
    write_tables, xlsx_file
from services.evaluation.programme.domain import Task

MILESTONE_SHEET = "任务书时间节点"
MILESTONE_COLUMNS = [
    Column("number", "举措编号", text(10), example="二.4", aliases=("措施编号", "编号"),
           note="the measure's number in the task book, 二.1 … 六.3"),
    Column("year", "年度", number(2000, 2100, integer=True), example=2026),
    Column("title", "时间节点", text(300), example="校领导本学期为师生上党课", width=40,
           aliases=("节点名称", "节点"), note="the key, with 举措编号 and 年度: a row whose "
           "milestone exists (same measure, year and title) moves its due date"),
    Column("due_on", "完成时限", date(not_after_today=False), example=dt.date(2026, 6, 30),
           aliases=("截止日期", "到期日期"), note="YYYY-MM-DD (or a date cell)"),
    Column("lead", "牵头部门", text(100), required=False, example="党政办",
           note="optional check: must be the measure's lead department (name or code)"),
    Column("notes", "备注", text(500), required=False, example="每学期至少一次", width=30,
           note="recorded with the milestone's reason"),
]
# Domain fields (as the Task's ValidationErrors name them) -> the column to report.
MILESTONE_FIELDS = {"title": "时间节点", "due_on": "完成时限", "milestone_id": "时间节点",
                    "reason": "备注", "number": "举措编号"}
MILESTONE_NOTES = [
    "任务书时间节点导入 task-book milestones: one row per milestone (时间节点) of a measure and year.",
    "Rows are keyed by 举措编号 + 年度 + 时间节点: applying a file again creates nothing twice; "
    "a known milestone with another 完成时限 is moved to it.",
    "牵头部门 (optional) is checked against the measure's lead department; a retired "
    "department (已撤销) is given no new milestones.",
]
STATUS_ZH = {"unplanned": "未设节点", "in_progress": "推进中", "overdue": "逾期",
             "completed": "已完成", "open": "进行中"}


class TaskBookYear(Query):
    year: Optional[Annotated[int, Field(ge=1900, le=2200)]] = None


def _key(title: str) -> str:
    return " ".join(title.split()).casefold()


class TaskBookSheets:
    # -- import: milestones ----------------------------------------------------------
    def milestone_template(self) -> dict:
        return xlsx_file("任务书时间节点导入模板 task_milestones-template.xlsx",
                         template(MILESTONE_SHEET, MILESTONE_COLUMNS, MILESTONE_NOTES))

    def plan_milestones(self, ctx: ImportContext) -> Plan:
        """Each row: a known measure, a known (live) lead department, not a
        duplicate of another row; then the measure's own ``set_milestone``."""
        sheet = read_sheet(ctx.data, MILESTONE_COLUMNS, MILESTONE_SHEET)
        errors, plan = sheet.errors, Plan.of(sheet)
        known = self._departments()
        by_name = {r["name"].casefold(): code for code, r in known.items()}
        tasks: dict[str, Task] = {}
        seen: dict[tuple, int] = {}
        for row in sheet.rows:
            v = row.values
            number_text = v["number"]
            task = tasks.get(number_text)
            if task is None:
                if not self.app.exists(Task.id_for(number_text)):
                    errors.add(row.number, "举措编号", number_text,
                               "unknown measure (任务书无此举措): 二.1 … 六.3")
                    continue
                task = tasks[number_text] = self.app.load(Task.id_for(number_text), Task,
                                                          "measure")
            key = (number_text, v["year"], _key(v["title"]))
            if key in seen:
                errors.add(row.number, "时间节点", v["title"],
                           f"duplicate row (重复): same measure, year and milestone as row "
                           f"{seen[key]}")
                continue
            seen[key] = row.number
            lead = known.get(task.lead_department)
            if v["lead"] is not None:
                code = by_name.get(v["lead"].casefold()) or (v["lead"] if v["lead"] in known
                                                               else None)
                if code is None:
                    errors.add(row.number, "牵头部门", v["lead"],
                               "unknown department (职能部门不存在)")
                    continue
                if code != task.lead_department:
                    errors.add(row.number, "牵头部门", v["lead"],
                               f"not the lead department (牵头部门) of {task.number}: "
                               f"{self._dept_name(task.lead_department, known)}")
                    continue
            if lead is not None and lead["status"] != "active":
                errors.add(row.number, "牵头部门" if v["lead"] else "举措编号",
                           v["lead"] or number_text,
                           f"{lead['name']} was retired (已撤销) and is given no new work")
                continue
            existing = next((mid for mid, m in task.milestones.items()
                             if m["year"] == v["year"] and _key(m["title"]) == key[2]), None)
            if existing is not None and task.milestones[existing]["due_on"] == \
                    v["due_on"].isoformat():
                plan.unchanged += 1
                continue
            milestone_id = existing or self._new_milestone_id(task, v["year"])
            reason = ctx.row_reason(row.number)
            if v["notes"]:
                reason = f"{reason}; 备注 {v['notes']}"
            try:
                task.set_milestone(milestone_id, v["title"], v["year"], v["due_on"],
                                   ctx.actor, reason)
            except ValidationError as exc:
                add_domain_error(errors, row.number, exc, MILESTONE_FIELDS,
                                 {"title": v["title"], "due_on": v["due_on"],
                                  "milestone_id": v["title"], "reason": v["notes"],
                                  "number": number_text})
                continue
            if existing is None:
                plan.created["时间节点 milestone"] += 1
            else:
                plan.changed["时间节点改期 milestone moved"] += 1
        plan.aggregates = [t for t in tasks.values() if t.pending_events]
        return plan

    @staticmethod
    def _new_milestone_id(task: Task, year: int) -> str:
        n = len(task.milestones) + 1
        while f"{year}-{n}" in task.milestones:
            n += 1
        return f"{year}-{n}"

    # -- export: progress ------------------------------------------------------------------
    def task_book_progress(self, caller, year=None) -> dict:
        """The task book's progress: every measure with its milestones (of one
        year, or all), how many are completed and overdue, its progress reports;
        and the overdue items. What ``export_task_book`` prints."""
        caller.require_role(ORG_ADMIN, AUDITOR, OPS, DEPARTMENT_STAFF)
        year = TaskBookYear.of(year=year).year
        known = self._departments()
        reports: dict[str, dict] = {}
        for r in self.app.query(
                "SELECT t.number, count(*) AS n, (array_agg(r.on_date ORDER BY r.version DESC))[1]"
                " AS last_on, (array_agg(r.department ORDER BY r.version DESC))[1] AS last_by, "
                "(array_agg(r.text ORDER BY r.version DESC))[1] AS last_text "
                "FROM prog_task_reports r JOIN prog_tasks t ON t.id = r.task_id "
                "GROUP BY t.number"):
            reports[r["number"]] = r
        measures, overdue = [], []
        for t in self._task_rows(expand=False):
            milestones = [m for m in t["milestones"] if year is None or m["year"] == year]
            done = sum(m["status"] == "completed" for m in milestones)
            late = [m for m in milestones if m["overdue"]]
            r = reports.get(t["number"])
            measures.append({
                "number": t["number"], "section": t["section"], "title": t["title"],
                "lead_department": t["lead_department"],
                "cooperating": [{"code": c, "name": self._dept_name(c, known)}
                                for c in t["cooperating_codes"]],
                "status": self._task_status(milestones), "milestones": milestones,
                "progress": {"milestones": len(milestones), "completed": done,
                             "overdue": len(late),
                             "share_completed": round(done / len(milestones), 4)
                             if milestones else None},
                "reports": int(r["n"]) if r else 0,
                "last_report": {"on": r["last_on"].isoformat(),
                                "department": self._dept_name(r["last_by"], known),
                                "text": r["last_text"]} if r else None})
            overdue += [{"number": t["number"], "measure": t["title"],
                         "lead_department": t["lead_department"],
                         "milestone_id": m["milestone_id"], "milestone": m["title"],
                         "year": m["year"], "due_on": m["due_on"],
                         "overdue_recorded_at": m["overdue_recorded_at"]} for m in late]
        overdue.sort(key=lambda o: (o["due_on"], o["number"]))
        return {"as_of": self._today(), "year": year, "measures": measures, "overdue": overdue,
                "totals": {"measures": len(measures),
                           "milestones": sum(m["progress"]["milestones"] for m in measures),
                           "completed": sum(m["progress"]["completed"] for m in measures),
                           "overdue": len(overdue)}}

    def export_task_book(self, caller, year=None) -> dict:
        """任务书进展: measures, milestones and overdue items, one sheet each."""
        data = self.task_book_progress(caller, year)
        scope = f"{data['year']}年度" if data["year"] else "全部年度"
        heading = f"党建“三级联创”任务书推进情况 task-book progress ({scope}, as of {data['as_of']})"
        measures = Table(
            name="任务书进展", title=[heading],
            headers=["举措编号", "部分", "举措", "牵头部门", "配合部门", "状态", "节点数",
                     "已完成", "逾期", "完成率", "进展报送次数", "最近报送"],
            rows=[[m["number"], m["section"], m["title"], m["lead_department"]["name"],
                   "、".join(c["name"] for c in m["cooperating"]),
                   STATUS_ZH.get(m["status"], m["status"]), m["progress"]["milestones"],
                   m["progress"]["completed"], m["progress"]["overdue"],
                   m["progress"]["share_completed"], m["reports"],
                   _last_report(m["last_report"])] for m in data["measures"]],
            widths=[8, 30, 40, 14, 40, 10, 8, 8, 8, 8, 10, 40])
        milestones = Table(
            name="时间节点", title=[heading],
            headers=["举措编号", "牵头部门", "节点编号", "时间节点", "年度", "完成时限", "状态",
                     "是否逾期", "完成日期"],
            rows=[[m["number"], m["lead_department"]["name"], ms["milestone_id"], ms["title"],
                   ms["year"], ms["due_on"], STATUS_ZH.get(ms["status"], ms["status"]),
                   "是" if ms["overdue"] else "否", ms["completed_on"]]
                  for m in data["measures"] for ms in m["milestones"]],
            widths=[8, 14, 12, 40, 8, 12, 10, 8, 12])
        overdue = Table(
            name="逾期事项", title=[heading],
            headers=["举措编号", "举措", "牵头部门", "节点编号", "时间节点", "完成时限",
                     "逾期登记时间"],
            rows=[[o["number"], o["measure"], o["lead_department"]["name"], o["milestone_id"],
                   o["milestone"], o["due_on"], o["overdue_recorded_at"]]
                  for o in data["overdue"]],
            widths=[8, 40, 14, 12, 40, 12, 28])
        return xlsx_file(f"任务书进展-{data['year'] or 'all'}.xlsx",
                         write_tables([measures, milestones, overdue]))


def _last_report(report: dict | None) -> str | None:
    if report is None:
        return None
    return f"{report['on']} {report['department']}: {report['text']}"
