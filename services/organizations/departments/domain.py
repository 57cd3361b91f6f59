"""Functional departments (职能部门): the aggregate, pure of I/O.

A department is a record 组织部 keeps: a stable ``code`` (what other services
hold: the task book's lead and cooperating departments, a department_staff
token's ``org``, a contact group ``department:<code>``) and a ``name`` that may
change. Retired (撤销) departments stay on record with their period and take
no new work. "各二级学院" (``all_colleges``) is not a department: it stands for
every college at the time, and its code and name are reserved.
"""
from __future__ import annotations

import re
from pathlib import Path
from uuid import UUID

import yaml
from eventsourcing.domain import Aggregate, event

from shared.domain import derived_id, require
from shared.envelope import internal
from services.organizations.domain import clean_name

DEFAULTS_FILE = Path(__file__).with_name("default_departments.yaml")
# The same shape a department_staff token's org must have (shared.identity).
CODE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
ALL_COLLEGES = ("all_colleges", "各二级学院")
ACTIVE, RETIRED = "active", "retired"

EVENT_LABELS = {"department_added": "设立职能部门", "department_renamed": "职能部门更名",
                "department_retired": "撤销职能部门", "department_name_claimed": "占用部门名称",
                "department_name_reclaimed": "占用部门名称",
                "department_name_released": "释放部门名称"}


def load_defaults(path: Path = DEFAULTS_FILE) -> list[dict]:
    """The shipped default departments: the seed's 15 (``{code, name}`` each)."""
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def check_code(code) -> str:
    require(isinstance(code, str) and bool(CODE.match(code)), "code",
            "lower-case letters, digits and _ (starting with a letter, at most 40), "
            "e.g. publicity")
    require(code != ALL_COLLEGES[0], "code", f"{code} is reserved for {ALL_COLLEGES[1]} "
            "(every college)")
    return code


def check_name(name) -> str:
    name = clean_name(name)
    require(name != ALL_COLLEGES[1], "name", f"{name} means every college, not a department")
    return name


class Department(Aggregate):
    """A functional department (职能部门), keyed by its code."""

    id: UUID

    @staticmethod
    def id_for(code: str) -> UUID:
        return derived_id("department", code)

    @event("Added")
    def __init__(self, code: str, name: str, actor: dict, reason: str | None = None):
        self.code = code
        self.name = name
        self.status = ACTIVE

    @classmethod
    def add(cls, code, name, actor: dict, reason: str | None = None) -> "Department":
        code = check_code(code)
        return cls(id=cls.id_for(code), code=code, name=check_name(name), actor=actor,
                   reason=reason)

    @property
    def is_active(self) -> bool:
        return self.status == ACTIVE

    def require_active(self, field: str = "code") -> None:
        """A retired department takes no new work (and no new name)."""
        require(self.is_active, field, f"{self.name} ({self.code}) was retired (已撤销) and "
                "takes no new work")

    def rename(self, name, actor: dict, reason: str | None = None) -> None:
        self.require_active()
        name = check_name(name)
        require(name != self.name, "name", "is the current name")
        self._renamed(code=self.code, name=name, previous_name=self.name, actor=actor,
                      reason=reason)

    @event("Renamed")
    def _renamed(self, code: str, name: str, previous_name: str, actor: dict,
                 reason: str | None):
        self.name = name

    def retire(self, actor: dict, reason: str | None) -> None:
        self.require_active()
        require(bool(reason), "reason", "retiring a department (撤销) needs a reason")
        self._retired(code=self.code, name=self.name, actor=actor, reason=reason)

    @event("Retired")
    def _retired(self, code: str, name: str, actor: dict, reason: str | None):
        self.status = RETIRED


@internal
class DepartmentName(Aggregate):
    """A name held by one live department: saved atomically with the department,
    so two departments adding or taking the same name at one moment cannot both
    succeed (the second save is a version clash). A retired department's name
    is released."""

    @staticmethod
    def create_id(name: str) -> UUID:
        return derived_id("department-name", name.casefold())

    @event("Claimed")
    def __init__(self, name: str, code: str):
        self.holder: str | None = code

    def claim(self, code: str) -> None:
        require(self.holder is None or self.holder == code, "name",
                f"already the name of department {self.holder}")
        if self.holder is None:
            self._claimed_again(code=code)

    @event("Reclaimed")
    def _claimed_again(self, code: str):
        self.holder = code

    def release(self, code: str) -> None:
        if self.holder == code:
            self._released(code=code)

    @event("Released")
    def _released(self, code: str):
        self.holder = None
