"""The auditor's history (审计履历) of one record: filtered by time and kind,
with Chinese labels, as JSON, CSV or .xlsx, and every such read recorded as an
event of the service's own store (append-only and chained like every other event)."""
from __future__ import annotations

import csv
import io
import json
from typing import Annotated, Literal, Optional
from uuid import UUID

from eventsourcing.domain import Aggregate, event
from eventsourcing.utils import get_topic
from pydantic import Field

from shared.commands import Key, Moment, Query
from shared.domain import parse_moment
from shared.entrypoints import query
from shared.envelope import internal
from shared.identity import ORG_ADMIN, Caller

CSV_COLUMNS = (
    ("occurred_at", "时间 time"), ("label", "事件 event"), ("type", "类型 type"),
    ("actor", "操作人 actor"), ("role", "角色 role"), ("reason", "原因 reason"),
    ("evidence", "依据 evidence"), ("scheme_version", "方案版本 scheme version"),
    ("data", "内容 data"), ("event_id", "事件编号 event id"),
)


class HistoryFilters(Query):
    since: Optional[Moment] = None  # ISO date or timestamp, inclusive
    until: Optional[Moment] = None  # exclusive
    # event types, e.g. ["member_transferred"]
    kinds: Optional[Annotated[list[Key], Field(max_length=100)]] = None
    format: Literal["json", "csv", "xlsx"] = "json"


class HistoryQuery(HistoryFilters):
    aggregate_id: UUID


class AuditReadQuery(Query):
    subject_id: Optional[Key] = None
    reader: Optional[Key] = None
    since: Optional[Moment] = None
    until: Optional[Moment] = None
    limit: int = Field(default=500, ge=1, le=5000)


@internal
class AuditRead(Aggregate):
    """One look at a record's history or past state (审计查阅记录)."""

    @event("Recorded")
    def __init__(self, subject_id: str, query: str, filters: dict, actor: dict,
                 reason: str | None = None):
        self.subject_id = subject_id


def filtered(envelopes: list[dict], cmd: HistoryQuery, labels: dict[str, str]) -> list[dict]:
    """The envelopes in ``[since, until)`` of the given kinds, each with its label."""
    since = parse_moment(cmd.since, "since") if cmd.since else None
    until = parse_moment(cmd.until, "until") if cmd.until else None
    kinds = set(cmd.kinds or ())
    out = []
    for env in envelopes:
        at = parse_moment(env["occurred_at"], "occurred_at")
        if (since and at < since) or (until and at >= until) or (kinds and env["type"]
                                                                 not in kinds):
            continue
        out.append({**env, "label": labels.get(env["type"], env["type"])})
    return out


def _row(e: dict) -> list:
    """One history entry as the columns of ``CSV_COLUMNS``."""
    actor = e.get("actor") or {}
    return [e["occurred_at"], e["label"], e["type"], actor.get("sub", ""), actor.get("role", ""),
            e.get("reason") or "",
            json.dumps(e["evidence"], ensure_ascii=False) if e.get("evidence") else "",
            (e.get("data") or {}).get("scheme_version") or "",
            json.dumps(e.get("data") or {}, ensure_ascii=False), e["event_id"]]


def as_csv(entries: list[dict], name: str) -> dict:
    """The entries as a CSV file (UTF-8 with BOM, so spreadsheet programs read Chinese)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([title for _, title in CSV_COLUMNS])
    for e in entries:
        writer.writerow(_row(e))
    return {"filename": f"history-{name}.csv", "content_type": "text/csv; charset=utf-8",
            "content": "\ufeff" + buffer.getvalue()}


XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def as_xlsx(entries: list[dict], name: str) -> dict:
    """The entries as an .xlsx workbook (one sheet 审计履历, the CSV's columns),
    base64 in ``content`` with its size and SHA-256."""
    from shared.spreadsheets import Table, write_tables, xlsx_file

    data = write_tables([Table(name="审计履历", headers=[title for _, title in CSV_COLUMNS],
                               rows=(_row(e) for e in entries),
                               widths=[26, 20, 28, 16, 14, 30, 30, 10, 60, 40])])
    filename = f"history-{name}.xlsx"
    return {**xlsx_file(filename, data), "filename": filename, "content_type": XLSX_TYPE,
            "encoding": "base64"}


EXPORTS = {"csv": as_csv, "xlsx": as_xlsx}


class AuditedHistory:
    """Mixed into an ``EventSourcedApplication``: the history of one record and
    the record of who read it."""

    def audited_history(self, caller: Caller, payload: dict, labels: dict[str, str],
                        what: str, subject_id=None) -> list[dict] | dict:
        """``payload``: ``HistoryQuery``; ``subject_id``: what the reader asked
        about, when the aggregate stands for it (e.g. an organisation's rating)."""
        cmd = HistoryQuery.parse(payload)
        entries = filtered(self.history(cmd.aggregate_id, what), cmd, labels)
        subject = str(subject_id or cmd.aggregate_id)
        self.record_audit_read(caller, subject, "get_history",
                               cmd.model_dump(mode="json", exclude={"aggregate_id"}))
        return EXPORTS[cmd.format](entries, subject) if cmd.format in EXPORTS else entries

    def state_as_of(self, aggregate_id, moment, what: str = "record"):
        """An aggregate as it was at ``moment``, replayed from its own events
        (None if it did not exist yet)."""
        aggregate = None
        for e in self.events.get(self._as_uuid(aggregate_id, what)):
            if e.timestamp > moment:
                break
            aggregate = e.mutate(aggregate)
        return aggregate

    def record_audit_read(self, caller: Caller, subject_id, query: str, filters: dict) -> None:
        """Who looked at whose history or past state, when (the event's time):
        an ``AuditRead`` event in the service's own store, committed before the
        answer goes back (``append_in_one_round_trip``)."""
        read = AuditRead(subject_id=str(subject_id), query=query,
                         filters={k: v for k, v in filters.items() if v is not None},
                         actor=caller.as_actor())
        if append_in_one_round_trip(self, read) is None:
            self.save(read)

    def record_audit_read_with(self, caller: Caller, subject_id, query: str, filters: dict,
                               only_if: str, then: str, params: dict) -> list[dict] | None:
        """The audit read recorded (as ``record_audit_read``) only where ``only_if``
        holds, and ``then``'s rows read, in one transaction and one round trip
        (``append_in_one_round_trip``); ``only_if`` and ``then`` take ``params``
        (bound client-side, by psycopg's own literal adaptation). None where that
        cannot be done (no session of its own): read and record separately."""
        import psycopg

        conn = self._session_connection()
        if conn is None:
            return None
        bind = psycopg.ClientCursor(conn).mogrify
        read = AuditRead(subject_id=str(subject_id), query=query,
                         filters={k: v for k, v in filters.items() if v is not None},
                         actor=caller.as_actor())
        return append_in_one_round_trip(self, read, only_if=bind(only_if, params),
                                        then=bind(then, params))

    def list_audit_reads(self, caller: Caller, payload: dict) -> list[dict]:
        """Every recorded audit read, oldest first, filtered (org_admin, 组织部)."""
        caller.require_role(ORG_ADMIN)
        cmd = AuditReadQuery.parse(payload)
        since = parse_moment(cmd.since, "since") if cmd.since else None
        until = parse_moment(cmd.until, "until") if cmd.until else None
        topic, out, position = get_topic(AuditRead.Recorded), [], 0
        while len(out) < cmd.limit:
            page = self.recorder.select_notifications(start=position + 1, limit=1000,
                                                      topics=[topic])
            if not page:
                break
            for notification in page:
                e = self.mapper.to_domain_event(notification)
                if ((cmd.subject_id and e.subject_id != cmd.subject_id)
                        or (cmd.reader and e.actor.get("sub") != cmd.reader)
                        or (since and e.timestamp < since) or (until and e.timestamp >= until)):
                    continue
                out.append({"at": e.timestamp.isoformat(), "reader": e.actor,
                            "subject_id": e.subject_id, "query": e.query,
                            "filters": e.filters, "position": notification.id})
            position = page[-1].id
        return out[:cmd.limit]


def literal_rows(stored_events) -> str:
    """Stored events as SQL ``VALUES`` rows of literals (for a standard-conforming
    server): a uuid and an integer spelt as such, the topic quoted with any quote
    doubled, the state as hex bytea."""
    return ", ".join("('%s'::uuid, %d, '%s', '\\x%s'::bytea)" % (
        UUID(str(r.originator_id)), int(r.originator_version), str(r.topic).replace("'", "''"),
        bytes(r.state).hex()) for r in stored_events)


def append_in_one_round_trip(app, aggregate, only_if: str | None = None,
                             then: str | None = None) -> list[dict] | None:
    """Store a new aggregate's events as the library's save stores them, in one
    round trip instead of its pipelined transaction (BEGIN; LOCK; NOTIFY; INSERT;
    sync; COMMIT: two to three round trips and the pipeline's bookkeeping).

    The same rows in the same table: encoded (and encrypted) by the application's
    mapper, inserted under the library's ``LOCK TABLE … IN EXCLUSIVE MODE`` (so
    notification ids stay in commit order), NOTIFY on its channel, linked by the
    hash-chain trigger and refused UPDATE/DELETE by the append-only trigger like
    every other event. Sent as one simple-protocol message, which PostgreSQL runs
    as one implicit transaction and commits (synchronous commit: flushed to the
    WAL) before it answers, so the event is durable before this returns; a
    failure rolls all of it back. Values are SQL literals: uuid, integer and hex
    bytea are spelt from their own characters, the topic quoted with its quotes
    doubled (standard_conforming_strings, checked), since several statements can
    only be sent together without bound parameters.

    ``only_if``: an SQL condition (bound already) the events are stored under, in
    the same transaction; ``then``: a query (bound already) run after the insert,
    in that transaction, whose rows are returned (a read and its audit record in
    one round trip). Only on the call's own idle connection (an RPC's session):
    anywhere else (a command's open transaction, no session) it returns None and
    the caller saves as usual."""
    from shared.store import _commit_transaction, _translated_errors

    if _commit_transaction.get() is not None:
        return None
    conn = app._session_connection()
    if conn is None or not conn.autocommit or \
            conn.pgconn.parameter_status(b"standard_conforming_strings") != b"on":
        return None
    prefix = getattr(app, "_append_prefix", None)
    if prefix is None:
        recorder = app.recorder
        from psycopg import sql

        prefix = app._append_prefix = (
            "; ".join(s.as_string(conn) for s in [*recorder.lock_table_statements,
                                sql.SQL("NOTIFY {}").format(
                                    sql.Identifier(recorder.channel_name))]),
            sql.SQL("INSERT INTO {}.{} (originator_id, originator_version, topic, state) ").format(
                sql.Identifier(recorder.datastore.schema),
                sql.Identifier(recorder.events_table_name)).as_string(conn))
    values = literal_rows([app.mapper.to_stored_event(e) for e in aggregate.collect_events()])
    insert = f"{prefix[1]}VALUES {values}" if only_if is None else \
        f"{prefix[1]}SELECT * FROM (VALUES {values}) v WHERE {only_if}"
    text = f"{prefix[0]}; {insert}" + (f"; {then}" if then else "")
    with _translated_errors():
        curs = conn.execute(text)
        while curs.nextset():
            pass
        return list(curs.fetchall()) if then else []


class AuditReadsService:
    """Mixin for a nameko service whose ``app`` mixes in ``AuditedHistory``."""

    @query
    def list_audit_reads(self, **payload):
        return self.app.list_audit_reads(self.caller(), payload)
