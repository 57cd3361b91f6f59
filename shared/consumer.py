"""Idempotent, ordered consumption of another service's events.

``Inbox.process`` applies an event's effect and records what it applied in the
same transaction. Per aggregate it applies version n only after n-1:
  * a version already applied is a duplicate (redelivery): acknowledged, skipped;
  * a version whose predecessor is missing waits a little for it (another
    worker or instance may be applying it), then raises ``OutOfOrder``: the
    message goes back to the queue and is tried again, never applied early.

Consumers subscribe to every event type of a source (routing key ``#``) so that
an aggregate's versions form an unbroken sequence.

An effect that keeps raising (``max_attempts`` times, counted in
``inbox_failures``) parks its event (``shared.parking``): the message is
acknowledged, the event recorded with its error, and later events of that
aggregate are held behind it (acknowledged too) until ops retry or skip it over
RPC; other aggregates go on. A skip advances ``last_version`` so those held
behind it apply.
"""
from __future__ import annotations

import contextlib
import logging
import time
import uuid
from typing import Callable

import eventlet
from eventlet.semaphore import Semaphore

from shared import metrics
from shared.parking import (CONSUMER, HELD, PARKED, Gap, ParkingLot, describe_error,
                            is_transient, load_envelope, safe_json, safe_text)

log = logging.getLogger(__name__)

INBOX_DDL = (
    """CREATE TABLE IF NOT EXISTS inbox_positions (
        consumer text NOT NULL,
        originator_id uuid NOT NULL,
        last_version integer NOT NULL DEFAULT 0,
        last_event_position bigint,
        applied_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (consumer, originator_id)
    )""",
    """CREATE TABLE IF NOT EXISTS inbox_failures (
        consumer text NOT NULL,
        event_id text NOT NULL,
        attempts integer NOT NULL DEFAULT 1,
        last_error text NOT NULL,
        envelope jsonb NOT NULL,
        first_failed_at timestamptz NOT NULL DEFAULT now(),
        last_failed_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (consumer, event_id)
    )""",
)

APPLIED, DUPLICATE = "applied", "duplicate"
# Outcome of a batch's delivery that goes back on the queue (tried again later).
DEFERRED = "deferred"
# Outcomes of an event parked (its effect failed) or held behind a parked one.
PARKED_OUTCOME, HELD_OUTCOME = PARKED, HELD


class EffectFailed(Exception):
    """The effect of ``envelope`` (an earlier event read to fill a gap) raised."""

    def __init__(self, envelope: dict, cause: BaseException):
        super().__init__(f"{envelope.get('event_id')}: {type(cause).__name__}: {cause}")
        self.envelope = envelope
        self.cause = cause


class _BatchEffectFailed(Exception):
    """The effect of the batch's ``index``-th envelope raised ``cause``."""

    def __init__(self, index: int, cause: Exception):
        super().__init__(str(cause))
        self.index = index
        self.cause = cause


def _position(envelope: dict) -> int | None:
    position = envelope.get("position")
    return int(position) if isinstance(position, int) else None


class OutOfOrder(Exception):
    """An event arrived before its predecessor was applied; it will be redelivered."""

    def __init__(self, message: str, last_applied: int = 0):
        super().__init__(message)
        self.last_applied = last_applied


class KeyedLocks:
    """One lock per key, handed out in the order green threads ask for it.

    Nameko starts a worker per message in delivery order, so taking the
    aggregate's lock first makes one instance apply an aggregate's events in
    the order RabbitMQ delivered them, without bouncing them off the queue.
    """

    def __init__(self):
        self._locks: dict[str, list] = {}  # key -> [semaphore, users]

    @contextlib.contextmanager
    def hold(self, key: str):
        entry = self._locks.setdefault(key, [Semaphore(1), 0])
        entry[1] += 1
        try:
            with entry[0]:
                yield
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                self._locks.pop(key, None)


class BatchEffect:
    """The effect of one batch's events (``Inbox.handle_batch``'s ``batched``):
    called as ``effect(curs, envelope)`` in the batch's order, it may apply an
    event at once or fold it into pending set-based writes; ``flush(curs)``
    writes what is pending (before any effect that must see it, and once at
    the end of the batch, in the batch's transaction)."""

    def __call__(self, curs, envelope: dict) -> None:  # pragma: no cover - protocol
        raise NotImplementedError

    def flush(self, curs) -> None:  # pragma: no cover - protocol
        raise NotImplementedError


class Inbox:
    def __init__(self, app, consumer: str, service: str, wait_for_predecessor: float = 2.0,
                 gap_fill_after: float = 0.5, retry_pause: float = 0.05,
                 failure_pause: float = 1.0, max_attempts: int = 3,
                 effect: Callable[[object, dict], None] | None = None):
        self.app = app
        self.consumer = consumer
        self.service = service
        # How long a worker waits for another worker (or instance) to apply an
        # event's predecessor before the event goes back to the queue.
        self.wait_for_predecessor = wait_for_predecessor
        # With a way to read the source's log, a gap is filled sooner than that.
        self.gap_fill_after = gap_fill_after
        self.retry_pause = retry_pause
        self.failure_pause = failure_pause
        # An effect that raised this many times parks its event.
        self.max_attempts = max(1, int(max_attempts))
        # The effect ops' retries apply (``handle`` may be given its own per call).
        self.effect = effect
        self.locks = KeyedLocks()
        with app.transaction() as curs:
            curs.execute("SELECT pg_advisory_xact_lock(hashtext('inbox_ddl'))")
            for statement in INBOX_DDL:
                curs.execute(statement)
        self.parking = ParkingLot(app, CONSUMER, consumer, service)
        self.parking.resolver = self._resolve_parked
        self.parking.owner = self

    def process(self, envelope: dict, effect: Callable[[object, dict], None]) -> str:
        """Apply ``effect(curs, envelope)`` once, in order, atomically with tracking.

        While an earlier event of the aggregate is parked, this one is held
        behind it (recorded, not applied): ``HELD_OUTCOME``.
        """
        originator_id = envelope["originator_id"]
        version = int(envelope["originator_version"])
        with self.app.transaction() as curs:
            last = self._lock_position(curs, originator_id)
            if version <= last:
                return DUPLICATE
            waiting = self.parking.open_rows(curs, originator_id)
            if waiting:
                if any(r["event_id"] == envelope["event_id"] for r in waiting):
                    return HELD_OUTCOME if waiting[0]["event_id"] != envelope["event_id"] \
                        else PARKED_OUTCOME
                if waiting[0]["status"] == PARKED or version != last + 1:
                    head = waiting[0]
                    self.parking.hold(
                        curs, event_id=envelope["event_id"], originator_id=originator_id,
                        version=version, event_type=envelope.get("type", ""),
                        behind=head["event_id"] if head["status"] == PARKED
                        else head["waiting_behind"] or head["event_id"],
                        position=envelope.get("position"), envelope=envelope)
                    return HELD_OUTCOME
            if version > last + 1:
                raise OutOfOrder(
                    f"{envelope['event_id']} arrived before version {last + 1} was applied",
                    last_applied=last)
            self._apply(curs, envelope, effect)
            if waiting:  # the predecessor the held ones were waiting for arrived
                self.parking.release(curs, originator_id,
                                     lambda row: self._apply_held(curs, row, effect),
                                     skip_head=False, actor=("inbox", "system"),
                                     reason=f"{envelope['event_id']} arrived")
        return APPLIED

    def _lock_position(self, curs, originator_id) -> int:
        curs.execute(
            "INSERT INTO inbox_positions (consumer, originator_id) VALUES (%s, %s) "
            "ON CONFLICT DO NOTHING", (self.consumer, originator_id))
        curs.execute(
            "SELECT last_version FROM inbox_positions "
            "WHERE consumer = %s AND originator_id = %s FOR UPDATE",
            (self.consumer, originator_id))
        return int(curs.fetchone()["last_version"])

    def _apply(self, curs, envelope: dict, effect) -> None:
        effect(curs, envelope)
        self._advance(curs, envelope)
        curs.execute("DELETE FROM inbox_failures WHERE consumer = %s AND event_id = %s",
                     (self.consumer, envelope["event_id"]))

    def _advance(self, curs, envelope: dict) -> None:
        curs.execute(
            "UPDATE inbox_positions SET last_version = %s, last_event_position = %s, "
            "applied_at = now() WHERE consumer = %s AND originator_id = %s",
            (int(envelope["originator_version"]), envelope.get("position"), self.consumer,
             envelope["originator_id"]))

    def _apply_held(self, curs, row: dict, effect) -> None:
        """Apply a parked or held event (its stored envelope), in version order."""
        curs.execute("SELECT last_version FROM inbox_positions "
                     "WHERE consumer = %s AND originator_id = %s",
                     (self.consumer, row["originator_id"]))
        found = curs.fetchone()
        last = int(found["last_version"]) if found else 0
        if row["originator_version"] != last + 1:
            raise Gap(f"version {last + 1} of {row['originator_id']} not received yet")
        self._apply(curs, load_envelope(row["envelope"]), effect)

    def park(self, envelope: dict, error: str) -> str:
        """Record ``envelope`` as parked (unless it was applied meanwhile)."""
        originator_id = envelope["originator_id"]
        with self.app.transaction() as curs:
            try:
                with curs.connection.transaction():
                    last = self._lock_position(curs, originator_id)
            except Exception as exc:  # e.g. not a uuid: park it all the same
                if is_transient(exc):
                    raise
                last = -1
            if int(envelope["originator_version"]) <= last:
                return DUPLICATE
            self.parking.park(
                curs, event_id=envelope["event_id"], originator_id=originator_id,
                version=int(envelope["originator_version"]), event_type=envelope.get("type", ""),
                error=error, position=envelope.get("position"), envelope=envelope)
            curs.execute("DELETE FROM inbox_failures WHERE consumer = %s AND event_id = %s",
                         (self.consumer, safe_text(envelope["event_id"], None)))
        return PARKED_OUTCOME

    def status(self) -> dict:
        """What ``consumer_status`` shows of this consumer's parked events."""
        return self.parking.summary()

    def process_or_park(self, envelope: dict, effect) -> str:
        """``process``, parking the event at once if its effect raises (for
        replays ops start, e.g. a directory backfill: no redelivery to wait for)."""
        try:
            return self.process(envelope, effect)
        except OutOfOrder:
            raise
        except Exception as exc:
            if is_transient(exc):
                raise
            return self.park(envelope, describe_error(exc))

    def _resolve_parked(self, originator_id: str, parked_id: int, skip: bool,
                        actor: tuple[str, str], reason: str) -> dict:
        """Ops' retry or skip: under the aggregate's lock and its position row."""
        from shared.errors import ValidationError

        if self.effect is None:
            raise ValidationError.single("parked_id", f"{self.consumer} cannot replay events")
        effect = self.effect
        with self.locks.hold(str(originator_id)):
            with self.app.transaction() as curs:
                self._lock_position(curs, originator_id)
                return self.parking.release(
                    curs, originator_id, lambda row: self._apply_held(curs, row, effect),
                    skip_head=skip, actor=actor, reason=reason, parked_id=parked_id,
                    on_skip=lambda row: self._advance(curs, load_envelope(row["envelope"])))

    def handle(self, envelope: dict, effect: Callable[[object, dict], None],
               fill_gap: Callable[[str, int], list] | None = None) -> str:
        """``process`` with metrics and the redelivery policy of an entrypoint.

        ``fill_gap(originator_id, after_version)``, when given, reads the
        aggregate's events from the source's own log (e.g. its
        ``read_aggregate_events`` RPC): a predecessor still missing after a short
        wait is then fetched and applied first, so an event this consumer never
        received (its queue did not exist yet, or was lost) does not hold the
        aggregate up for good.
        """
        source = envelope.get("source", "?")
        labels = (self.service, self.consumer, source)
        try:
            with self.locks.hold(str(envelope["originator_id"])):
                try:
                    outcome = self._process_when_predecessor_applied(
                        envelope, effect,
                        self.gap_fill_after if fill_gap else self.wait_for_predecessor)
                except OutOfOrder as gap:
                    if fill_gap is None:
                        raise
                    self._fill_gap(envelope, effect, gap.last_applied, fill_gap, labels)
                    outcome = self.process(envelope, effect)
        except OutOfOrder:
            metrics.EVENTS_CONSUMED.labels(*labels, "deferred").inc()
            raise
        except Exception as exc:
            failed, cause = ((exc.envelope, exc.cause) if isinstance(exc, EffectFailed)
                             else (envelope, exc))
            metrics.EVENTS_CONSUMED.labels(*labels, "failed").inc()
            metrics.CONSUMER_FAILURES.labels(*labels).inc()
            log.exception("consumer %s failed on %s", self.consumer,
                          safe_text(failed.get("event_id"), 200))
            attempts = self._record_failure(failed, cause)
            if is_transient(cause) or attempts < self.max_attempts:
                eventlet.sleep(self.failure_pause)
                raise
            outcome = self._park_and_go_on(envelope, failed, effect, cause)
        metrics.EVENTS_CONSUMED.labels(*labels, outcome).inc()
        return outcome

    def _park_and_go_on(self, envelope: dict, failed: dict, effect, cause) -> str:
        """The effect raised ``max_attempts`` times: park the failed event; the
        message is then acknowledged (when it was an earlier event read to fill
        a gap, this one is held behind it)."""
        with self.locks.hold(str(envelope["originator_id"])):
            outcome = self.park(failed, describe_error(cause))
            if failed is not envelope:
                outcome = self.process(envelope, effect)
        return outcome

    def _fill_gap(self, envelope: dict, effect, last_applied: int, fill_gap, labels) -> None:
        version = int(envelope["originator_version"])
        missing = sorted(fill_gap(str(envelope["originator_id"]), last_applied),
                         key=lambda e: int(e["originator_version"]))
        for earlier in missing:
            if int(earlier["originator_version"]) < version:
                try:
                    outcome = self.process(earlier, effect)
                except OutOfOrder:
                    raise
                except Exception as exc:
                    raise EffectFailed(earlier, exc) from exc
                metrics.EVENTS_CONSUMED.labels(*labels, f"gap_{outcome}").inc()

    def _process_when_predecessor_applied(self, envelope: dict, effect, wait: float) -> str:
        deadline = time.monotonic() + wait
        while True:
            try:
                return self.process(envelope, effect)
            except OutOfOrder:
                if time.monotonic() >= deadline:
                    raise
                eventlet.sleep(self.retry_pause)

    def _record_failure(self, envelope: dict, exc: BaseException) -> int:
        """Count a failed attempt (whatever the envelope and error hold); returns
        the attempts so far, 0 if even that could not be recorded."""
        from psycopg.types.json import Jsonb

        try:
            with self.app.transaction() as curs:
                curs.execute(
                    "INSERT INTO inbox_failures (consumer, event_id, last_error, envelope) "
                    "VALUES (%s, %s, %s, %s) ON CONFLICT (consumer, event_id) DO UPDATE SET "
                    "attempts = inbox_failures.attempts + 1, last_error = EXCLUDED.last_error, "
                    "last_failed_at = now() RETURNING attempts",
                    (self.consumer, safe_text(envelope.get("event_id", "?"), None),
                     describe_error(exc), Jsonb(safe_json(envelope))))
                return int(curs.fetchone()["attempts"])
        except Exception:
            log.exception("could not record the failure of %s",
                          safe_text(envelope.get("event_id"), 200))
            return 0

    # -- batches --------------------------------------------------------------
    def handle_batch(self, envelopes: list[dict], effect: Callable[[object, dict], None],
                     fill_gap: Callable[[str, int], list] | None = None,
                     batched: Callable[[], "BatchEffect"] | None = None) -> list[str]:
        """Apply a batch of deliveries: in one transaction, with their inbox
        positions, every event that follows its aggregate's last applied one;
        returns each envelope's outcome, in order (``DEFERRED``: put it back on
        the queue, it is tried again later).

        Per aggregate, the batch's events are taken in version order; one
        already applied is a ``DUPLICATE``. An event with a missing predecessor,
        or of an aggregate with parked or held events, or malformed, goes the
        way of a single delivery (``handle``: wait for or fetch the predecessor,
        hold, park) after the batch committed. An effect that raises rolls the
        batch back: the failure is counted (``inbox_failures``) and the batch
        applied again without that aggregate (deferred), or, at the
        ``max_attempts``-th failure, with the event parked and its aggregate's
        later events held behind it; the rest of the batch is applied either way.

        ``batched``, when given, makes the first (pipelined) attempt's effect: a
        ``BatchEffect`` that may fold events into set-based writes, written by
        its ``flush`` before the positions are saved. Where that attempt fails,
        the batch is applied again with ``effect``, one event at a time, so an
        error is still tied to its event.
        """
        outcomes: list[str | None] = [None] * len(envelopes)
        groups, odd = self._group(envelopes)
        deferred: set[str] = set()  # aggregates whose event failed (not yet parked)
        failed = False
        # First pipelined (psycopg pipeline mode: the effects' statements are
        # sent without waiting for each answer); an error there is not tied to
        # its statement, so the batch is then applied again statement by statement.
        pipelined = True
        while True:
            try:
                slow = self._apply_batch(envelopes, groups, deferred,
                                         batched() if pipelined and batched else effect,
                                         outcomes, pipelined)
                break
            except Exception as exc:
                if not pipelined:
                    if isinstance(exc, _BatchEffectFailed):
                        failure = exc
                    else:
                        raise
                else:
                    pipelined = False
                    for index in range(len(outcomes)):
                        outcomes[index] = None
                    continue
                envelope, cause = envelopes[failure.index], failure.cause
                source = envelope.get("source", "?")
                metrics.EVENTS_CONSUMED.labels(self.service, self.consumer, source,
                                               "failed").inc()
                metrics.CONSUMER_FAILURES.labels(self.service, self.consumer, source).inc()
                if is_transient(cause):
                    eventlet.sleep(self.failure_pause)
                    raise cause
                log.error("consumer %s failed on %s: %s", self.consumer,
                          safe_text(envelope.get("event_id"), 200), describe_error(cause))
                attempts = self._record_failure(envelope, cause)
                if attempts < self.max_attempts:
                    deferred.add(str(envelope["originator_id"]))
                    failed = True
                else:  # parked now: the batch again, its aggregate held behind it
                    with self.locks.hold(str(envelope["originator_id"])):
                        self.park(envelope, describe_error(cause))
        for aggregate in deferred:
            for index in groups[aggregate]:
                outcomes[index] = DEFERRED
        # The unusual ones, one by one as single deliveries (after the commit).
        stalled: set[str] = set()
        for index in odd + slow:
            envelope = envelopes[index]
            aggregate = str(envelope.get("originator_id"))
            if aggregate in stalled:
                outcomes[index] = DEFERRED
                continue
            try:
                outcomes[index] = self.handle(envelope, effect, fill_gap)
            except Exception:  # counted and logged by handle; tried again later
                outcomes[index] = DEFERRED
                stalled.add(aggregate)
        if failed:
            eventlet.sleep(self.failure_pause)  # not straight back
        return outcomes

    @staticmethod
    def _group(envelopes: list[dict]) -> tuple[dict[str, list[int]], list[int]]:
        """``{aggregate id: indexes in version order}``, and the indexes of
        malformed envelopes (left to ``handle``, which parks what it cannot apply)."""
        groups: dict[str, list[int]] = {}
        odd = []
        for index, envelope in enumerate(envelopes):
            try:
                aggregate = str(uuid.UUID(str(envelope["originator_id"])))
                int(envelope["originator_version"])
                str(envelope["event_id"])
            except (KeyError, TypeError, ValueError, AttributeError):
                odd.append(index)
                continue
            if aggregate != envelope["originator_id"]:
                odd.append(index)  # not in canonical form: as a single delivery
                continue
            groups.setdefault(aggregate, []).append(index)
        for indexes in groups.values():
            indexes.sort(key=lambda i: int(envelopes[i]["originator_version"]))
        return groups, odd

    def _apply_batch(self, envelopes, groups, deferred, effect, outcomes,
                     pipelined: bool = False) -> list[int]:
        """One transaction: lock the batch's positions (in id order: no deadlock
        with another instance's batch), apply what follows on, save positions.
        Returns the indexes left for ``handle``."""
        aggregates = sorted(a for a in groups if a not in deferred)
        slow: list[int] = []
        if not aggregates:
            return slow
        applied: list[dict] = []
        with self.app.transaction() as curs:
            curs.execute(
                "INSERT INTO inbox_positions (consumer, originator_id) "
                "SELECT %s, id FROM unnest(%s::uuid[]) AS id ORDER BY id "
                "ON CONFLICT DO NOTHING", (self.consumer, aggregates))
            curs.execute(
                "SELECT originator_id, last_version FROM inbox_positions "
                "WHERE consumer = %s AND originator_id = ANY(%s::uuid[]) "
                "ORDER BY originator_id FOR UPDATE", (self.consumer, aggregates))
            last = {str(r["originator_id"]): int(r["last_version"]) for r in curs.fetchall()}
            curs.execute(
                "SELECT DISTINCT originator_id FROM parked_events WHERE component = %s "
                "AND status IN ('parked', 'held') AND originator_id = ANY(%s)",
                (self.consumer, aggregates))
            waiting = {r["originator_id"] for r in curs.fetchall()}
            newest: dict[str, dict] = {}
            pipeline = curs.connection.pipeline() if pipelined else contextlib.nullcontext()
            with pipeline:
                self._apply_in_order(curs, envelopes, groups, aggregates, last, waiting,
                                     effect, outcomes, newest, applied, slow)
                flush = getattr(effect, "flush", None)
                if flush is not None:
                    flush(curs)
                if newest:
                    self._save_positions(curs, newest, applied)
        for envelope in applied:
            metrics.EVENTS_CONSUMED.labels(self.service, self.consumer,
                                           envelope.get("source", "?"), APPLIED).inc()
        return slow

    @staticmethod
    def _apply_in_order(curs, envelopes, groups, aggregates, last, waiting, effect, outcomes,
                        newest, applied, slow) -> None:
        """Each aggregate's events that follow on its last applied version, in
        version order; the first that does not (a gap, or its aggregate waits
        behind a parked event) and the rest of that aggregate go to ``slow``."""
        for aggregate in aggregates:
            version = last[aggregate]
            for position, index in enumerate(groups[aggregate]):
                envelope = envelopes[index]
                this = int(envelope["originator_version"])
                if this <= version:
                    outcomes[index] = DUPLICATE
                    continue
                if aggregate in waiting or this != version + 1:
                    slow += [i for i in groups[aggregate][position:]
                             if int(envelopes[i]["originator_version"]) > version]
                    break
                try:
                    effect(curs, envelope)
                except Exception as exc:
                    raise _BatchEffectFailed(index, exc) from exc
                version = this
                newest[aggregate] = envelope
                applied.append(envelope)
                outcomes[index] = APPLIED

    def _save_positions(self, curs, newest: dict[str, dict], applied: list[dict]) -> None:
        """Each aggregate's last applied version in one statement; the failures
        recorded for what is now applied cleared in one more."""
        curs.execute(
            "UPDATE inbox_positions AS p SET last_version = v.version, "
            "last_event_position = v.position, applied_at = now() "
            "FROM unnest(%s::uuid[], %s::int[], %s::bigint[]) AS v(id, version, position) "
            "WHERE p.consumer = %s AND p.originator_id = v.id",
            (list(newest), [int(e["originator_version"]) for e in newest.values()],
             [_position(e) for e in newest.values()], self.consumer))
        curs.execute("DELETE FROM inbox_failures WHERE consumer = %s "
                     "AND event_id = ANY(%s)",
                     (self.consumer, [e["event_id"] for e in applied]))

    def failures(self) -> list[dict]:
        return self.app.query(
            "SELECT consumer, event_id, attempts, last_error, first_failed_at, last_failed_at "
            "FROM inbox_failures WHERE consumer = %s ORDER BY first_failed_at", (self.consumer,))
