"""Parked events (停放的事件): an event a read model or a consumer cannot apply.

One event whose projection or effect keeps raising (a NUL that PostgreSQL text
refuses, a NaN, a bug) must not stop everything behind it. It is *parked*: a
durable row in ``parked_events`` with the error, visible in ``consumer_status``,
the metrics and an alert. The projector or consumer goes on with the other
aggregates; later events of the *same* aggregate are *held* behind the parked
one (per-aggregate order is kept), never applied before it.

Ops (组织部 or 信息资源中心) then, with a reason:
  * **retry** the parked event (after fixing its cause): it is applied, then the
    events held behind it, in order; if one fails again it stays (or becomes)
    the parked one, with the new error;
  * **skip** it: it is marked skipped (who, why, when) and never applied, and
    the events held behind it are applied.
Every action is recorded in ``parked_event_actions`` (who, role, why, outcome);
rows are never deleted, so auditors can read what was skipped and by whom.

Recording never fails on the content that poisoned the event: errors and
envelopes are stored as escaped text (NUL, lone surrogates, NaN survive).
"""
from __future__ import annotations

import json
import logging
import math
from typing import Any, Callable, Iterable, Literal

from pydantic import Field

from shared import metrics
from shared.commands import POSITION_MAX, Command, RequiredReason, text_type
from shared.errors import NotFound, ValidationError
from shared.identity import AUDITOR, OPS, ORG_ADMIN, Caller

log = logging.getLogger(__name__)

PARKED_DDL = (
    """CREATE TABLE IF NOT EXISTS parked_events (
        id bigserial PRIMARY KEY,
        kind text NOT NULL,
        component text NOT NULL,
        event_id text NOT NULL,
        position bigint,
        originator_id text NOT NULL,
        originator_version bigint NOT NULL,
        event_type text NOT NULL DEFAULT '',
        status text NOT NULL,
        waiting_behind text,
        error text,
        attempts integer NOT NULL DEFAULT 1,
        envelope text,
        parked_at timestamptz NOT NULL DEFAULT now(),
        last_failed_at timestamptz,
        resolved_at timestamptz,
        resolved_by text,
        resolved_role text,
        resolved_reason text,
        UNIQUE (component, event_id)
    )""",
    """CREATE INDEX IF NOT EXISTS parked_events_open ON parked_events
        (component, originator_id, originator_version) WHERE status IN ('parked', 'held')""",
    """CREATE TABLE IF NOT EXISTS parked_event_actions (
        id bigserial PRIMARY KEY,
        parked_id bigint NOT NULL REFERENCES parked_events (id),
        action text NOT NULL,
        actor_sub text NOT NULL,
        actor_role text NOT NULL,
        reason text NOT NULL,
        outcome text NOT NULL,
        at timestamptz NOT NULL DEFAULT now()
    )""",
)

PARKED, HELD = "parked", "held"  # open: the event waits for ops
RETRIED, APPLIED, SKIPPED = "retried", "applied", "skipped"  # resolved
OPEN = (PARKED, HELD)
PROJECTION, CONSUMER = "projection", "consumer"
MAX_ERROR = 4000


# -- hostile content ---------------------------------------------------------------
def safe_text(value: Any, limit: int | None = MAX_ERROR) -> str:
    """Text PostgreSQL accepts whatever ``value`` holds: NUL shown as ``\\x00``,
    lone surrogates as ``\\udXXX``; cut to ``limit`` characters."""
    text = value if isinstance(value, str) else str(value)
    text = text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")
    if limit is not None and len(text) > limit:
        text = text[:limit] + f"… ({len(text) - limit} more characters)"
    return text


def safe_json(value: Any) -> Any:
    """A copy of ``value`` that jsonb accepts: strings through ``safe_text``
    (uncut), NaN and ±Infinity as strings."""
    if isinstance(value, str):
        return safe_text(value, None)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {safe_text(k, None): safe_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [safe_json(v) for v in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return safe_text(value, None)


def dump_envelope(envelope: dict) -> str:
    """The envelope as ASCII JSON text: NUL, lone surrogates and NaN are kept
    exactly (as escapes) and come back unchanged from ``load_envelope``."""
    return json.dumps(envelope, ensure_ascii=True, allow_nan=True, default=str)


def load_envelope(text: str) -> dict:
    return json.loads(text)


def describe_error(exc: BaseException) -> str:
    return safe_text(f"{type(exc).__name__}: {exc}")


def is_transient(exc: BaseException) -> bool:
    """Errors that say nothing about the event (the database or broker went away,
    a deadlock, a concurrent change): the event is tried again, never parked."""
    import psycopg
    from eventsourcing import persistence

    from shared.errors import Conflict

    return isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError,
                            persistence.OperationalError, persistence.InterfaceError, Conflict,
                            ConnectionError, TimeoutError))


class Gap(Exception):
    """A held event's predecessor was never received; it keeps waiting."""


# -- the parking lot of one projector or consumer -------------------------------------------
class ParkingLot:
    """The parked and held events of one projector or consumer (``component``)."""

    def __init__(self, app, kind: str, component: str, service: str):
        self.app = app
        self.kind = kind
        self.component = component
        self.service = service
        with app.transaction() as curs:
            curs.execute("SELECT pg_advisory_xact_lock(hashtext('parked_events_ddl'))")
            for statement in PARKED_DDL:
                curs.execute(statement)
        lots = getattr(app, "parking_lots", None)
        if lots is None:
            lots = app.parking_lots = {}
        lots[component] = self
        # Set by the owner (projector or inbox): takes its own locks and calls
        # ``release``: resolver(originator_id, parked_id, skip, (sub, role), reason) -> dict.
        self.resolver: Callable | None = None
        # The consumer's ``Inbox`` (None for a projector): its attempts are configurable.
        self.owner = None

    # -- recording ------------------------------------------------------------
    OPEN_HEADS_SQL = (
        "SELECT DISTINCT ON (originator_id) originator_id, event_id, status, waiting_behind "
        "FROM parked_events WHERE component = %s AND status IN ('parked', 'held') "
        "ORDER BY originator_id, originator_version")

    def open_heads(self, curs) -> dict[str, str]:
        """``{originator_id: event id everything of it waits behind}`` for every
        aggregate with open rows (a projector batch checks against it)."""
        curs.execute(self.OPEN_HEADS_SQL, (self.component,))
        return self.heads_of(curs.fetchall())

    @staticmethod
    def heads_of(rows) -> dict[str, str]:
        """``open_heads`` of the rows its query returned (dict rows)."""
        return {r["originator_id"]: (r["event_id"] if r["status"] == PARKED
                                     else r["waiting_behind"] or r["event_id"])
                for r in rows}

    def open_rows(self, curs, originator_id: str, lock: bool = False) -> list[dict]:
        curs.execute(
            "SELECT * FROM parked_events WHERE component = %s AND originator_id = %s "
            "AND status IN ('parked', 'held') ORDER BY originator_version"
            + (" FOR UPDATE" if lock else ""), (self.component, str(originator_id)))
        return list(curs.fetchall())

    def skipped_ids(self, curs) -> set[str]:
        curs.execute("SELECT event_id FROM parked_events WHERE component = %s "
                     "AND status = 'skipped'", (self.component,))
        return {r["event_id"] for r in curs.fetchall()}

    def park(self, curs, *, error: str, **event) -> None:
        """Record (or re-record) an event as the parked one of its aggregate:
        ``event_id, originator_id, version, event_type`` and optionally
        ``position`` and ``envelope``."""
        self._record(curs, PARKED, error=safe_text(error), behind=None, attempts=1, **event)
        metrics.EVENTS_PARKED.labels(self.service, self.component).inc()
        log.error("%s %s parked %s: %s", self.kind, self.component,
                  safe_text(event["event_id"], 200), safe_text(error, 500))

    def hold(self, curs, *, behind: str, **event) -> None:
        """Record an event as waiting behind ``behind`` (same aggregate)."""
        self._record(curs, HELD, error=None, behind=safe_text(behind, 500), attempts=0, **event)

    def _record(self, curs, status: str, *, event_id: str, originator_id, version: int,
                event_type: str, error: str | None, behind: str | None, attempts: int,
                position: int | None = None, envelope: dict | None = None) -> None:
        curs.execute(
            "INSERT INTO parked_events (kind, component, event_id, position, originator_id, "
            "originator_version, event_type, status, error, waiting_behind, attempts, envelope, "
            "last_failed_at) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s, "
            "CASE WHEN %s = 'parked' THEN now() END) "
            "ON CONFLICT (component, event_id) DO UPDATE SET status = EXCLUDED.status, "
            "error = coalesce(EXCLUDED.error, parked_events.error), "
            "attempts = parked_events.attempts + EXCLUDED.attempts, "
            "waiting_behind = EXCLUDED.waiting_behind, "
            "last_failed_at = coalesce(EXCLUDED.last_failed_at, parked_events.last_failed_at), "
            "resolved_at = NULL, resolved_by = NULL, resolved_role = NULL, "
            "resolved_reason = NULL WHERE parked_events.status <> 'skipped'",
            (self.kind, self.component, safe_text(event_id, 500), position,
             safe_text(originator_id, 500), version, safe_text(event_type, 200), status,
             error, behind, attempts,
             dump_envelope(envelope) if envelope is not None else None, status))

    # -- releasing -------------------------------------------------------------
    def release(self, curs, originator_id, apply_one: Callable[[dict], None], *,
                skip_head: bool, actor: tuple[str, str], reason: str,
                parked_id: int | None = None,
                on_skip: Callable[[dict], None] | None = None) -> dict:
        """Apply the open rows of one aggregate in order (the caller holds the
        component's lock). With ``skip_head`` the first is skipped instead.

        ``apply_one(row)`` applies one event (in a savepoint here) or raises;
        ``on_skip(row)`` records that the skipped head counts as done (a consumer
        advances its ``last_version``);
        ``Gap`` means its predecessor is missing: it and the rest keep waiting.
        The first that fails becomes the parked one; the rest wait behind it.
        """
        rows = self.open_rows(curs, originator_id, lock=True)
        if not rows:
            return {"applied": 0, "skipped": 0, "still_open": 0}
        head = rows[0]
        if parked_id is not None and head["id"] != parked_id:
            raise ValidationError.single(
                "parked_id", f"event {parked_id} waits behind {head['event_id']} "
                f"(parked id {head['id']}); retry or skip that one first")
        applied = skipped = 0
        for index, row in enumerate(rows):
            if index == 0 and skip_head:
                if on_skip is not None:
                    on_skip(row)
                self._resolve(curs, row, SKIPPED, actor, reason)
                self._act(curs, row["id"], "skip", actor, reason, "skipped")
                skipped += 1
                continue
            try:
                with curs.connection.transaction():
                    apply_one(row)
            except Gap as gap:
                self._wait(curs, rows[index:], safe_text(gap, 500))
                if index == 0:
                    self._act(curs, row["id"], "retry", actor, reason, f"waiting: {gap}")
                break
            except Exception as exc:  # the event still fails: it is the parked one now
                error = describe_error(exc)
                curs.execute(
                    "UPDATE parked_events SET status = 'parked', error = %s, "
                    "attempts = attempts + 1, waiting_behind = NULL, last_failed_at = now() "
                    "WHERE id = %s", (error, row["id"]))
                self._wait(curs, rows[index + 1:], row["event_id"])
                if index == 0:
                    self._act(curs, row["id"], "retry", actor, reason, f"failed again: {error}")
                metrics.EVENTS_PARKED.labels(self.service, self.component).inc()
                log.error("%s %s: %s failed again: %s", self.kind, self.component,
                          row["event_id"], error)
                break
            status = RETRIED if index == 0 else APPLIED
            self._resolve(curs, row, status, actor, reason)
            if index == 0:
                self._act(curs, row["id"], "retry", actor, reason, "applied")
            applied += 1
        still_open = len(self.open_rows(curs, originator_id))
        metrics.PARKED_RESOLVED.labels(self.service, self.component,
                                       "skip" if skip_head else "retry").inc()
        return {"applied": applied, "skipped": skipped, "still_open": still_open}

    def _resolve(self, curs, row: dict, status: str, actor: tuple[str, str], reason: str):
        curs.execute(
            "UPDATE parked_events SET status = %s, waiting_behind = NULL, resolved_at = now(), "
            "resolved_by = %s, resolved_role = %s, resolved_reason = %s WHERE id = %s",
            (status, safe_text(actor[0], 500), safe_text(actor[1], 100),
             safe_text(reason, MAX_ERROR), row["id"]))

    def _wait(self, curs, rows: Iterable[dict], behind: str) -> None:
        ids = [r["id"] for r in rows]
        if ids:
            curs.execute("UPDATE parked_events SET status = 'held', waiting_behind = %s "
                         "WHERE id = ANY(%s) AND status <> 'parked'", (behind, ids))

    def _act(self, curs, parked_id: int, action: str, actor, reason: str, outcome: str):
        curs.execute(
            "INSERT INTO parked_event_actions (parked_id, action, actor_sub, actor_role, "
            "reason, outcome) VALUES (%s,%s,%s,%s,%s,%s)",
            (parked_id, action, safe_text(actor[0], 500), safe_text(actor[1], 100),
             safe_text(reason, MAX_ERROR), safe_text(outcome)))

    # -- reading -----------------------------------------------------------------
    def summary(self) -> dict:
        """Counts and the open rows (with their errors) for ``consumer_status``."""
        rows = self.app.query(
            "SELECT * FROM parked_events WHERE component = %s AND status IN ('parked', 'held') "
            "ORDER BY id LIMIT 100", (self.component,))
        counts = self.app.query_one(
            "SELECT count(*) FILTER (WHERE status = 'parked') AS parked, "
            "count(*) FILTER (WHERE status = 'held') AS held FROM parked_events "
            "WHERE component = %s", (self.component,))
        return {"parked": int(counts["parked"]), "held": int(counts["held"]),
                "events": [parked_out(r) for r in rows]}


def parked_out(row: dict) -> dict:
    def iso(v):
        return v.isoformat() if v is not None else None

    return {"parked_id": row["id"], "kind": row["kind"], "component": row["component"],
            "event_id": row["event_id"], "position": row["position"],
            "originator_id": row["originator_id"],
            "originator_version": row["originator_version"], "event_type": row["event_type"],
            "status": row["status"], "waiting_behind": row["waiting_behind"],
            "error": row["error"], "attempts": row["attempts"],
            "parked_at": iso(row["parked_at"]), "last_failed_at": iso(row["last_failed_at"]),
            "resolved_at": iso(row["resolved_at"]), "resolved_by": row["resolved_by"],
            "resolved_role": row["resolved_role"], "resolved_reason": row["resolved_reason"]}


# -- ops over RPC ------------------------------------------------------------------
class ListParked(Command):
    component: text_type(200) | None = None
    status: Literal["parked", "held", "retried", "applied", "skipped"] | None = None
    limit: int = Field(default=100, ge=1, le=1000)


class ResolveParked(Command):
    parked_id: int = Field(ge=1, le=POSITION_MAX)
    reason: RequiredReason


class ParkingOperations:
    """Mixed into an ``EventSourcedApplication`` whose projector and inboxes
    park events (``self.parking_lots``): list, retry and skip them."""

    def consumer_status(self, caller: Caller) -> dict:
        """What ops see of the read models (services that consume other services'
        events extend this with each consumer)."""
        caller.require_role(ORG_ADMIN, OPS, AUDITOR)
        return {"read_models": {"parked": self.projector.parking.summary()}}

    def list_parked(self, caller: Caller, payload: dict) -> dict:
        """Parked, held and resolved events, newest first, with each one's actions."""
        caller.require_role(ORG_ADMIN, OPS, AUDITOR)
        cmd = ListParked.parse(payload)
        where, params = ["TRUE"], []
        if cmd.component:
            where.append("component = %s")
            params.append(cmd.component)
        if cmd.status:
            where.append("status = %s")
            params.append(cmd.status)
        rows = self.query(f"SELECT * FROM parked_events WHERE {' AND '.join(where)} "
                          f"ORDER BY id DESC LIMIT %s", (*params, cmd.limit))
        actions: dict[int, list] = {}
        if rows:
            for a in self.query("SELECT * FROM parked_event_actions WHERE parked_id = ANY(%s) "
                                "ORDER BY id", ([r["id"] for r in rows],)):
                actions.setdefault(a["parked_id"], []).append(
                    {"action": a["action"], "sub": a["actor_sub"], "role": a["actor_role"],
                     "reason": a["reason"], "outcome": a["outcome"], "at": a["at"].isoformat()})
        return {"items": [{**parked_out(r), "actions": actions.get(r["id"], [])} for r in rows],
                "open": self.parked_counts()}

    def retry_parked(self, caller: Caller, payload: dict) -> dict:
        """Apply a parked event again (its cause fixed), then those held behind it."""
        return self._resolve_parked(caller, payload, skip=False)

    def skip_parked(self, caller: Caller, payload: dict) -> dict:
        """Never apply a parked event (recorded with who and why); apply those held behind it."""
        return self._resolve_parked(caller, payload, skip=True)

    def _resolve_parked(self, caller: Caller, payload: dict, skip: bool) -> dict:
        caller.require_role(ORG_ADMIN, OPS)
        cmd = ResolveParked.parse(payload)
        row = self.query_one("SELECT * FROM parked_events WHERE id = %s", (cmd.parked_id,))
        if row is None:
            raise NotFound(f"parked event {cmd.parked_id} not found")
        if row["status"] not in OPEN:
            raise ValidationError.single(
                "parked_id", f"event {row['event_id']} is already {row['status']}")
        lot = (getattr(self, "parking_lots", None) or {}).get(row["component"])
        if lot is None or lot.resolver is None:
            raise ValidationError.single(
                "parked_id", f"no {row['kind']} named {row['component']!r} runs here")
        outcome = lot.resolver(row["originator_id"], cmd.parked_id, skip,
                               (caller.sub, caller.role), cmd.reason)
        after = self.query_one("SELECT * FROM parked_events WHERE id = %s", (cmd.parked_id,))
        return {**outcome, "parked": parked_out(after)}

    def parked_counts(self) -> list[dict]:
        rows = self.query("SELECT kind, component, status, count(*) AS n FROM parked_events "
                          "WHERE status IN ('parked', 'held') GROUP BY 1, 2, 3 ORDER BY 1, 2, 3")
        return [{"kind": r["kind"], "component": r["component"], "status": r["status"],
                 "count": int(r["n"])} for r in rows]

    def parked_gauges(self) -> list[dict]:
        """``lianchuang_parked_events{consumer, status}`` read at scrape time (every
        component this instance runs, zero when nothing waits)."""
        counts = {(r["component"], r["status"]): r["count"] for r in self.parked_counts()}
        samples = []
        for component in sorted(getattr(self, "parking_lots", None) or {}):
            for status in OPEN:
                samples.append(((self.name, component, status),
                                counts.pop((component, status), 0)))
        samples += [((self.name, c, s), n) for (c, s), n in counts.items()]
        return [{"name": "lianchuang_parked_events", "labels": ["service", "consumer", "status"],
                 "help": "Events a projection or consumer parked (failing) or holds behind "
                         "a parked one of the same aggregate",
                 "samples": samples}]
