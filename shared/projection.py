"""Read models: projections of a service's own notification log.

A ``Projector`` applies new notifications to each projection's tables and
records the position it reached in the same transaction, under a
transaction-level advisory lock, so two instances of a service never apply
the same event twice or out of order. Read models can be rebuilt from zero.

Pages of the log are read on the projector's connection (binary rows), and
only the events some projection handles are decoded. A projection applies an
event either with a ``@handles`` method (``(self, curs, event)``: its own SQL,
at once) or with a ``@folds`` method (``(self, batch, event)``: no I/O, it
records the event's effect on the rows it touches in a ``Batch``, folded per
row); a batch is written with COPY and set-based statements, per table and
shape of row (``TableFold``), at the end of the page, or before any ``@handles`` method runs
(so per-event handlers always see every earlier event applied). A rating
changed five times in a page is one row written, not five updates.

An event whose projection raises is parked (``shared.parking``): each page is
applied in one savepoint, and when that fails, it is split in halves, each
tried in its own savepoint, down to the failing event; the failing event is
recorded with its error, later events of the same aggregate are held behind
it, the others are applied and the position moves on. Ops retry or skip it
over RPC (``ParkedEventsService``).
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable

import eventlet
from eventlet.semaphore import Semaphore
from eventsourcing.utils import resolve_topic
from psycopg.rows import dict_row

from shared import metrics
from shared.envelope import snake
from shared.folds import (  # noqa: F401  (re-exported)
    write_pending, Batch, _Row, BULK_ROWS, TableFold, bulk, stage, column_types,
)
from shared.pages import EventDecoder, _Item, _page_cursor, collector_paused
from shared.parking import PROJECTION, ParkingLot, describe_error, is_transient

log = logging.getLogger(__name__)

POSITIONS_DDL = """
CREATE TABLE IF NOT EXISTS projection_positions (
    name text PRIMARY KEY,
    position bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
)"""


def handles(*event_classes):
    """Mark a projection method as the handler of these event classes:
    ``(self, curs, event)``, applied at once."""

    def mark(func):
        func._handles = event_classes
        return func

    return mark


def folds(*event_classes):
    """Mark a projection method as the folder of these event classes:
    ``(self, batch, event)`` records the event's effect in ``batch`` (a
    ``Batch``, or what the projection's ``new_batch`` returns) without I/O;
    ``write_batch`` writes it."""

    def mark(func):
        func._folds = event_classes
        return func

    return mark


class Projection:
    """Base of a read model. Subclasses declare ``ddl`` (statements run at
    start-up), ``tables`` (emptied on rebuild), ``@handles`` methods
    ``(self, curs, event)`` and ``@folds`` methods ``(self, batch, event)``.

    A projection writes only its own tables and reads no other projection's
    (the batches of a page are written in projection order)."""

    ddl: tuple[str, ...] = ()
    tables: tuple[str, ...] = ()

    def __init__(self):
        self._handlers: dict[type, Callable] = {}
        self._folds: dict[type, Callable] = {}
        for name in dir(type(self)):
            func = getattr(type(self), name)
            for cls in getattr(func, "_handles", ()):
                self._handlers[cls] = getattr(self, name)
            for cls in getattr(func, "_folds", ()):
                self._folds[cls] = getattr(self, name)

    def wants(self, cls: type) -> bool:
        return cls in self._handlers or cls in self._folds

    def new_batch(self) -> "Batch":
        return Batch()

    def write_batch(self, curs, batch: "Batch") -> None:
        batch.write(curs)

    def apply_in(self, curs, event: Any, pending: dict) -> None:
        """Apply ``event``: folded into this projection's batch in ``pending``
        (``{projection: batch}``), or, with a ``@handles`` method, at once after
        every pending batch is written."""
        handler = self._handlers.get(type(event))
        if handler is not None:
            if pending:
                write_pending(curs, pending)
            handler(curs, event)
            return
        fold = self._folds.get(type(event))
        if fold is not None:
            batch = pending.get(self)
            if batch is None:
                batch = pending[self] = self.new_batch()
            fold(batch, event)

    def apply(self, curs, event: Any) -> None:
        """Apply one event and write it."""
        pending: dict = {}
        self.apply_in(curs, event, pending)
        write_pending(curs, pending)


class Projector:
    def __init__(self, app, projections: list[Projection], name: str = "read_models",
                 service: str = "", batch_size: int = 2000, rebuild_batch_size: int = 25000):
        self.app = app
        self.projections = projections
        self.name = name
        self.service = service or app.name
        self.batch_size = batch_size
        self.rebuild_batch_size = rebuild_batch_size
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
        count = self._apply_first_batch(curs)
        applied, limit = count, self.batch_size
        while count >= limit:
            # The events table is locked until this commits, whatever the pages:
            # after the first, pages as big as a rebuild's (a rating changed twice
            # in a page is one write, and the lock is held for less).
            limit = self.rebuild_batch_size
            count = self._apply_next_batch(curs, self._read_position(curs), limit=limit)
            applied += count
        return applied  # the events table stays locked until this commits

    # A catch-up far behind (a new read model, an instance down for a while)
    # reads bigger pages, as long as one takes no longer than this: a command
    # saving events waits for the page being applied (it catches up under the
    # events table's lock), and a page's writes cost per row touched, so a
    # rating changed twice in one page is one write instead of two.
    PAGE_SECONDS = 0.25

    def _catch_up(self) -> int:
        applied, limit = 0, self.batch_size
        while True:
            started = time.perf_counter()
            with self.app.transaction() as curs:
                count = self._apply_first_batch(curs, limit)
            applied += count
            # A short page was the end of the log when it was read: what the
            # caller saved before is applied (later events: the next catch-up).
            if count < limit:
                return applied
            took = time.perf_counter() - started
            limit = max(self.batch_size, min(
                self.rebuild_batch_size, 2 * limit,
                int(limit * self.PAGE_SECONDS / took) if took > 0 else 2 * limit))

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
            while count := self._apply_next_batch(curs, position, skipped,
                                                  self.rebuild_batch_size):
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

    def _apply_first_batch(self, curs, limit: int | None = None) -> int:
        """Lock, read the position, the next page and the parked heads in one
        round trip (pipelined: a command does this inside the events table's
        lock, where every round trip holds up the other writers), then apply
        the page as ``_apply_next_batch`` does."""
        with collector_paused():
            return self._apply_first_page(curs, limit or self.batch_size)

    def _apply_first_page(self, curs, limit: int) -> int:
        conn, recorder = curs.connection, self.app.recorder
        with conn.cursor() as lock, _page_cursor(conn) as page, \
                conn.cursor(row_factory=dict_row) as parked:
            with conn.pipeline():
                lock.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (self._lock_name,))
                lock.execute("SELECT position FROM projection_positions WHERE name = %s "
                             "FOR UPDATE", (self.name,))
                # The position read again, after the row is locked above (statements
                # of a pipeline run in order).
                page.execute(
                    f'SELECT notification_id, originator_id, originator_version, topic, state '
                    f'FROM "{recorder.datastore.schema}"."{recorder.events_table_name}" '
                    f'WHERE notification_id > (SELECT position FROM projection_positions '
                    f'WHERE name = %s) ORDER BY notification_id LIMIT %s',
                    (self.name, limit))
                parked.execute(ParkingLot.OPEN_HEADS_SQL, (self.parking.component,))
            rows, heads = page.fetchall(), ParkingLot.heads_of(parked.fetchall())
        if not rows:
            return 0
        items = self._items(rows)
        self._apply_parking_failures(curs, items, heads, frozenset())
        curs.execute("UPDATE projection_positions SET position = %s, updated_at = now() "
                     "WHERE name = %s", (items[-1].position, self.name))
        return len(items)

    def _lock_and_read_position(self, curs) -> int:
        curs.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (self._lock_name,))
        return self._read_position(curs)

    def _read_position(self, curs) -> int:
        curs.execute("SELECT position FROM projection_positions WHERE name = %s FOR UPDATE",
                     (self.name,))
        return int(curs.fetchone()["position"])

    # -- reading and decoding a page -----------------------------------------------
    def _read_page(self, curs, after_position: int, limit: int) -> list[_Item]:
        """The next ``limit`` events of the log on ``curs``'s connection (the one
        holding the lock), decoded where some projection handles them."""
        recorder = self.app.recorder
        with _page_cursor(curs.connection) as page:
            page.execute(
                f'SELECT notification_id, originator_id, originator_version, topic, state '
                f'FROM "{recorder.datastore.schema}"."{recorder.events_table_name}" '
                f'WHERE notification_id > %s ORDER BY notification_id LIMIT %s',
                (after_position, limit))
            rows = page.fetchall()
        return self._items(rows)

    def _items(self, rows) -> list[_Item]:
        """A page's rows (position, originator, version, topic, state) as items,
        decoded where some projection handles them."""
        decode = EventDecoder(self.app.mapper)
        plans: dict[str, tuple] = {}
        items = []
        append = items.append
        for position, originator, version, topic, state in rows:
            event = error = None
            plan = plans.get(topic)
            if plan is None:
                plan = plans[topic] = self._plan(topic)
            if plan:
                try:
                    event = decode(originator, version, topic, state)
                except Exception as exc:  # parked when it is applied, as a handler's error
                    error = exc
            append(_Item(position, originator, version, topic, event, error, plan))
        return items

    def _plan(self, topic: str) -> tuple:
        """``((projection, fold), ...)`` for events of ``topic``: the projections
        that handle them (all of them for a topic that cannot be resolved:
        decoding it raises, and that parks it), each with the ``@folds`` method
        that folds it, called straight away, or None (``apply_in``: a
        ``@handles`` method, or a projection with its own ``apply_in``). Made
        once per page, so a fold patched between catch-ups is the one used."""
        try:
            cls = resolve_topic(topic)
        except Exception:
            return tuple((p, None) for p in self.projections)
        plan = []
        for p in self.projections:
            if not (p.wants(cls) or type(p).apply is not Projection.apply):
                continue
            direct = type(p).apply_in is Projection.apply_in and cls not in p._handlers
            plan.append((p, p._folds.get(cls) if direct else None))
        return tuple(plan)

    def _targets(self, topic: str) -> tuple:
        """The projections that handle events of ``topic``."""
        return tuple(p for p, _ in self._plan(topic))

    # -- applying a page -------------------------------------------------------------
    def _apply_next_batch(self, curs, position: int, skipped: frozenset | set = frozenset(),
                          limit: int | None = None) -> int:
        with collector_paused():
            return self._apply_page(curs, position, skipped, limit)

    def _apply_page(self, curs, position: int, skipped, limit: int | None) -> int:
        items = self._read_page(curs, position, limit or self.batch_size)
        if not items:
            return 0
        heads = self.parking.open_heads(curs)
        self._apply_parking_failures(curs, items, heads, skipped)
        curs.execute("UPDATE projection_positions SET position = %s, updated_at = now() "
                     "WHERE name = %s", (items[-1].position, self.name))
        return len(items)

    def _apply_parking_failures(self, curs, items: list[_Item], heads: dict, skipped) -> None:
        """Apply ``items`` in one savepoint; where one raised (then nothing of
        them is left applied), each half in its own, in order, down to the one
        that fails: it is parked and later events of its record held."""
        error = self._apply_all(curs, items, heads, skipped)
        if error is None:
            return
        if len(items) == 1:
            self._park(curs, items[0], error, heads)
            return
        middle = len(items) // 2
        self._apply_parking_failures(curs, items[:middle], heads, skipped)
        self._apply_parking_failures(curs, items[middle:], heads, skipped)

    def _apply_all(self, curs, items: list[_Item], heads: dict, skipped) -> Exception | None:
        """Every item in one savepoint, folded batches written at the end; the
        error if one raised (transient errors are raised: nothing is parked).

        The loop is the whole page's, inline: a rebuild runs it for every event,
        so an event no projection handles costs a test, and a folded one its
        fold (batch looked up per projection) without a call in between."""
        try:
            with curs.connection.transaction():
                pending: dict = {}
                for item in items:
                    plan = item.plan
                    if not plan and not heads:
                        continue
                    if skipped and item.event_id in skipped:
                        continue
                    if heads and item.originator in heads:
                        self._hold(curs, item, heads)
                        continue
                    if item.error is not None:
                        raise item.error
                    event = item.event
                    for projection, fold in plan:
                        if fold is None:
                            projection.apply_in(curs, event, pending)
                            continue
                        batch = pending.get(projection)
                        if batch is None:
                            batch = pending[projection] = projection.new_batch()
                        fold(batch, event)
                write_pending(curs, pending)
            return None
        except Exception as exc:
            if is_transient(exc):
                raise
            return exc

    def _hold(self, curs, item: _Item, heads: dict) -> None:
        self.parking.hold(curs, behind=heads[item.originator], event_id=item.event_id,
                          originator_id=item.originator, version=item.version,
                          event_type=_event_type(item.topic), position=item.position)

    def _park(self, curs, item: _Item, error: Exception, heads: dict) -> None:
        self.parking.park(curs, error=describe_error(error), event_id=item.event_id,
                          originator_id=item.originator, version=item.version,
                          event_type=_event_type(item.topic), position=item.position)
        heads[item.originator] = item.event_id

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
        found = self._read_page(curs, position - 1, 1)
        if not found or found[0].position != position:
            raise LookupError(f"no event at position {position}")
        item = found[0]
        if item.error is not None:
            raise item.error
        pending: dict = {}
        for projection in item.targets:
            projection.apply_in(curs, item.event, pending)
        write_pending(curs, pending)

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


def _event_type(topic: str) -> str:
    """``services.x.domain:Member.Registered`` -> ``member_registered``."""
    return "_".join(snake(part) for part in topic.rsplit(":", 1)[-1].split("."))
