"""The relay (outbox): the only path from the event store to RabbitMQ.

It follows the service's notification log and publishes each domain event as
a nameko event on ``<service>.events`` (routing key = event type), signed with
the service's event key (``shared.signing``), with
publisher confirms and persistent delivery. A batch is published without a
round trip per event and its confirms are awaited together
(``ConfirmedPublisher``); its position is saved in PostgreSQL only after the
broker confirmed every event up to it, so a crash re-publishes at most the
last batch, which consumers recognise by event id and skip.

Exactly one instance of a service relays at a time: the one holding a
session-level advisory lock. When it dies its connection closes, the lock is
released and another instance takes over at its next poll.
"""
from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Callable

import eventlet
import psycopg
from amqp.method_framing import frame_writer
from kombu import Connection, Producer
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


class PublishNotConfirmed(Exception):
    """The broker refused (nack) or did not confirm a batch in time."""


class _Coalescing:
    """Stands in for py-amqp's transport while a batch is framed: the frames of
    every message are collected (copied: py-amqp reuses its buffer) and written
    to the socket in one go, not one system call per message."""

    def __init__(self, transport):
        self.transport = transport
        self.chunks: list[bytes] = []

    def write(self, data) -> None:
        self.chunks.append(bytes(data))

    def flush(self) -> None:
        if self.chunks:
            data, self.chunks = b"".join(self.chunks), []
            self.transport.write(data)


class ConfirmedPublisher:
    """Publishes a batch of messages on one channel in confirm mode, then waits
    until the broker has confirmed all of them (one wait per batch instead of
    one round trip per message). Any nack, timeout or connection error raises;
    the caller then saves no position and publishes the batch again."""

    def __init__(self, amqp_uri: str, exchange, confirm_timeout: float = 30.0):
        self.amqp_uri = amqp_uri
        self.exchange = exchange
        self.confirm_timeout = confirm_timeout
        self._conn: Connection | None = None
        self._channel = None
        self._producer: Producer | None = None
        self._sent = 0  # delivery tags the broker gives this channel: 1, 2, ...
        self._acked = 0
        self._nacked = False

    def _connect(self):
        if self._producer is not None:
            return
        conn = Connection(self.amqp_uri)
        channel = conn.channel()
        channel.confirm_select()
        channel.events["basic_ack"].add(self._on_ack)
        channel.events["basic_nack"].add(self._on_nack)
        self._conn, self._channel = conn, channel
        self._producer = Producer(channel, exchange=self.exchange, serializer="json",
                                  auto_declare=False)  # declared once, just below
        self.exchange(channel).declare()
        self._sent = self._acked = 0
        self._nacked = False

    def _on_ack(self, delivery_tag, multiple):
        # Confirms arrive in order on a channel; "multiple" covers all before.
        self._acked = max(self._acked, delivery_tag)

    def _on_nack(self, delivery_tag, multiple):
        self._nacked = True

    def publish_all(self, messages: list[tuple[dict, str, dict]]) -> None:
        """``messages``: (body, routing key, headers). Returns once the broker
        confirmed every one of them."""
        try:
            self._connect()
            amqp_conn = self._conn.connection
            direct = amqp_conn.frame_writer
            coalescing = _Coalescing(amqp_conn.transport)
            amqp_conn.frame_writer = frame_writer(amqp_conn, coalescing)
            try:
                for body, routing_key, headers in messages:
                    self._producer.publish(body, routing_key=routing_key, headers=headers,
                                           delivery_mode=PERSISTENT, retry=False)
                    self._sent += 1
            finally:
                amqp_conn.frame_writer = direct
            coalescing.flush()
            deadline = time.monotonic() + self.confirm_timeout
            while self._acked < self._sent and not self._nacked:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise PublishNotConfirmed(
                        f"{self._sent - self._acked} messages not confirmed in time")
                self._conn.drain_events(timeout=remaining)
            if self._nacked:
                raise PublishNotConfirmed("the broker refused (nack) a message of the batch")
        except BaseException:
            self.close()  # a fresh channel next time: no stale tags or confirms
            raise

    def close(self):
        conn, self._conn, self._channel, self._producer = self._conn, None, None, None
        if conn is not None:
            try:
                conn.release()
            except Exception:
                pass


class Relay:
    def __init__(self, app, service_name: str, config: dict, instance: str,
                 batch_size: int = 1000, poll_interval: float = 0.2):
        self.app = app
        self.service_name = service_name
        self.instance = instance
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.exchange = get_event_exchange(service_name, config)
        self.publisher = ConfirmedPublisher(config["AMQP_URI"], self.exchange)
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
        self.publisher.close()
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
            published.append(sign_envelope(
                build_envelope(event, notification.id, self.service_name), self.signing_key))
        # Returns once the broker confirmed every one (publisher confirms).
        self.publisher.publish_all([(envelope, envelope["type"],
                                     {"event_id": envelope["event_id"]})
                                    for envelope in published])
        for envelope in published:
            metrics.EVENTS_PUBLISHED.labels(self.service_name, envelope["type"]).inc()
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
