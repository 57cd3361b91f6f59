"""Functional departments (职能部门): commands, queries and who may do what.

org_admin (组织部) adds, renames and retires departments; every role that reads
the organisation tree (and department staff) reads them. Other services learn
them from the events (``department_added``, ``department_renamed``,
``department_retired``) through the relay, keyed by code.
"""
from __future__ import annotations

from typing import Optional

from shared.commands import Command, Key, Moment, Name, Query, Reason, RequiredReason
from shared.domain import parse_moment
from shared.errors import Conflict, NotFound, ValidationError
from shared.identity import DEPARTMENT_STAFF, OPS, ORG_ADMIN, Caller
from services.organizations.departments.domain import (ALL_COLLEGES, Department,
                                                       DepartmentName, load_defaults)

class AddDepartment(Command):
    code: Key
    name: Name
    reason: Optional[Reason] = None


class RenameDepartment(Command):
    code: Key
    name: Name
    reason: Optional[Reason] = None


class RetireDepartment(Command):
    code: Key
    reason: RequiredReason


class DepartmentsQuery(Query):
    as_of: Optional[Moment] = None
    include_retired: bool = False


class DepartmentRef(Query):
    code: Key


def _iso(value) -> str | None:
    return value.isoformat() if value is not None else None


class Departments:
    """The departments' use cases over the organizations application (``app``)."""

    def __init__(self, app, readers: tuple):
        self.app = app
        self.readers = (*readers, DEPARTMENT_STAFF)

    # -- shipped data ------------------------------------------------------------
    def install_defaults(self, caller: Caller) -> dict:
        """The seed's 15 departments (the default set-up, run by the demo loader
        or by 组织部 once): each is added unless it exists (ids derive from codes),
        so a department since renamed or retired is left as it is, and running it
        again adds nothing."""
        caller.require_role(ORG_ADMIN, OPS)
        pending = []
        for d in load_defaults():
            if self.app.exists(Department.id_for(d["code"])):
                continue
            department = Department.add(d["code"], d["name"], caller.as_actor(),
                                        "默认职能部门 shipped default (seed)")
            try:
                pending.append(self._claim(department.name, department.code, pending))
            except ValidationError:
                continue  # its name was given to another department meanwhile: not installed
            pending.append(department)
        added = [a.code for a in pending if isinstance(a, Department)]
        return self.app.commit(*pending, result=lambda: {
            "added": added, "departments": self.app.query_one(
                "SELECT count(*) AS n FROM dept_view WHERE status = 'active'")["n"]})

    # -- commands ----------------------------------------------------------------
    def _claim(self, name: str, code: str, pending=()) -> DepartmentName:
        claim_id = DepartmentName.create_id(name)
        for aggregate in pending:
            if aggregate.id == claim_id:
                aggregate.claim(code)
                return aggregate
        if self.app.exists(claim_id):
            claim = self.app.repository.get(claim_id)
            claim.claim(code)
            return claim
        return DepartmentName(name=name, code=code)

    def _claim_or_conflict(self, name: str, code: str) -> DepartmentName:
        try:
            return self._claim(name, code)
        except ValidationError as exc:
            raise Conflict(f"name: {name} — {exc.errors[0]['message']}") from None

    def _release(self, department: Department) -> DepartmentName | None:
        claim_id = DepartmentName.create_id(department.name)
        if not self.app.exists(claim_id):
            return None
        claim = self.app.repository.get(claim_id)
        claim.release(department.code)
        return claim if claim.pending_events else None

    def _load(self, code: str) -> Department:
        department_id = Department.id_for(code)
        if not self.app.exists(department_id):
            raise NotFound(f"code: no department {code!r} (职能部门不存在)")
        return self.app.load(department_id, Department, "department")

    def add_department(self, caller: Caller, payload: dict) -> dict:
        caller.require_role(ORG_ADMIN)
        cmd = AddDepartment.parse(payload)
        department = Department.add(cmd.code, cmd.name, caller.as_actor(), cmd.reason)
        if self.app.exists(department.id):
            existing = self.app.load(department.id, Department, "department")
            raise Conflict(f"code: {cmd.code} is already the code of {existing.name}"
                           + ("" if existing.is_active else " (retired: codes are not reused)"))
        claim = self._claim_or_conflict(department.name, department.code)
        return self.app.commit(department, claim,
                               result=lambda: self.get_department(caller, department.code))

    def rename_department(self, caller: Caller, payload: dict) -> dict:
        caller.require_role(ORG_ADMIN)
        cmd = RenameDepartment.parse(payload)
        department = self._load(cmd.code)
        released = self._release(department)
        department.rename(cmd.name, caller.as_actor(), cmd.reason)
        claim = self._claim_or_conflict(department.name, department.code)
        return self.app.commit(*[a for a in (department, released, claim) if a is not None],
                               result=lambda: self.get_department(caller, department.code))

    def retire_department(self, caller: Caller, payload: dict) -> dict:
        caller.require_role(ORG_ADMIN)
        cmd = RetireDepartment.parse(payload)
        department = self._load(cmd.code)
        department.retire(caller.as_actor(), cmd.reason)
        released = self._release(department)
        return self.app.commit(*[a for a in (department, released) if a is not None],
                               result=lambda: self.get_department(caller, department.code))

    # -- queries -----------------------------------------------------------------
    def get_department(self, caller: Caller, code) -> dict:
        """A department with its period (设立, 撤销) and every name it had."""
        caller.require_role(*self.readers)
        code = DepartmentRef.of(code=code).code
        row = self.app.query_one("SELECT * FROM dept_view WHERE code = %s", (code,))
        if row is None:
            raise NotFound(f"code: no department {code!r} (职能部门不存在)")
        return {**self._out(row), "history": [
            {"version": h["version"], "name": h["name"], "status": h["status"],
             "valid_from": _iso(h["valid_from"]), "valid_to": _iso(h["valid_to"])}
            for h in self.app.query("SELECT * FROM dept_history WHERE id = %s ORDER BY version",
                                    (str(row["id"]),))]}

    @staticmethod
    def _out(row: dict) -> dict:
        return {"code": row["code"], "name": row["name"], "kind": "department",
                "id": str(row["id"]), "status": row["status"],
                "added_at": _iso(row["added_at"]), "retired_at": _iso(row.get("retired_at"))}

    def list_departments(self, caller: Caller, as_of=None, include_retired=False) -> list[dict]:
        """The departments (职能部门), live ones unless ``include_retired``, as they
        are now or were at ``as_of``; last, 各二级学院 with the colleges it meant
        then (``means``: their ids)."""
        caller.require_role(*self.readers)
        q = DepartmentsQuery.of(as_of=as_of, include_retired=include_retired)
        status = "" if q.include_retired else " AND d.status = 'active'"
        if q.as_of:
            moment = parse_moment(q.as_of, "as_of")
            rows = self.app.query(
                "SELECT h.id, h.code, h.name, h.status, v.added_at, "
                "CASE WHEN h.status = 'retired' THEN h.valid_from END AS retired_at "
                "FROM dept_history h JOIN dept_view v ON v.id = h.id "
                "WHERE h.valid_from <= %s AND (h.valid_to IS NULL OR h.valid_to > %s)"
                + status.replace("d.", "h.") + " ORDER BY v.added_at, h.code", (moment, moment))
            colleges = self.app.query(
                "SELECT org_id AS id FROM org_history WHERE level = 2 AND status = 'active' "
                "AND valid_from <= %s AND (valid_to IS NULL OR valid_to > %s) ORDER BY name",
                (moment, moment))
        else:
            rows = self.app.query(f"SELECT * FROM dept_view d WHERE true{status} "
                                  "ORDER BY added_at, code")
            colleges = self.app.query("SELECT id FROM org_view WHERE level = 2 AND "
                                      "status = 'active' ORDER BY name")
        out = [self._out(r) for r in rows]
        out.append({"code": ALL_COLLEGES[0], "name": ALL_COLLEGES[1], "kind": "all_colleges",
                    "means": [str(c["id"]) for c in colleges]})
        return out
