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

import hashlib
import logging
from typing import Any, Callable, NamedTuple

import eventlet
from eventlet.semaphore import Semaphore
from eventsourcing.persistence import Mapper, find_id_convertor
from eventsourcing.utils import resolve_topic
from psycopg import sql
from psycopg.rows import tuple_row

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


def write_pending(curs, pending: dict) -> None:
    """Write every projection's pending batch (in the order they began)."""
    for projection, batch in list(pending.items()):
        projection.write_batch(curs, batch)
    pending.clear()


# -- batches: rows folded per key, written set-based --------------------------------
class Batch:
    """The pending writes of one projection for a page of events: a
    ``TableFold`` per table, written in the order they were first used."""

    def __init__(self):
        self.tables: dict[str, TableFold] = {}

    def table(self, name: str, *key: str) -> "TableFold":
        fold = self.tables.get(name)
        if fold is None:
            fold = self.tables[name] = TableFold(name, key)
        return fold

    def write(self, curs) -> None:
        for fold in self.tables.values():
            fold.write(curs)


class _Row:
    __slots__ = ("insert", "sets", "adds")

    def __init__(self):
        self.insert: dict | None = None  # a new row (later changes merged into it)
        self.sets: dict = {}  # column = value, on a row that existed before the batch
        self.adds: dict = {}  # column = column + value, likewise


# Past this many rows of one shape a write is staged with COPY and applied
# with one statement (outside pipeline mode, where COPY cannot run).
BULK_ROWS = 16


class TableFold:
    """Inserts and updates of one table keyed by ``key`` columns, folded per
    row: an update after an insert of the same row changes what is inserted;
    two updates of one row are one. Rows are written per shape (the columns
    they set): many with COPY (inserts) or COPY into a temporary table and one
    ``UPDATE ... FROM`` it (updates); a few (a command's catch-up, in pipeline
    mode) with ``executemany``. Values are adapted by psycopg as usual (wrap
    JSON in ``Jsonb``).

    Order of writing: updates of rows that existed before, then inserts (an
    event stream that updates a row before inserting it, where the update
    finds nothing, is applied the same way)."""

    def __init__(self, table: str, key: tuple[str, ...]):
        if not key:
            raise ValueError(f"TableFold {table}: name the key columns")
        self.table = table
        self.key = key
        self.rows: dict[tuple, _Row] = {}

    def _key(self, key) -> tuple:
        """Keys compare as text (a UUID and its string are one row)."""
        if type(key) is tuple:
            key = tuple(k if type(k) is str else str(k) for k in key)
        else:
            key = (key if type(key) is str else str(key),)
        if len(key) != len(self.key):
            raise ValueError(f"{self.table}: key {key} does not match {self.key}")
        return key

    def _row(self, key) -> _Row:
        key = self._key(key)
        row = self.rows.get(key)
        if row is None:
            row = self.rows[key] = _Row()
        return row

    def insert(self, key, **values) -> None:
        """A new row (its key columns are taken from ``key``)."""
        row = self._row(key)
        if row.insert is not None:
            raise ValueError(f"{self.table}: row {key} inserted twice")
        keys = key if type(key) is tuple else (key,)
        values.update(zip(self.key, keys))
        row.insert = values

    def update(self, key, **values) -> None:
        """``SET column = value`` on the row (does nothing where there is none)."""
        row = self._row(key)
        if row.insert is not None:
            row.insert.update(values)
            return
        row.sets.update(values)
        if row.adds:
            for column in values:
                row.adds.pop(column, None)

    def increment(self, key, column: str, by=1) -> None:
        """``SET column = column + by`` (NULL stays NULL)."""
        row = self._row(key)
        target = row.insert if row.insert is not None else row.sets
        if column in target:
            if target[column] is not None:
                target[column] += by
        elif row.insert is not None:
            raise ValueError(f"{self.table}: increment of {column}, which the pending insert "
                             "does not set (insert it with its initial value)")
        else:
            row.adds[column] = row.adds.get(column, 0) + by

    def get(self, key, column: str, default=None):
        """What this batch will write into ``column`` of the row (``default``
        when it writes nothing there)."""
        row = self.rows.get(self._key(key))
        if row is None:
            return default
        values = row.insert if row.insert is not None else row.sets
        return values.get(column, default)

    def __len__(self) -> int:
        return len(self.rows)

    def write(self, curs) -> None:
        if not self.rows:
            return
        updates: dict[tuple, list] = {}
        inserts: dict[tuple, list] = {}
        for key, row in self.rows.items():
            if row.sets or row.adds:
                updates.setdefault((tuple(row.sets), tuple(row.adds)), []).append(
                    (*key, *row.sets.values(), *row.adds.values()))
            if row.insert is not None:
                inserts.setdefault(tuple(row.insert), []).append(tuple(row.insert.values()))
        for (sets, adds), rows in updates.items():
            self._update(curs, sets, adds, rows)
        for columns, rows in inserts.items():
            self._insert(curs, columns, rows)
        self.rows.clear()

    def _update(self, curs, sets: tuple, adds: tuple, rows: list[tuple]) -> None:
        target = sql.Identifier(self.table)
        if bulk(curs, rows):
            types = column_types(curs, self.table)
            staged = stage(curs, [(c, types[c]) for c in (*self.key, *sets, *adds)], rows)
            assignments = [sql.SQL("{} = v.{}").format(sql.Identifier(c), sql.Identifier(c))
                           for c in sets]
            assignments += [sql.SQL("{} = t.{} + v.{}").format(
                sql.Identifier(c), sql.Identifier(c), sql.Identifier(c)) for c in adds]
            match = sql.SQL(" AND ").join(sql.SQL("t.{} = v.{}").format(
                sql.Identifier(c), sql.Identifier(c)) for c in self.key)
            curs.execute(sql.SQL("UPDATE {} AS t SET {} FROM {} AS v WHERE {}").format(
                target, sql.SQL(", ").join(assignments), staged, match))
            return
        # Parameters in the staged order: key, sets, adds; the key goes last in SQL.
        assignments = [sql.SQL("{} = %(s{})s").format(sql.Identifier(c), sql.SQL(str(i)))
                       for i, c in enumerate(sets)]
        assignments += [sql.SQL("{} = {} + %(a{})s").format(
            sql.Identifier(c), sql.Identifier(c), sql.SQL(str(i))) for i, c in enumerate(adds)]
        match = sql.SQL(" AND ").join(sql.SQL("{} = %(k{})s").format(
            sql.Identifier(c), sql.SQL(str(i))) for i, c in enumerate(self.key))
        names = ([f"k{i}" for i in range(len(self.key))] + [f"s{i}" for i in range(len(sets))]
                 + [f"a{i}" for i in range(len(adds))])
        curs.executemany(sql.SQL("UPDATE {} SET {} WHERE {}").format(
            target, sql.SQL(", ").join(assignments), match),
            [dict(zip(names, row)) for row in rows])

    def _insert(self, curs, columns: tuple, rows: list[tuple]) -> None:
        names = sql.SQL(", ").join(map(sql.Identifier, columns))
        if bulk(curs, rows):
            with curs.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(
                    sql.Identifier(self.table), names)) as copy:
                for row in rows:
                    copy.write_row(row)
            return
        curs.executemany(sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
            sql.Identifier(self.table), names,
            sql.SQL(", ").join(sql.Placeholder() * len(columns))), rows)


def bulk(curs, rows) -> bool:
    """Whether ``rows`` are many enough to stage with COPY, and COPY can run."""
    return len(rows) > BULK_ROWS and curs.connection.pgconn.pipeline_status == 0


def stage(curs, columns: list[tuple[str, str]], rows) -> sql.Identifier:
    """``rows`` copied into a temporary table of ``columns`` (name, SQL type),
    emptied first and dropped at commit; its name, for one set-based statement."""
    shape = ",".join(f"{name} {type_}" for name, type_ in columns)
    name = sql.Identifier("fold_" + hashlib.md5(shape.encode()).hexdigest()[:16])
    curs.execute(sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} ({}) ON COMMIT DROP").format(
        name, sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(n), sql.SQL(t))
                                 for n, t in columns)))
    curs.execute(sql.SQL("TRUNCATE {}").format(name))
    with curs.copy(sql.SQL("COPY {} FROM STDIN").format(name)) as copy:
        for row in rows:
            copy.write_row(row)
    return name


_COLUMN_TYPES: dict[str, dict[str, str]] = {}


def column_types(curs, table: str) -> dict[str, str]:
    """``{column: SQL type}`` of ``table`` (read once per process)."""
    types = _COLUMN_TYPES.get(table)
    if types is None:
        curs.execute("SELECT attname, format_type(atttypid, atttypmod) AS type "
                     "FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
                     "AND NOT attisdropped", (table,))
        types = _COLUMN_TYPES[table] = {r["attname"]: r["type"] for r in curs.fetchall()}
    return types


# -- the projector ------------------------------------------------------------------
class _Stored(NamedTuple):
    """A stored event as the library's mapper reads it."""

    originator_id: Any
    originator_version: int
    topic: str
    state: bytes


class EventDecoder:
    """The library mapper's ``to_domain_event`` for a page of events, with what
    it looks up per event (the class, the id convertor, the class version)
    looked up once per topic. Anything unusual (a mapper of another kind, an
    error) goes through the library's own method, which raises its own error."""

    def __init__(self, mapper):
        self.mapper = mapper
        self.fast = type(mapper) is Mapper
        self.topics: dict[str, tuple] = {}

    def __call__(self, originator_id, version: int, topic: str, state: bytes):
        if not self.fast:
            return self.mapper.to_domain_event(_Stored(originator_id, version, topic, state))
        try:
            cls, convert, class_version = self.topics[topic]
        except KeyError:
            cls = resolve_topic(topic)
            found = self.topics[topic] = (
                cls, find_id_convertor(cls, type(originator_id)),
                getattr(cls, "class_version", 1))
            cls, convert, class_version = found
        mapper = self.mapper
        try:
            if mapper.cipher:
                state = mapper.cipher.decrypt(state)
            if mapper.compressor:
                state = mapper.compressor.decompress(state)
            event_state = mapper.transcoder.decode(state)
        except Exception:
            return mapper.to_domain_event(_Stored(originator_id, version, topic, state))
        event_state["originator_id"] = convert(originator_id)
        event_state["originator_version"] = version
        from_version = event_state.pop("class_version", 1)
        while from_version < class_version:
            getattr(cls, f"upcast_v{from_version}_v{from_version + 1}")(event_state)
            from_version += 1
        event = object.__new__(cls)
        object.__setattr__(event, "__dict__", event_state)
        return event


class _Item:
    """One event of a page: where it is, and its decoded event (None where no
    projection handles it) or the error decoding it raised."""

    __slots__ = ("position", "originator", "version", "topic", "event_id", "event", "error",
                 "targets")

    def __init__(self, position, originator, version, topic, event, error, targets):
        self.position = position
        self.originator = originator
        self.version = version
        self.topic = topic
        self.event_id = f"{originator}:{version}"
        self.event = event
        self.error = error
        self.targets = targets  # the projections that handle it


class Projector:
    def __init__(self, app, projections: list[Projection], name: str = "read_models",
                 service: str = "", batch_size: int = 2000, rebuild_batch_size: int = 10000):
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
        applied = 0
        position = self._lock_and_read_position(curs)
        while True:
            count = self._apply_next_batch(curs, position)
            applied += count
            if count < self.batch_size:
                return applied  # the events table stays locked until this commits
            position = self._read_position(curs)

    def _catch_up(self) -> int:
        applied = 0
        while True:
            with self.app.transaction() as curs:
                position = self._lock_and_read_position(curs)
                count = self._apply_next_batch(curs, position)
            applied += count
            # A short page was the end of the log when it was read: what the
            # caller saved before is applied (later events: the next catch-up).
            if count < self.batch_size:
                return applied

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
        with curs.connection.cursor(row_factory=tuple_row, binary=True) as page:
            page.execute(
                f'SELECT notification_id, originator_id, originator_version, topic, state '
                f'FROM "{recorder.datastore.schema}"."{recorder.events_table_name}" '
                f'WHERE notification_id > %s ORDER BY notification_id LIMIT %s',
                (after_position, limit))
            rows = page.fetchall()
        decode = EventDecoder(self.app.mapper)
        targets_of: dict[str, tuple] = {}
        items = []
        for position, originator, version, topic, state in rows:
            event = error = None
            targets = targets_of.get(topic)
            if targets is None:
                targets = targets_of[topic] = self._targets(topic)
            if targets:
                try:
                    event = decode(originator, version, topic, state)
                except Exception as exc:  # parked when it is applied, as a handler's error
                    error = exc
            items.append(_Item(position, str(originator), version, topic, event, error,
                               targets))
        return items

    def _targets(self, topic: str) -> tuple:
        """The projections that handle events of ``topic`` (all of them for one
        that cannot be resolved: decoding it raises, and that parks it)."""
        try:
            cls = resolve_topic(topic)
        except Exception:
            return tuple(self.projections)
        return tuple(p for p in self.projections
                     if p.wants(cls) or type(p).apply is not Projection.apply)

    # -- applying a page -------------------------------------------------------------
    def _apply_next_batch(self, curs, position: int, skipped: frozenset | set = frozenset(),
                          limit: int | None = None) -> int:
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
        error if one raised (transient errors are raised: nothing is parked)."""
        try:
            with curs.connection.transaction():
                pending: dict = {}
                for item in items:
                    self._apply_or_hold(curs, item, heads, skipped, pending)
                write_pending(curs, pending)
            return None
        except Exception as exc:
            if is_transient(exc):
                raise
            return exc

    def _apply_or_hold(self, curs, item: _Item, heads: dict, skipped, pending: dict) -> None:
        """Apply one event, or hold it behind its record's parked event."""
        if item.event_id in skipped:
            return
        if item.originator in heads:
            self.parking.hold(curs, behind=heads[item.originator], event_id=item.event_id,
                              originator_id=item.originator, version=item.version,
                              event_type=_event_type(item.topic), position=item.position)
            return
        if item.error is not None:
            raise item.error
        for projection in item.targets:
            projection.apply_in(curs, item.event, pending)

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
