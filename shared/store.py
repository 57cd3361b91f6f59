"""The event store: an ``eventsourcing`` Application per service on PostgreSQL.

Every change is an event in the service's append-only store, with the actor,
reason and evidence given by the command that caused it. Read models are
projections of that store (``shared.projection``); other services learn of
the events only through the relay (``shared.relay``).
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterable, TypeVar
from uuid import UUID

import psycopg
from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import IntegrityError, Notification

from shared.config import DatabaseSettings
from shared.envelope import AUDIT, PUBLIC, build_envelope
from shared.errors import Conflict, NotFound

A = TypeVar("A")


def ensure_database(settings: DatabaseSettings) -> None:
    """Create the service's database if it does not exist yet (idempotent)."""
    with psycopg.connect(settings.conninfo("postgres"), autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (settings.dbname,)
        ).fetchone()
        if exists:
            return
        try:
            conn.execute(f'CREATE DATABASE "{settings.dbname}"')
        except (psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
            pass  # another instance created it at the same moment


class EventSourcedApplication(Application[UUID]):
    """Base of each service's application (one bounded context each).

    Adds what every service needs around the library's Application: a
    transaction on the same database for read models, typed not-found and
    conflict errors, and the projector that keeps read models current.
    """

    def __init__(self, settings: DatabaseSettings, **kwargs: Any):
        ensure_database(settings)
        self.settings = settings
        # The library creates its tables on start; two instances starting on a
        # fresh database at once would race on CREATE TABLE, so they take turns.
        with psycopg.connect(settings.conninfo(), autocommit=True) as conn:
            conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (f"{self.name}:schema",))
            try:
                super().__init__(env=settings.eventsourcing_env(), **kwargs)
            finally:
                conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (f"{self.name}:schema",))
        self.projector = None  # set by shared.projection.Projector

    # -- infrastructure -------------------------------------------------
    @property
    def datastore(self):
        return self.recorder.datastore

    @contextlib.contextmanager
    def transaction(self):
        """A read-model transaction (dict rows) on the service's database."""
        with self.datastore.transaction(commit=True) as curs:
            yield curs

    def query(self, sql: str, params: Iterable | dict = ()) -> list[dict]:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(sql, params)
            return list(curs.fetchall()) if curs.description else []

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
        try:
            aggregate = self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            raise NotFound(f"{what} {aggregate_id} not found")
        if not isinstance(aggregate, cls):
            raise NotFound(f"{what} {aggregate_id} not found")
        return aggregate

    def exists(self, aggregate_id: UUID) -> bool:
        try:
            self.repository.get(aggregate_id)
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

    def commit(self, *aggregates) -> None:
        """Save in one atomic append; a concurrent writer's version clash is a Conflict.

        Read models are brought up to date before returning, so a portal reads
        its own writes.
        """
        try:
            self.save(*aggregates)
        except IntegrityError as exc:
            raise Conflict(
                "changed concurrently by someone else; reload and try again"
            ) from exc
        if self.projector is not None:
            self.projector.catch_up()
