"""Imports as recorded operations (批量导入): preview, then apply all-or-nothing.

A service describes one kind of import as a *planner*: given the file's rows
it returns a ``Plan`` (every row error, what would be created or changed,
counted by kind, and the aggregates changed in memory). ``Importer`` runs it:

* **preview** returns the plan's errors and counts; nothing is written;
* **apply** writes nothing unless every row is valid, then saves every
  aggregate the plan built together with one ``Import`` record (who, when,
  file name, SHA-256, row count, counts) in one atomic append, however large
  (a 30,000-member roster is one transaction: ``shared.store.CommandRecorder``
  inserts it in bounded statements). Every event the
  plan creates carries a reason naming the import and its source row
  (``import_reason``), so an auditor can trace a record to its row.

The same file applied again (same kind, same SHA-256) writes nothing: its
``Import`` record exists and is returned. Rows are keyed by the planners, so
a different file repeating rows creates nothing twice either.
"""
from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Optional
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from shared.commands import Command, Key, Query, Reason, text_type
from shared.domain import derived_id
from shared.errors import ValidationError
from shared.spreadsheets import MAX_FILE_BYTES, decode_upload, sha256


# base64 text of a file: its exact limit (MAX_FILE_BYTES) is checked and named by
# ``decode_upload``; the type only bounds what is parsed at all.
FileContent = text_type(2 * MAX_FILE_BYTES, 1)


class ImportFile(Command):
    """A spreadsheet import over RPC: the file as base64 text (``content``)."""

    kind: Key
    file_name: text_type(200, 1)  # type: ignore[valid-type]
    content: FileContent  # type: ignore[valid-type]
    reason: Optional[Reason] = None


class ImportKind(Query):
    """Which import (for its template)."""

    kind: Key


class Import(Aggregate):
    """One applied import: the operation auditors trace records back to."""

    id: UUID

    @staticmethod
    def id_for(service: str, kind: str, digest: str) -> UUID:
        return derived_id("import", service, kind, digest)

    @event("Applied")
    def __init__(self, kind: str, file_name: str, sha256: str, rows: int, created: dict,
                 changed: dict, unchanged: int, actor: dict, reason: str | None = None):
        self.kind = kind
        self.file_name = file_name
        self.sha256 = sha256
        self.rows = rows
        self.created = created
        self.changed = changed
        self.unchanged = unchanged
        self.actor = actor


def import_reason(import_id: UUID, file_name: str, row: int, reason: str | None = None) -> str:
    """The reason every event of an import carries: which import, which row."""
    text = f"导入 import {import_id} «{file_name}» 第{row}行 row {row}"
    return f"{text}: {reason}" if reason else text


@dataclass
class ImportContext:
    """What a planner gets: the file, who imports it, and the import's id
    (known before anything is written: it derives from the file's SHA-256)."""

    data: bytes
    caller: Any
    import_id: UUID
    file_name: str
    reason: str | None = None

    @property
    def actor(self) -> dict:
        return self.caller.as_actor()

    def row_reason(self, row: int) -> str:
        return import_reason(self.import_id, self.file_name, row, self.reason)


@dataclass
class Plan:
    """What an import does: row errors, counts by kind, and the aggregates
    changed in memory (saved only by apply, only when there are no errors).

    Planners run the domain's own methods on the aggregates, so a preview
    checks every invariant the single commands check."""

    rows: int
    errors: list[dict] = field(default_factory=list)
    created: Counter = field(default_factory=Counter)
    changed: Counter = field(default_factory=Counter)
    unchanged: int = 0
    aggregates: list[Any] = field(default_factory=list)

    @classmethod
    def of(cls, sheet) -> "Plan":
        """A plan for a sheet read by ``shared.spreadsheets.read_sheet``: it
        starts with the sheet's cell errors (planners add theirs)."""
        return cls(rows=sheet.total_rows, errors=sheet.errors.items)


Planner = Callable[[ImportContext], Plan]


class Importer:
    """Runs a service's planners on a service's application."""

    def __init__(self, app, planners: dict[str, Planner], max_bytes: int = MAX_FILE_BYTES):
        self.app = app
        self.planners = planners
        self.max_bytes = max_bytes

    def _plan(self, caller, cmd: ImportFile, data: bytes) -> Plan:
        planner = self.planners.get(cmd.kind)
        if planner is None:
            raise ValidationError.single("kind", f"unknown import {cmd.kind!r}; one of "
                                         + ", ".join(self.planners))
        import_id = Import.id_for(self.app.name, cmd.kind, sha256(data))
        plan = planner(ImportContext(data, caller, import_id, cmd.file_name, cmd.reason))
        plan.errors.sort(key=lambda e: (e["row"] or 0))  # stable: a row's cells stay in order
        return plan

    def preview(self, caller, payload: dict) -> dict:
        cmd = ImportFile.parse(payload)
        data = decode_upload(cmd.content, self.max_bytes)
        return self.preview_bytes(caller, cmd, data)

    def preview_bytes(self, caller, cmd: ImportFile, data: bytes) -> dict:
        plan = self._plan(caller, cmd, data)
        digest = sha256(data)
        previous = self._existing(cmd.kind, digest)
        return _outcome(cmd, digest, plan, applied=False, import_id=None,
                        already_applied=previous)

    def apply(self, caller, payload: dict) -> dict:
        cmd = ImportFile.parse(payload)
        data = decode_upload(cmd.content, self.max_bytes)
        return self.apply_bytes(caller, cmd, data)

    def apply_bytes(self, caller, cmd: ImportFile, data: bytes) -> dict:
        digest = sha256(data)
        previous = self._existing(cmd.kind, digest)
        if previous is not None:
            return {**previous, "applied": False, "already_applied": previous}
        plan = self._plan(caller, cmd, data)
        if plan.errors:
            raise ValidationError([
                {"field": f"{e['sheet']}!{e['row']}" + (f" {e['column']}" if e["column"] else ""),
                 "message": f"{e['why']}" + (f" ({e['value']})" if e["value"] is not None else "")}
                for e in plan.errors])
        import_id = Import.id_for(self.app.name, cmd.kind, digest)
        actor = caller.as_actor()
        record = Import(id=import_id, kind=cmd.kind, file_name=cmd.file_name, sha256=digest,
                        rows=plan.rows, created=dict(plan.created), changed=dict(plan.changed),
                        unchanged=plan.unchanged, actor=actor, reason=cmd.reason)
        # one atomic save, the answer recorded with it (a redelivered request gets
        # it); the read models catch up after it, page by page (``commit`` says why)
        return self.app.commit(*plan.aggregates, record, result=lambda: _outcome(
            cmd, digest, plan, applied=True, import_id=import_id, already_applied=None,
            at=record.created_on), project_inside=False)

    def _existing(self, kind: str, digest: str) -> dict | None:
        import_id = Import.id_for(self.app.name, kind, digest)
        if not self.app.exists(import_id):
            return None
        return import_out(self.app.repository.get(import_id))


def import_out(record: Import) -> dict:
    return {"import_id": str(record.id), "kind": record.kind, "file_name": record.file_name,
            "sha256": record.sha256, "rows": record.rows, "created": record.created,
            "changed": record.changed, "unchanged": record.unchanged, "actor": record.actor,
            "applied_at": record.created_on.isoformat()}


def _outcome(cmd: ImportFile, digest: str, plan: Plan, applied: bool, import_id,
             already_applied: dict | None, at: dt.datetime | None = None) -> dict:
    return {"kind": cmd.kind, "file_name": cmd.file_name, "sha256": digest, "rows": plan.rows,
            "valid": not plan.errors, "errors": plan.errors, "created": dict(plan.created),
            "changed": dict(plan.changed), "unchanged": plan.unchanged, "applied": applied,
            "import_id": str(import_id) if import_id else None,
            "applied_at": at.isoformat() if at else None, "already_applied": already_applied}


def add_domain_error(errors, row: int, exc: ValidationError, headers: dict[str, str],
                     values: dict[str, Any]) -> None:
    """A domain ``ValidationError`` raised for one row, as row errors: the field
    it names becomes the column whose header ``headers`` maps it to."""
    for e in exc.errors:
        key = e["field"]
        column = headers.get(key)
        errors.add(row, column, values.get(key) if column else None, e["message"])
