"""The event store: an ``eventsourcing`` Application per service on PostgreSQL.

Every change is an event in the service's append-only store, with the actor,
reason and evidence given by the command that caused it. Read models are
projections of that store (``shared.projection``); other services learn of
the events only through the relay (``shared.relay``).
"""
from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, TypeVar
from uuid import UUID

import psycopg
from psycopg import generators
from psycopg.pq import TransactionStatus
from eventsourcing import persistence
from eventsourcing.application import AggregateNotFoundError, Application, project_aggregate
from eventsourcing.persistence import IntegrityError, Notification, ProgrammingError
from psycopg_pool import ConnectionPool
from eventsourcing.postgres import PostgresApplicationRecorder

from shared.config import DatabaseSettings
from shared.envelope import AUDIT, PUBLIC, build_envelope
from shared.dbsetup import ensure_database, setup_service_database  # noqa: F401 (re-exported)
from shared.errors import Conflict, NotFound

A = TypeVar("A")
log = logging.getLogger(__name__)

COMMAND_LOG_DDL = """
CREATE TABLE IF NOT EXISTS command_log (
    command_key text PRIMARY KEY,
    method text NOT NULL,
    caller text NOT NULL,
    result text,
    atomic boolean NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
)"""


@dataclass
class CommandRun:
    """The command a worker is running: its key (see ``shared.entrypoints``)."""

    key: str
    method: str
    caller_sub: str
    recorded: bool = False  # key and result saved with the events
    saved: bool = False  # events saved without recording the key (plain commit)


@dataclass
class CommitTransaction:
    """The transaction a command's events are being recorded in: while its
    result is rendered, reads go through ``curs`` and aggregates this command
    saves are served as saved (the rest of the store is unchanged, since the
    events table is locked until this transaction ends)."""

    curs: Any
    aggregates: dict = field(default_factory=dict)


# The connection one RPC call (a query, or a command up to its commit) runs on:
# (application, psycopg connection); see ``EventSourcedApplication.session``.
_session: contextvars.ContextVar[tuple[Any, Any] | None] = contextvars.ContextVar(
    "lianchuang_session", default=None)
_running_command: contextvars.ContextVar[CommandRun | None] = contextvars.ContextVar(
    "lianchuang_running_command", default=None)
_commit_transaction: contextvars.ContextVar[CommitTransaction | None] = \
    contextvars.ContextVar("lianchuang_commit_transaction", default=None)


class _AbortRecording(BaseException):
    """Carries an error out of the library's insert so that its transaction
    rolls back (it catches ``Exception`` there and would commit the events)."""

    def __init__(self, error: BaseException):
        super().__init__(repr(error))
        self.error = error


# Events per INSERT statement: a save of more events (a 30,000-member import)
# is several statements in the one transaction, each a bounded message.
INSERT_BATCH = 1000


def flush_output(conn) -> None:
    """Send everything libpq still holds for ``conn`` (pipeline mode).

    psycopg (3.3.9) hands a pipeline's statements to libpq in non-blocking mode
    and flushes the socket once more after the last of them
    (``generators.pipeline_communicate``); a statement larger than what the
    socket takes at once (one INSERT of ~10,000 events is megabytes) leaves its
    tail in libpq's buffer. ``Pipeline.sync()`` then waits to *read* results
    (``_fetch_gen(flush=False)``: "the caller may emit a PQpipelineSync() to
    flush") while the server still waits for the rest of the statement
    (``ClientRead``): both sides wait forever — under ``wait_select`` as under
    ``wait_c`` (psycopg issue #685 fixed this on pipeline exit, not on sync).
    This runs the generator a plain ``execute`` flushes with (flush until
    libpq's buffer is empty, reading whatever the server sends meanwhile)."""
    send = getattr(generators, "flush", None) or generators.send  # renamed after 3.3
    conn.wait(send(conn.pgconn))


class CommandRecorder(PostgresApplicationRecorder):
    """The library's recorder, with two changes:

    * a save of many events is inserted in statements of ``INSERT_BATCH``
      events (``executemany`` in the library's pipeline, in its one transaction,
      after its events-table lock and NOTIFY: the notification ids stay in
      insert order and commit order), and libpq's buffer is flushed before the
      pipeline syncs (``flush_output`` says why), so a 30,000-member import is
      one atomic save;
    * one hook: ``within_transaction(curs)`` runs after the events are
      inserted, in their transaction (the events table lock still held).
      Commands use it to bring read models up to date and record their key and
      result atomically with their events."""

    def _insert_stored_events(self, curs, stored_events, **kwargs) -> None:
        # The lock and NOTIFY first, on a cursor of their own: ``curs`` keeps only
        # the INSERTs' result sets (executemany in a pipeline adds to, rather than
        # replaces, what the cursor holds).
        with curs.connection.cursor() as first:
            self._lock_table(first)
            self._notify_channel(first)
        rows = [self.construct_pg_stored_event(e.originator_id, e.originator_version,
                                               e.topic, e.state) for e in stored_events]
        batches = [(rows[i:i + INSERT_BATCH],) for i in range(0, len(rows), INSERT_BATCH)]
        if len(batches) == 1:
            curs.execute(self.insert_events_statement, batches[0])
        else:
            curs.executemany(self.insert_events_statement, batches, returning=True)
        flush_output(curs.connection)

    def _fetch_ids_after_insert_events(self, curs, stored_events, **kwargs):
        ids: list[int] = []
        while True:  # one result set per INSERT statement, in order
            ids += [row["notification_id"] for row in curs.fetchall()]
            if not curs.nextset():
                break
        if len(ids) != len(stored_events):
            raise ProgrammingError(f"got {len(ids)} notification ids for "
                                   f"{len(stored_events)} events")
        within = kwargs.get("within_transaction")
        if within is not None:
            try:
                within(curs)
            except BaseException as exc:  # noqa: B036 - re-raised by commit()
                raise _AbortRecording(exc) from None
        return ids


class EventSourcedApplication(Application[UUID]):
    """Base of each service's application (one bounded context each).

    Adds what every service needs around the library's Application: a
    transaction on the same database for read models, typed not-found and
    conflict errors, and the projector that keeps read models current.
    """

    def __init__(self, settings: DatabaseSettings, **kwargs: Any):
        self.settings = settings
        if not settings.role:
            # No role of its own: the service is its database's administrator
            # and sets it up itself (tables, append-only trigger, hash chain).
            setup_service_database(settings, self.name)
        # The library creates its tables on start (unless a service role
        # connects: setup made them); instances starting together take turns.
        with psycopg.connect(settings.conninfo(), autocommit=True) as conn:
            conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (f"{self.name}:schema",))
            try:
                env = settings.eventsourcing_env()
                # The library prefers "<APP>_<KEY>" from the process environment
                # over the env passed here, and ORGANIZATIONS_CIPHER_KEY (say) is
                # the name of our secret (the raw secret, not the derived AES key
                # the library needs): pass every value under that name too.
                env.update({f"{self.name.upper()}_{key}": value
                            for key, value in list(env.items())})
                super().__init__(env=env, **kwargs)
            finally:
                conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (f"{self.name}:schema",))
        self._route_through_session(self.recorder.datastore)
        self.projector = None  # set by shared.projection.Projector
        with self.transaction() as curs:
            curs.execute("SELECT pg_advisory_xact_lock(hashtext(%s))",
                         (f"{self.name}:command_log",))
            curs.execute(COMMAND_LOG_DDL)
        # Test hook: called after a command's transaction committed, before its
        # result is returned (to simulate a worker dying just there).
        self.after_command_commit: Callable[[str], None] | None = None

    def _take_snapshots(self, processing_event) -> None:
        """Snapshots of the aggregates just saved, taken from them as they are
        in memory (their state is what was recorded: every pending event was
        applied to them) and put in one append. The library reloads each
        aggregate from its events instead: a 30,000-member import taking a
        branch past its interval reloaded 300 branches of 100 events each.
        An aggregate due a snapshot (an event of it at a multiple of its
        interval) gets one at its present version."""
        if not (self.snapshots and self.snapshotting_intervals):
            return
        due: dict = {}
        for event in processing_event.events:
            aggregate = processing_event.aggregates.get(event.originator_id)
            if aggregate is None:
                continue
            interval = self.snapshotting_intervals.get(type(aggregate))
            if interval is not None and event.originator_version % interval == 0:
                due[aggregate.id] = aggregate
        snapshots = []
        for aggregate in due.values():
            if type(aggregate) in self.snapshotting_projectors or aggregate.pending_events:
                # a projector of its own, or not saved as it is: as the library does
                self.take_snapshot(aggregate.id, version=aggregate.version,
                                   projector_func=self.snapshotting_projectors.get(
                                       type(aggregate), project_aggregate))
                continue
            snapshot_class = getattr(type(aggregate), "Snapshot", type(self).snapshot_class)
            snapshots.append(snapshot_class.take(aggregate))
        if snapshots:
            self.snapshots.put(snapshots)

    # -- infrastructure -------------------------------------------------
    def _route_through_session(self, datastore) -> None:
        """The library's recorders (loading aggregates, appending events, the
        snapshot store) take their connection from ``datastore.get_connection``:
        within a call's ``session`` they get the call's connection while it is
        idle, and a pooled one otherwise (as before)."""
        pooled = datastore.get_connection

        @contextlib.contextmanager
        def get_connection():
            conn = self._session_connection()
            if conn is None:
                with pooled() as conn:
                    yield conn
                return
            with _translated_errors():
                yield conn

        datastore.get_connection = get_connection
        _check_when_idle(datastore.pool)

    @property
    def datastore(self):
        return self.recorder.datastore

    @contextlib.contextmanager
    def transaction(self):
        """A read-model transaction (dict rows) on the service's database
        (inside a command's recording, that transaction)."""
        tx = _commit_transaction.get()
        if tx is not None:
            yield tx.curs
            return
        with self.datastore.transaction(commit=True) as curs:
            yield curs

    @contextlib.contextmanager
    def session(self):
        """One pooled connection for a whole RPC call (``shared.entrypoints``):
        its queries, the command log lookup, the aggregates it loads and the
        append that saves its events all go through it, in autocommit, instead
        of a pool checkout (and a BEGIN/ROLLBACK) per statement. Reads gain no
        consistency from a transaction at READ COMMITTED (each statement has its
        own snapshot), so none is opened; a transaction opened on the connection
        (``transaction()``, the library's append) is its own, and while one is
        open the statements of other code take another pooled connection, as
        they did before."""
        if _session.get() is not None or _commit_transaction.get() is not None:
            yield
            return
        with self.datastore.get_connection() as conn:
            token = _session.set((self, conn))
            try:
                yield
            finally:
                _session.reset(token)

    def _session_connection(self):
        """This call's connection when it is free for a statement of its own
        (idle: no transaction open on it), else None."""
        session = _session.get()
        if session is None or session[0] is not self:
            return None
        conn = session[1]
        if conn.pgconn.transaction_status != TransactionStatus.IDLE or \
                conn._pipeline is not None:  # a pipeline's BEGIN may not be sent yet
            return None
        return conn

    def query(self, sql: str, params: Iterable | dict = ()) -> list[dict]:
        tx = _commit_transaction.get()
        if tx is not None:
            # The library records in pipeline mode: a result's description is
            # known only after fetching, which syncs the pipeline.
            tx.curs.execute(sql, params)
            try:
                return list(tx.curs.fetchall())
            except psycopg.ProgrammingError:  # a statement without rows
                return []
        conn = self._session_connection()
        if conn is not None:
            with _translated_errors():
                curs = conn.execute(sql, params)
                return list(curs.fetchall()) if curs.description else []
        # A pooled connection in autocommit, as the session's: a read gains
        # nothing from BEGIN/ROLLBACK at READ COMMITTED, and psycopg answers a
        # ROLLBACK with DEALLOCATE ALL, dropping the connection's prepared
        # statements (four round trips for one query, each re-planned).
        with self.datastore.get_connection() as conn, _translated_errors():
            curs = conn.execute(sql, params)
            return list(curs.fetchall()) if curs.description else []

    def queries(self, *statements: tuple[str, Iterable | dict]) -> list[list[dict]]:
        """Several read statements in one round trip (a psycopg pipeline): a
        read call that needs a row and the rows around it sends them together
        instead of waiting for each answer in turn. Each statement's rows, in
        order."""
        tx = _commit_transaction.get()
        if tx is not None:  # already pipelined: sent together, synced by the first fetch
            cursors = [tx.curs.connection.cursor() for _ in statements]
            for curs, (sql, params) in zip(cursors, statements):
                curs.execute(sql, params)
            return [list(curs.fetchall()) for curs in cursors]
        conn = self._session_connection()
        # the call's connection, or (no session, or a transaction open on it) a pooled one
        with (contextlib.nullcontext(conn) if conn is not None
              else self.datastore.get_connection()) as conn, _translated_errors():
            with conn.pipeline():
                cursors = [conn.execute(sql, params) for sql, params in statements]
            return [list(curs.fetchall()) for curs in cursors]

    def query_one(self, sql: str, params: Iterable | dict = ()) -> dict | None:
        rows = self.query(sql, params)
        return rows[0] if rows else None

    # -- aggregates ------------------------------------------------------
    @staticmethod
    def _as_uuid(aggregate_id: UUID | str, what: str) -> UUID:
        try:
            return aggregate_id if isinstance(aggregate_id, UUID) else UUID(str(aggregate_id))
        except ValueError:
            raise NotFound(f"{what} {aggregate_id!r} not found (not a valid id)")

    def load(self, aggregate_id: UUID | str, cls: type[A], what: str) -> A:
        """Load an aggregate of the given class or raise ``NotFound`` naming it."""
        aggregate_id = self._as_uuid(aggregate_id, what)
        tx = _commit_transaction.get()
        if tx is not None and aggregate_id in tx.aggregates:
            aggregate = tx.aggregates[aggregate_id]
            if not isinstance(aggregate, cls):
                raise NotFound(f"{what} {aggregate_id} not found")
            return aggregate
        try:
            aggregate = self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            raise NotFound(f"{what} {aggregate_id} not found")
        if not isinstance(aggregate, cls):
            raise NotFound(f"{what} {aggregate_id} not found")
        return aggregate

    def exists(self, aggregate_id: UUID) -> bool:
        tx = _commit_transaction.get()
        if tx is not None and aggregate_id in tx.aggregates:
            return True
        try:
            # Only whether it exists: not the copy the library makes of a cached
            # aggregate for a caller that would change it (its whole state).
            self.repository.get(aggregate_id, deepcopy_from_cache=False)
        except AggregateNotFoundError:
            return False
        return True

    def history(self, aggregate_id: UUID | str, what: str = "record") -> list[dict]:
        """Every event of one aggregate, oldest first, as auditors read them:
        who, when, why, on what evidence, and what changed (personal fields
        included: the ``AUDIT`` form, never published)."""
        envelopes = self.read_aggregate_envelopes(aggregate_id, 0, what, audience=AUDIT)
        if not envelopes:
            raise NotFound(f"{what} {aggregate_id} not found")
        return envelopes

    def notifications_in(self, curs, after_position: int, limit: int) -> list:
        """A page of the notification log read through ``curs`` (an open transaction).

        The projector reads the log on the connection it already holds (with the
        projection lock), never a second pooled one: holding one connection while
        waiting for another is how ten concurrent commands deadlocked the pool.
        """
        recorder = self.recorder
        curs.execute(
            f'SELECT notification_id, originator_id, originator_version, topic, state '
            f'FROM "{recorder.datastore.schema}"."{recorder.events_table_name}" '
            f'WHERE notification_id > %s ORDER BY notification_id LIMIT %s',
            (after_position, limit))
        return [Notification(id=row["notification_id"], originator_id=row["originator_id"],
                             originator_version=row["originator_version"],
                             topic=row["topic"], state=bytes(row["state"]))
                for row in curs.fetchall()]

    def read_envelopes(self, after_position: int = 0, limit: int = 500) -> list[dict]:
        """A page of the notification log as envelopes (as the relay publishes
        them): for consumers catching up on what they missed, and auditors."""
        notifications = self.recorder.select_notifications(start=after_position + 1,
                                                           limit=limit)
        return [build_envelope(self.mapper.to_domain_event(n), n.id, self.name)
                for n in notifications]

    def read_aggregate_envelopes(self, aggregate_id: UUID | str, after_version: int = 0,
                                 what: str = "record", audience: str = PUBLIC) -> list[dict]:
        """One aggregate's events after a version, as envelopes (no log position);
        public unless for the service's own auditors."""
        aggregate_id = self._as_uuid(aggregate_id, what)
        return [build_envelope(event, None, self.name, audience)
                for event in self.events.get(aggregate_id, gt=after_version or None)]

    # -- commands ------------------------------------------------------------
    def run_command(self, key: str | None, method: str, caller, run: Callable[[], Any]) -> Any:
        """Run a command once per key (see ``shared.entrypoints``).

        A key already recorded returns the recorded result and applies
        nothing. Otherwise the command runs; the ``commit(..., result=...)``
        that saves its events records the key and result in the same
        transaction. A command that saved without ``result=`` has its result
        recorded just after (not atomic: documented as such).
        """
        if key is None:
            return run()
        recorded = self._recorded_command(key, method, caller.sub)
        if recorded is not None:
            return recorded
        command = CommandRun(key=key, method=method, caller_sub=caller.sub)
        token = _running_command.set(command)
        try:
            result = run()
        except Conflict:
            recorded = self._recorded_command(key, method, caller.sub)
            if recorded is not None:
                return recorded  # the same command, delivered twice at once
            raise
        finally:
            _running_command.reset(token)
        if not command.recorded and command.saved:
            with self.transaction() as curs:
                curs.execute(
                    "INSERT INTO command_log (command_key, method, caller, result, atomic) "
                    "VALUES (%s, %s, %s, %s, false) ON CONFLICT DO NOTHING",
                    (key, method, caller.sub, _dump_result(result)))
        return result

    def _recorded_command(self, key: str, method: str, caller_sub: str) -> Any | None:
        row = self.query_one("SELECT method, caller, result FROM command_log "
                             "WHERE command_key = %s", (key,))
        if row is None:
            return None
        if row["method"] != method or row["caller"] != caller_sub:
            raise Conflict(f"command_id: already used for {row['method']} by another call; "
                           "choose a new command_id for a new command")
        return json.loads(row["result"]) if row["result"] is not None else {}

    def commit(self, *aggregates, result: Callable[[], Any] | None = None,
               project_inside: bool = True) -> Any:
        """Save in one atomic append; a concurrent writer's version clash is a Conflict.

        Read models are brought up to date before returning, so a portal reads
        its own writes. With ``result`` (what the command answers) inside a
        command that runs under a key, the read models are updated, the
        result rendered and the key recorded in the events' own transaction:
        a worker dying after this commit leaves an answer for the redelivery.

        ``project_inside=False`` (large imports, whose answer reads no read
        model): the key and result are still recorded with the events, but the
        read models catch up after the commit, in the projector's own pages of
        transactions — one transaction updating the same head-count rows tens of
        thousands of times walks ever longer row-version chains.
        """
        command = _running_command.get()
        if command is None or command.recorded or result is None:
            self._save(*aggregates)
            if command is not None:
                command.saved = True
            if self.projector is not None:
                self.projector.catch_up()
            return result() if result is not None else None

        answer: list = []

        def within_transaction(curs):
            if self.projector is not None and project_inside:
                self.projector.catch_up_in(curs)
            token = _commit_transaction.set(CommitTransaction(
                curs, {a.id: a for a in aggregates if a is not None}))
            try:
                value = result()
            finally:
                _commit_transaction.reset(token)
            curs.execute(
                "INSERT INTO command_log (command_key, method, caller, result, atomic) "
                "VALUES (%s, %s, %s, %s, true)",
                (command.key, command.method, command.caller_sub, _dump_result(value)))
            answer.append(value)

        self._save(*aggregates, within_transaction=within_transaction)
        if not answer:  # nothing changed, nothing recorded: answer as usual
            return result()
        command.recorded = True
        if not project_inside and self.projector is not None:
            self.projector.catch_up()
        if self.after_command_commit is not None:
            self.after_command_commit(command.method)
        return answer[0]

    def _save(self, *aggregates, **kwargs) -> None:
        try:
            self.save(*aggregates, **kwargs)
        except _AbortRecording as abort:
            error = abort.error
            if isinstance(error, (IntegrityError, psycopg.IntegrityError)):
                raise Conflict("changed concurrently by someone else; reload and try again"
                               ) from error
            raise error
        except IntegrityError as exc:
            raise Conflict(
                "changed concurrently by someone else; reload and try again"
            ) from exc


# A pooled connection used within this many seconds is handed out as it is; one
# idle for longer is checked first (a round trip), so that connections the server
# dropped meanwhile (a restart, a failover) are replaced, not handed to a caller.
# The library's pre-ping checked every checkout: one extra round trip per statement.
IDLE_CHECK_SECONDS = 2.0


def _check_when_idle(pool) -> None:
    """Check a pooled connection on checkout only when it sat idle for more than
    ``IDLE_CHECK_SECONDS`` (psycopg_pool's ``check`` and ``reset`` callbacks; the
    pool is built by the library, so they are set on it here)."""
    def check(conn):
        if time.monotonic() - getattr(conn, "_lianchuang_returned_at", 0.0) > IDLE_CHECK_SECONDS:
            ConnectionPool.check_connection(conn)

    def reset(conn):
        conn._lianchuang_returned_at = time.monotonic()

    pool._check = check
    pool._reset = reset


@contextlib.contextmanager
def _translated_errors():
    """psycopg's errors as the library's (as its ``get_connection`` raises them):
    callers tell a version clash (``IntegrityError``) and an outage apart by them."""
    try:
        yield
    except psycopg.InterfaceError as e:
        raise persistence.InterfaceError(str(e)) from e
    except psycopg.OperationalError as e:
        raise persistence.OperationalError(str(e)) from e
    except psycopg.DataError as e:
        raise persistence.DataError(str(e)) from e
    except psycopg.IntegrityError as e:
        raise persistence.IntegrityError(str(e)) from e
    except psycopg.InternalError as e:
        raise persistence.InternalError(str(e)) from e
    except psycopg.ProgrammingError as e:
        raise persistence.ProgrammingError(str(e)) from e
    except psycopg.NotSupportedError as e:
        raise persistence.NotSupportedError(str(e)) from e
    except psycopg.DatabaseError as e:
        raise persistence.DatabaseError(str(e)) from e
    except psycopg.Error as e:
        raise persistence.PersistenceError(str(e)) from e


def _dump_result(value: Any) -> str:
    """A command's answer as JSON text (text, not jsonb: an answer is stored
    exactly as given)."""
    from shared.envelope import jsonable

    return json.dumps(jsonable(value), ensure_ascii=False)
