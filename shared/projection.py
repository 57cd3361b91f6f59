"""Read models: projections of a service's own notification log.

A ``Projector`` applies new notifications to each projection's tables and
records the position it reached in the same transaction, under a
transaction-level advisory lock, so two instances of a service never apply
the same event twice or out of order. Read models can be rebuilt from zero.

An event whose projection raises is parked (``shared.parking``): each batch is
applied in one savepoint, and when that fails, event by event, each in its own
savepoint; the failing event is recorded with its error, later events of the
same aggregate are held behind it, the others are applied and the position
moves on. Ops retry or skip it over RPC (``ParkedEventsService``).
"""
from __future__ import annotations

import logging
from typing import Any, Callable

import eventlet
from eventlet.semaphore import Semaphore

from shared import metrics
from shared.envelope import snake
from shared.parking import PROJECTION, ParkingLot, describe_error, is_transient

log = logging.getLogger(__name__)

POSITIONS_DDL = """
CREATE TABLE IF NOT EXISTS projection_positions (
    name text PRIMARY KEY,
    position bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
)"""


def handles(*event_classes):
    """Mark a projection method as the handler of these event classes."""

    def mark(func):
        func._handles = event_classes
        return func

    return mark


class Projection:
    """Base of a read model. Subclasses declare ``ddl`` (statements run at
    start-up), ``tables`` (emptied on rebuild) and ``@handles`` methods
    ``(self, curs, event)``."""

    ddl: tuple[str, ...] = ()
    tables: tuple[str, ...] = ()

    def __init__(self):
        self._handlers: dict[type, Callable] = {}
        for name in dir(type(self)):
            func = getattr(type(self), name)
            for cls in getattr(func, "_handles", ()):
                self._handlers[cls] = getattr(self, name)

    def apply(self, curs, event: Any) -> None:
        handler = self._handlers.get(type(event))
        if handler is not None:
            handler(curs, event)


class Projector:
    def __init__(self, app, projections: list[Projection], name: str = "read_models",
                 service: str = "", batch_size: int = 500):
        self.app = app
        self.projections = projections
        self.name = name
        self.service = service or app.name
        self.batch_size = batch_size
        self._lock_name = f"{app.name}:{name}"
        self._catching_up = Semaphore(1)
        with app.transaction() as curs:
            # Serialise DDL between instances starting together.
            curs.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (self._lock_name,))
            curs.execute(POSITIONS_DDL)
            for projection in projections:
                for statement in projection.ddl:
                    curs.execute(statement)
            curs.execute(
                "INSERT INTO projection_positions (name) VALUES (%s) ON CONFLICT DO NOTHING",
                (name,),
            )
        self.parking = ParkingLot(app, PROJECTION, name, self.service)
        self.parking.resolver = self._resolve_parked
        app.projector = self

    def position(self) -> int:
        row = self.app.query_one(
            "SELECT position FROM projection_positions WHERE name = %s", (self.name,))
        return int(row["position"]) if row else 0

    def catch_up(self) -> int:
        """Apply every notification not yet applied; returns how many.

        One green thread of this process catches up at a time (the others wait
        without holding a connection, then find little or nothing left), and it
        uses a single connection for the lock, the log and the read models.
        """
        with self._catching_up:
            return self._catch_up()

    def catch_up_in(self, curs) -> int:
        """Apply every notification not yet applied within the caller's open
        transaction (a command recording its events: see ``shared.store``)."""
        applied = 0
        position = self._lock_and_read_position(curs)
        while count := self._apply_next_batch(curs, position):
            applied += count
            if count < self.batch_size:
                # (rpcperf, issue 12) A short batch is the end of the log: the
                # caller's transaction holds the events table lock, so nothing
                # can be appended meanwhile; asking again cost two statements
                # in every command's critical section.
                break
            position = self._read_position(curs)
        return applied

    def _catch_up(self) -> int:
        applied = 0
        while True:
            with self.app.transaction() as curs:
                position = self._lock_and_read_position(curs)
                count = self._apply_next_batch(curs, position)
            if not count:
                return applied
            applied += count

    def rebuild(self) -> int:
        """Empty every read model and replay the whole log into it, in one
        transaction: readers see the old read models until the new ones commit."""
        applied = 0
        with self.app.transaction() as curs:
            self._lock_and_read_position(curs)
            for projection in self.projections:
                for table in projection.tables:
                    curs.execute(f"TRUNCATE {table} CASCADE")
            skipped = self.restart_parking(curs)
            position = 0
            while count := self._apply_next_batch(curs, position, skipped):
                applied += count
                position = self._read_position(curs)
        return applied

    def restart_parking(self, curs) -> frozenset | set:
        """For a rebuild: events parked or held so far are tried again from
        nothing (parked again if they still fail); skipped ones stay skipped
        (returned)."""
        curs.execute(
            "UPDATE parked_events SET status = 'applied', waiting_behind = NULL, "
            "resolved_at = now(), resolved_by = 'rebuild_read_models', resolved_role = NULL, "
            "resolved_reason = 'applied when the read models were rebuilt' "
            "WHERE component = %s AND status IN ('parked', 'held')", (self.name,))
        return self.parking.skipped_ids(curs)

    def _lock_and_read_position(self, curs) -> int:
        curs.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (self._lock_name,))
        return self._read_position(curs)

    def _read_position(self, curs) -> int:
        curs.execute("SELECT position FROM projection_positions WHERE name = %s FOR UPDATE",
                     (self.name,))
        return int(curs.fetchone()["position"])

    def _apply_next_batch(self, curs, position: int, skipped: frozenset | set = frozenset()
                          ) -> int:
        notifications = self.app.notifications_in(curs, position, self.batch_size)
        if not notifications:
            return 0
        heads = self.parking.open_heads(curs)
        if not self._apply_all(curs, notifications, heads, skipped):
            for notification in notifications:
                self._apply_or_park(curs, notification, heads, skipped)
        curs.execute("UPDATE projection_positions SET position = %s, updated_at = now() "
                     "WHERE name = %s", (notifications[-1].id, self.name))
        return len(notifications)

    def _apply(self, curs, notification) -> None:
        event = self.app.mapper.to_domain_event(notification)
        for projection in self.projections:
            projection.apply(curs, event)

    def _apply_all(self, curs, notifications, heads: dict, skipped) -> bool:
        """The usual case: the whole batch in one savepoint (events of records
        already parked are held, skipped ones left out); False if one raised
        (then nothing of the batch is left applied)."""
        try:
            with curs.connection.transaction():
                for notification in notifications:
                    self._apply_or_hold(curs, notification, heads, skipped)
            return True
        except Exception as exc:
            if is_transient(exc):
                raise
            return False

    def _apply_or_hold(self, curs, notification, heads: dict, skipped) -> None:
        """Apply one event, or hold it behind its record's parked event."""
        originator = str(notification.originator_id)
        event_id = _event_id(notification)
        if event_id in skipped:
            return
        where = dict(event_id=event_id, originator_id=originator,
                     version=notification.originator_version,
                     event_type=_event_type(notification.topic), position=notification.id)
        if originator in heads:
            self.parking.hold(curs, behind=heads[originator], **where)
            return
        self._apply(curs, notification)

    def _apply_or_park(self, curs, notification, heads: dict, skipped) -> None:
        """One event in its own savepoint: parked if it raises."""
        try:
            with curs.connection.transaction():
                self._apply_or_hold(curs, notification, heads, skipped)
        except Exception as exc:
            if is_transient(exc):
                raise
            originator = str(notification.originator_id)
            event_id = _event_id(notification)
            self.parking.park(curs, error=describe_error(exc), event_id=event_id,
                              originator_id=originator, version=notification.originator_version,
                              event_type=_event_type(notification.topic),
                              position=notification.id)
            heads[originator] = event_id

    def _resolve_parked(self, originator_id: str, parked_id: int, skip: bool,
                        actor: tuple[str, str], reason: str) -> dict:
        """Retry or skip a parked event, then apply those held behind it, under
        the same lock (and on the same connection) as a catch-up."""
        with self._catching_up:
            with self.app.transaction() as curs:
                self._lock_and_read_position(curs)
                return self.parking.release(
                    curs, originator_id, lambda row: self._apply_at(curs, row["position"]),
                    skip_head=skip, actor=actor, reason=reason, parked_id=parked_id)

    def _apply_at(self, curs, position: int) -> None:
        found = self.app.notifications_in(curs, position - 1, 1)
        if not found or found[0].id != position:
            raise LookupError(f"no event at position {position}")
        self._apply(curs, found[0])

    def run_forever(self, stopping: eventlet.event.Event, poll_interval: float = 0.5):
        """Background follower: keeps read models current even when an instance
        died between saving events and catching up."""
        while not stopping.ready():
            try:
                self.catch_up()
                lag = (self.app.recorder.max_notification_id() or 0) - self.position()
                metrics.PROJECTION_LAG.labels(self.service, self.name).set(lag)
                metrics.dependency_ok(self.service, "database")
            except Exception:  # keep following; the error is logged and retried
                log.exception("projection %s failed to catch up", self.name)
                metrics.dependency_failed(self.service, "database")
            stopping.wait(poll_interval)


def _event_id(notification) -> str:
    return f"{notification.originator_id}:{notification.originator_version}"


def _event_type(topic: str) -> str:
    """``services.x.domain:Member.Registered`` -> ``member_registered``."""
    return "_".join(snake(part) for part in topic.rsplit(":", 1)[-1].split("."))
