"""The task book (任务书) of the creation programme: the seed's 26 measures,
milestones set by 组织部, progress reports by the lead and cooperating
departments, a department's view, and the overdue timer.

A mixin of ``ProgrammeOperations`` (``self.app``: evaluation's application;
``self.task_book``: the shipped data).

Departments (职能部门) are organizations' records, known here by code from its
events (``department_added``/``_renamed``/``_retired``, kept in the directory's
``dir_departments``): a measure holds codes, and names are looked up when read,
so a renamed department shows its new name everywhere. A retired department
stays readable with its period and is given no new milestones.
"""
from __future__ import annotations

import datetime as dt

from typing import Annotated, Optional

from pydantic import Field

from shared.commands import (Command, Key, Moment, Query, Reason, RequiredEvidence, RequiredText,
                             text_type)
from shared.errors import Conflict, Forbidden, NotFound, ValidationError
from shared.identity import AUDITOR, COLLEGE_SECRETARY, DEPARTMENT_STAFF, ORG_ADMIN, ROLES, Caller
from services.evaluation.programme.domain import Task
from services.evaluation.ratings.trend import as_of_moment

SYSTEM_ACTOR = {"sub": "system", "role": "system"}
ALL_COLLEGES = "all_colleges"
ALL_COLLEGES_NAME = "各二级学院"  # not a department: every college at the time
ORG_ADMIN_DEPARTMENT = "organization"  # org_admin is 组织部's staff
MilestoneTitle = text_type(300, 1)


class SetMilestone(Command):
    number: Key
    milestone_id: Optional[Key] = None
    title: MilestoneTitle
    year: Annotated[int, Field(ge=1900, le=2200)]
    due_on: dt.date
    reason: Optional[Reason] = None


class ReportProgress(Command):
    number: Key
    milestone_id: Optional[Key] = None
    text: RequiredText
    completed: bool = False
    on: Optional[dt.date] = None
    evidence: RequiredEvidence


class ReassignDepartments(Command):
    number: Key
    lead_department: Optional[Key] = None
    cooperating: Optional[Annotated[list[Key], Field(max_length=40)]] = None
    reason: Reason


class TaskRef(Query):
    number: Key


class AsOf(Query):
    as_of: Optional[Moment] = None


class DepartmentRef(Query):
    department: Optional[Key] = None
    as_of: Optional[Moment] = None


class TaskBookOperations:
    # -- the task book (任务书) --------------------------------------------------------
    def _task(self, number: str) -> Task:
        task_id = Task.id_for(number)
        if not self.app.exists(task_id):
            raise NotFound(f"number: the task book has no measure {number!r} "
                           "(二.1 … 六.3)")
        return self.app.load(task_id, Task, "measure")

    def _colleges(self, moment: dt.datetime | None = None) -> list[dict]:
        """The colleges (二级学院) 各二级学院 stands for: those active now, or those
        existing at ``moment`` (created by then, not dissolved or merged before it;
        the directory's ``created_at``/``closed_at``, unknown ones counted as
        always there)."""
        if moment is None:
            rows = self.app.query("SELECT id, name FROM dir_orgs WHERE level = 2 "
                                  "AND status = 'active' ORDER BY name")
        else:
            rows = self.app.query(
                "SELECT id, name FROM dir_orgs WHERE level = 2 "
                "AND (created_at IS NULL OR created_at <= %s) "
                "AND (status = 'active' OR closed_at > %s) ORDER BY name", (moment, moment))
        return [{"id": str(r["id"]), "name": r["name"]} for r in rows]

    def _departments(self) -> dict[str, dict]:
        """Every department evaluation knows (organizations' records), by code."""
        return self.app.directory.departments()

    def _dept_name(self, code: str, known: dict | None = None) -> str:
        """A department's name now (its code while organizations' event has not
        arrived yet); 各二级学院 for every college."""
        if code == ALL_COLLEGES:
            return ALL_COLLEGES_NAME
        row = (self._departments() if known is None else known).get(code)
        return row["name"] if row else code

    def _expand(self, codes: list, colleges: list[dict], known: dict) -> list[dict]:
        out = []
        for code in codes:
            if code == ALL_COLLEGES:
                out.extend({"code": ALL_COLLEGES, "name": c["name"], "org_id": c["id"]}
                           for c in colleges)
            else:
                out.append({"code": code, "name": self._dept_name(code, known)})
        return out

    def _require_lead_takes_work(self, task: Task, field: str = "number") -> None:
        """A retired department is given no new work: no milestone on a measure it leads."""
        lead = self._departments().get(task.lead_department)
        if lead is not None and lead["status"] != "active":
            raise ValidationError.single(
                field, f"measure {task.number}'s lead department {lead['name']} "
                f"({task.lead_department}) was retired (已撤销) on "
                f"{lead['retired_at'].date().isoformat()} and is given no new work")

    def reassign_departments(self, caller: Caller, payload: dict) -> dict:
        """Give a measure another lead department (牵头部门) and/or cooperating
        departments (配合部门), with a reason (组织部 only). Every code must be a
        department organizations knows and has not retired (各二级学院 as
        ``all_colleges`` among the cooperating ones)."""
        caller.require_role(ORG_ADMIN)
        cmd = ReassignDepartments.parse(payload)
        if cmd.lead_department is None and cmd.cooperating is None:
            raise ValidationError.single("lead_department",
                                         "give lead_department and/or cooperating")
        task = self._task(cmd.number)
        known = self._departments()
        errors = []

        def check(code: str, field: str, college_ok: bool) -> None:
            if code == ALL_COLLEGES:
                if not college_ok:
                    errors.append({"field": field, "message": f"{ALL_COLLEGES_NAME} (every "
                                   "college) cooperates; a measure is led by one department"})
                return
            row = known.get(code)
            if row is None:
                errors.append({"field": field, "message": f"no department {code!r} "
                               "(职能部门不存在); organizations' list_departments names them"})
            elif row["status"] != "active":
                errors.append({"field": field, "message": (
                    f"{row['name']} ({code}) was retired (已撤销) on "
                    f"{row['retired_at'].date().isoformat()} and is given no new work")})

        lead = cmd.lead_department or task.lead_department
        cooperating = list(cmd.cooperating) if cmd.cooperating is not None \
            else list(task.cooperating)
        if cmd.lead_department is not None:
            check(lead, "lead_department", False)
        if cmd.cooperating is not None:
            for i, code in enumerate(cooperating):
                check(code, f"cooperating[{i}]", True)
        if errors:
            raise ValidationError(errors)
        task.reassign(lead, cooperating, caller.as_actor(), cmd.reason)
        return self.app.commit(task, result=lambda: self.get_task(caller, cmd.number))

    def set_milestone(self, caller: Caller, payload: dict) -> dict:
        """Set (or move) a milestone (时间节点) of a measure with its due date."""
        caller.require_role(ORG_ADMIN)
        cmd = SetMilestone.parse(payload)
        task = self._task(cmd.number)
        self._require_lead_takes_work(task)
        milestone_id = cmd.milestone_id or f"{cmd.year}-{len(task.milestones) + 1}"
        task.set_milestone(milestone_id, cmd.title, cmd.year, cmd.due_on, caller.as_actor(),
                           cmd.reason)
        return self.app.commit(task, result=lambda: self.get_task(caller, cmd.number))

    def _reporting_department(self, caller: Caller, task: Task) -> str:
        """The department a caller reports for on this measure, or Forbidden."""
        involved = [task.lead_department, *task.cooperating]
        if caller.role == ORG_ADMIN:
            if ORG_ADMIN_DEPARTMENT in involved:
                return ORG_ADMIN_DEPARTMENT
            raise Forbidden(f"组织部 is neither lead nor cooperating department of measure "
                            f"{task.number}; its departments report")
        if caller.role == DEPARTMENT_STAFF and caller.org in involved:
            return caller.org
        if caller.role == COLLEGE_SECRETARY and ALL_COLLEGES in task.cooperating:
            return ALL_COLLEGES
        known = self._departments()
        raise Forbidden(f"measure {task.number} is reported by its lead department "
                        f"({self._dept_name(task.lead_department, known)}) and cooperating "
                        f"departments ({', '.join(self._dept_name(c, known) for c in task.cooperating)})")

    def report_progress(self, caller: Caller, payload: dict) -> dict:
        """A progress report with evidence: the lead department's (which may
        complete a milestone) or a cooperating department's part."""
        caller.require_role(ORG_ADMIN, DEPARTMENT_STAFF, COLLEGE_SECRETARY)
        cmd = ReportProgress.parse(payload)
        task = self._task(cmd.number)
        department = self._reporting_department(caller, task)
        task.report(cmd.milestone_id, department, cmd.text, cmd.completed,
                    (cmd.on or self.app.clock().date()).isoformat(), caller.as_actor(),
                    cmd.evidence)
        return self.app.commit(task, result=lambda: self.get_task(caller, cmd.number))

    @staticmethod
    def _milestone_row(m: dict, today: str) -> dict:
        overdue = m["status"] != "completed" and m["due_on"].isoformat() < today
        return {"milestone_id": m["milestone_id"], "title": m["title"], "year": m["year"],
                "due_on": m["due_on"].isoformat(), "status": m["status"], "overdue": overdue,
                "completed_on": m["completed_on"].isoformat() if m["completed_on"] else None,
                "overdue_recorded_at": m["overdue_at"].isoformat() if m["overdue_at"] else None}

    @staticmethod
    def _task_status(milestones: list[dict]) -> str:
        if not milestones:
            return "unplanned"
        if all(m["status"] == "completed" for m in milestones):
            return "completed"
        if any(m["overdue"] for m in milestones):
            return "overdue"
        return "in_progress"

    # Milestones as recorded by a moment: each one's latest version by then, its
    # completion (a completing report recorded by then) and its overdue flag (for
    # that due date, recorded by then).
    _MILESTONES_AS_OF = (
        "SELECT v.task_id, v.milestone_id, v.title, v.year, v.due_on, "
        "CASE WHEN c.on_date IS NULL THEN 'open' ELSE 'completed' END AS status, "
        "c.on_date AS completed_on, f.flagged_at AS overdue_at "
        "FROM (SELECT DISTINCT ON (task_id, milestone_id) * FROM prog_milestone_versions "
        "WHERE valid_from <= %(m)s ORDER BY task_id, milestone_id, version DESC) v "
        "LEFT JOIN LATERAL (SELECT on_date FROM prog_task_reports r WHERE r.task_id = v.task_id "
        "AND r.milestone_id = v.milestone_id AND r.completed AND r.recorded_at <= %(m)s "
        "ORDER BY r.version LIMIT 1) c ON true "
        "LEFT JOIN LATERAL (SELECT flagged_at FROM prog_milestone_flags g "
        "WHERE g.task_id = v.task_id AND g.milestone_id = v.milestone_id "
        "AND g.due_on = v.due_on AND g.flagged_at <= %(m)s ORDER BY g.version DESC LIMIT 1) f "
        "ON true ORDER BY v.due_on, v.milestone_id")
    # Measures with their departments as recorded by a moment.
    _TASKS_AS_OF = (
        "SELECT t.id, t.number, t.section, t.title, v.lead_department, v.cooperating "
        "FROM prog_tasks t JOIN LATERAL (SELECT lead_department, cooperating "
        "FROM prog_task_versions WHERE task_id = t.id AND valid_from <= %(m)s "
        "ORDER BY version DESC LIMIT 1) v ON true")

    def _task_rows(self, number: str | None = None, expand: bool = True,
                   moment: dt.datetime | None = None) -> list[dict]:
        """The measures with their milestones; ``expand``: 各二级学院 as every college
        (at ``moment`` when given). As of ``moment``: the departments, milestones,
        completions and overdue flags recorded by then, overdue counted on its day."""
        today = self._today() if moment is None else moment.date().isoformat()
        colleges = self._colleges(moment) if expand else []
        known = self._departments()
        milestones: dict = {}
        rows = self.app.query("SELECT * FROM prog_milestones ORDER BY due_on, milestone_id") \
            if moment is None else self.app.query(self._MILESTONES_AS_OF, {"m": moment})
        for m in rows:
            milestones.setdefault(m["task_id"], []).append(self._milestone_row(m, today))
        where = "WHERE number = %(number)s " if number is not None else ""
        source = "prog_tasks" if moment is None else f"({self._TASKS_AS_OF}) t"
        tasks = self.app.query(f"SELECT * FROM {source} {where}ORDER BY number",
                               {"m": moment, "number": number})
        out = []
        for t in tasks:
            ms = milestones.get(t["id"], [])
            out.append({"number": t["number"], "section": t["section"], "title": t["title"],
                        "lead_department": {"code": t["lead_department"],
                                            "name": self._dept_name(t["lead_department"], known)},
                        "cooperating": self._expand(t["cooperating"], colleges, known)
                        if expand else None,
                        "cooperating_codes": t["cooperating"], "milestones": ms,
                        "status": self._task_status(ms)})
        # the seed's order: section 二..六, then the item number
        order = list(self.task_book["sections"])
        out.sort(key=lambda r: (order.index(r["number"].split(".")[0]),
                                int(r["number"].split(".")[1])))
        return out

    def list_tasks(self, caller: Caller, as_of: str | None = None) -> list[dict]:
        """Every measure with its departments and milestones, now or as of a date
        or moment (``as_of``)."""
        caller.require_role(*ROLES)
        as_of = AsOf.of(as_of=as_of).as_of
        return self._task_rows(moment=as_of_moment(as_of) if as_of is not None else None)

    def get_task(self, caller: Caller, number: str) -> dict:
        caller.require_role(*ROLES)
        number = TaskRef.of(number=number).number
        rows = self._task_rows(str(number))
        if not rows:
            raise NotFound(f"number: the task book has no measure {number!r}")
        task = rows[0]
        known = self._departments()
        task["reports"] = [
            {"milestone_id": r["milestone_id"], "department": r["department"],
             "department_name": self._dept_name(r["department"], known), "text": r["text"],
             "completed": r["completed"], "on": r["on_date"].isoformat(), "actor": r["actor"],
             "evidence": r["evidence"] or [], "recorded_at": r["recorded_at"].isoformat()}
            for r in self.app.query(
                "SELECT r.* FROM prog_task_reports r JOIN prog_tasks t ON t.id = r.task_id "
                "WHERE t.number = %s ORDER BY r.version", (str(number),))]
        return task

    def department_view(self, caller: Caller, department: str | None = None,
                        as_of: str | None = None) -> dict:
        """A department's (职能部门) view: what it leads, what it cooperates on,
        what is overdue — now, or as of a date or moment (``as_of``: the measures'
        departments and milestones as recorded then). Department staff see their
        own; 组织部 and auditors any. A retired department's view stays readable,
        with its period."""
        q = DepartmentRef.of(department=department, as_of=as_of)
        moment = as_of_moment(q.as_of) if q.as_of is not None else None
        department = q.department
        if caller.role == DEPARTMENT_STAFF:
            department = department or caller.org
            if department != caller.org:
                raise Forbidden("department staff read their own department's view")
        else:
            caller.require_role(ORG_ADMIN, AUDITOR, DEPARTMENT_STAFF)
        if department is None:
            raise ValidationError.single("department", "required: a department code")
        record = self._departments().get(department)
        if record is None:
            raise NotFound(f"department: no department {department!r} (职能部门不存在); "
                           "organizations' list_departments names them")
        tasks = self._task_rows(moment=moment)
        leads = [t for t in tasks if t["lead_department"]["code"] == department]
        cooperates = [t for t in tasks if department in t["cooperating_codes"]]
        overdue = [{"number": t["number"], "title": t["title"], **m}
                   for t in leads for m in t["milestones"] if m["overdue"]]
        return {"department": department, "name": record["name"], "status": record["status"],
                "added_at": record["added_at"].isoformat(),
                "retired_at": record["retired_at"].isoformat() if record["retired_at"] else None,
                "as_of": moment.isoformat() if moment is not None else None,
                "leads": leads, "cooperates": cooperates, "overdue": overdue}

    def detect_overdue(self, limit: int = 200) -> int:
        """Timer: record each milestone past its due date and not completed as
        overdue, once (the flag lives in the measure's own events: a restart or a
        second instance finds it set; two instances at once clash and one wins)."""
        today = self._today()
        rows = self.app.query(
            "SELECT DISTINCT t.number FROM prog_milestones m JOIN prog_tasks t ON t.id = m.task_id "
            "WHERE m.status <> 'completed' AND m.overdue_at IS NULL AND m.due_on < %s LIMIT %s",
            (today, limit))
        flagged = 0
        for row in rows:
            task = self._task(row["number"])
            due = task.overdue_milestones(today)
            for milestone_id in due:
                task.flag_overdue(milestone_id, today, SYSTEM_ACTOR)
            if not due:
                continue
            try:
                self.app.commit(task)
            except Conflict:
                continue  # another instance recorded it (or the measure changed): next round
            flagged += len(due)
        return flagged
