"""Read models: projections of a service's own notification log.

A ``Projector`` applies new notifications to each projection's tables and
records the position it reached in the same transaction, under a
transaction-level advisory lock, so two instances of a service never apply
the same event twice or out of order. Read models can be rebuilt from zero.
"""
from __future__ import annotations

import logging
from typing import Any, Callable

import eventlet
from eventlet.semaphore import Semaphore

from shared import metrics

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
            position = 0
            while count := self._apply_next_batch(curs, position):
                applied += count
                position = self._read_position(curs)
        return applied

    def _lock_and_read_position(self, curs) -> int:
        curs.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (self._lock_name,))
        return self._read_position(curs)

    def _read_position(self, curs) -> int:
        curs.execute("SELECT position FROM projection_positions WHERE name = %s FOR UPDATE",
                     (self.name,))
        return int(curs.fetchone()["position"])

    def _apply_next_batch(self, curs, position: int) -> int:
        notifications = self.app.notifications_in(curs, position, self.batch_size)
        for notification in notifications:
            event = self.app.mapper.to_domain_event(notification)
            for projection in self.projections:
                projection.apply(curs, event)
        if notifications:
            curs.execute("UPDATE projection_positions SET position = %s, updated_at = now() "
                         "WHERE name = %s", (notifications[-1].id, self.name))
        return len(notifications)

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
