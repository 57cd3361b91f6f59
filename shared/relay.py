"""The relay (outbox): the only path from the event store to RabbitMQ.

It follows the service's notification log and publishes each domain event as
a nameko event on ``<service>.events`` (routing key = event type), signed with
the service's event key (``shared.signing``), with
publisher confirms and persistent delivery. Its position is saved in
PostgreSQL only after the broker confirmed, so a crash re-publishes at most the
last batch, which consumers recognise by event id and skip.

Exactly one instance of a service relays at a time: the one holding a
session-level advisory lock. When it dies its connection closes, the lock is
released and another instance takes over at its next poll.
"""
from __future__ import annotations

import datetime as dt
import logging
from typing import Callable

import eventlet
import psycopg
from nameko.amqp.publish import Publisher
from nameko.constants import PERSISTENT
from nameko.standalone.events import get_event_exchange

from shared import metrics
from shared.envelope import build_envelope
from shared.secrets import event_signing_key
from shared.signing import sign_envelope

log = logging.getLogger(__name__)

RELAY_DDL = """
CREATE TABLE IF NOT EXISTS relay_positions (
    relay text PRIMARY KEY,
    position bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now(),
    instance text
)"""


class Relay:
    def __init__(self, app, service_name: str, config: dict, instance: str,
                 batch_size: int = 200, poll_interval: float = 0.2):
        self.app = app
        self.service_name = service_name
        self.instance = instance
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.exchange = get_event_exchange(service_name, config)
        self.publisher = Publisher(
            config["AMQP_URI"], use_confirms=True, delivery_mode=PERSISTENT,
            serializer="json", declare=[self.exchange])
        self.relay_name = f"{service_name}.events"
        self.signing_key = event_signing_key(service_name, config)
        self._conninfo = app.settings.conninfo()
        self._conn: psycopg.Connection | None = None
        self.is_leader = False
        # Test hook: called with the batch after the broker confirmed it and
        # before the position is saved (to simulate a crash just there).
        self.after_confirm: Callable[[list], None] | None = None
        with app.transaction() as curs:
            curs.execute("SELECT pg_advisory_xact_lock(hashtext('relay_ddl'))")
            curs.execute(RELAY_DDL)
            curs.execute("INSERT INTO relay_positions (relay) VALUES (%s) ON CONFLICT DO NOTHING",
                         (self.relay_name,))

    # -- leadership --------------------------------------------------------
    def _try_lead(self) -> bool:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self._conninfo, autocommit=True)
        got = self._conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))",
                                 (self.relay_name,)).fetchone()[0]
        self._set_leader(bool(got))
        return self.is_leader

    def _set_leader(self, leader: bool):
        self.is_leader = leader
        metrics.RELAY_LEADER.labels(self.service_name, self.instance).set(1 if leader else 0)

    def release(self):
        """Give up leadership (closing the session releases the lock)."""
        conn, self._conn = self._conn, None
        self._set_leader(False)
        if conn is not None and not conn.closed:
            try:
                conn.close()
            except Exception:
                pass

    # -- publishing --------------------------------------------------------
    def position(self) -> int:
        row = self.app.query_one("SELECT position FROM relay_positions WHERE relay = %s",
                                 (self.relay_name,))
        return int(row["position"]) if row else 0

    def step(self) -> int:
        """Publish the next batch if this instance leads; returns how many."""
        if not self.is_leader and not self._try_lead():
            return 0
        position = self._conn.execute(
            "SELECT position FROM relay_positions WHERE relay = %s",
            (self.relay_name,)).fetchone()[0]
        notifications = self.app.recorder.select_notifications(
            start=position + 1, limit=self.batch_size)
        self._update_lag(position, notifications)
        if not notifications:
            return 0
        published = []
        for notification in notifications:
            event = self.app.mapper.to_domain_event(notification)
            envelope = sign_envelope(
                build_envelope(event, notification.id, self.service_name), self.signing_key)
            # Blocks until the broker confirms (publisher confirms).
            self.publisher.publish(envelope, exchange=self.exchange,
                                   routing_key=envelope["type"],
                                   headers={"event_id": envelope["event_id"]})
            metrics.EVENTS_PUBLISHED.labels(self.service_name, envelope["type"]).inc()
            published.append(envelope)
        if self.after_confirm is not None:
            self.after_confirm(published)
        # Saved through the lock-holding session: if that session is gone we
        # are no longer the leader and this fails instead of racing another.
        self._conn.execute(
            "UPDATE relay_positions SET position = %s, updated_at = now(), instance = %s "
            "WHERE relay = %s", (notifications[-1].id, self.instance, self.relay_name))
        metrics.RELAY_POSITION.labels(self.service_name).set(notifications[-1].id)
        return len(notifications)

    def _update_lag(self, position: int, notifications) -> None:
        newest = self.app.recorder.max_notification_id() or 0
        metrics.RELAY_LAG_EVENTS.labels(self.service_name).set(max(newest - position, 0))
        if notifications:
            oldest = self.app.mapper.to_domain_event(notifications[0]).timestamp
            age = (dt.datetime.now(dt.timezone.utc) - oldest).total_seconds()
            metrics.RELAY_LAG_SECONDS.labels(self.service_name).set(max(age, 0.0))
        else:
            metrics.RELAY_LAG_SECONDS.labels(self.service_name).set(0)

    def run_forever(self, stopping: eventlet.event.Event):
        while not stopping.ready():
            try:
                if self.step() >= self.batch_size:
                    continue  # more waiting: no pause
            except Exception as exc:
                log.warning("relay %s failed (%s); will retry", self.relay_name, exc)
                metrics.dependency_failed(self.service_name, _dependency_of(exc))
                self.release()
                stopping.wait(1.0)
                continue
            metrics.dependency_ok(self.service_name, "broker")
            stopping.wait(self.poll_interval)
        self.release()


def _dependency_of(exc: Exception) -> str:
    """Which dependency an error of the relay's loop points at."""
    from eventsourcing.persistence import PersistenceError

    return "database" if isinstance(exc, (psycopg.Error, PersistenceError)) else "broker"
