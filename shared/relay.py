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
import functools
import json
import logging
import socket
import struct
import time
from collections import Counter
from typing import Any, Callable, NamedTuple

import eventlet
import psycopg
from psycopg import sql
from psycopg.rows import tuple_row
from amqp.exceptions import UnexpectedFrame
from kombu import Connection
from nameko.constants import PERSISTENT
from nameko.standalone.events import get_event_exchange

from shared import metrics
from shared.envelope import StoredEnvelopes
from shared.secrets import event_signing_key
from shared.signing import SIGNATURE_FIELD, signed_json

log = logging.getLogger(__name__)

RELAY_DDL = """
CREATE TABLE IF NOT EXISTS relay_positions (
    relay text PRIMARY KEY,
    position bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now(),
    instance text
)"""


class _Stored(NamedTuple):
    """A notification as the mapper and ``StoredEnvelopes`` read it."""

    id: int
    originator_id: Any
    originator_version: int
    topic: str
    state: bytes


class PublishNotConfirmed(Exception):
    """The broker refused (nack) or did not confirm a batch in time."""


# AMQP 0-9-1 framing of basic.publish (class 60, method 40), written by hand so
# that a batch costs one bytes join and one socket write: py-amqp's
# ``basic_publish`` checks the channel, serialises the properties generically and
# frames each message on its own (most of the relay's time, when profiled).
_METHOD, _HEADER, _BODY, _FRAME_END = 1, 2, 3, b"\xce"
# Properties sent: content_type, content_encoding, headers, delivery_mode, priority
# (the flags' top five bits, in that order), as kombu sends them.
_PROPERTY_FLAGS = 0xF800
_JSON, _UTF8 = b"application/json", b"utf-8"


def _shortstr(value: str | bytes) -> bytes:
    data = value.encode("utf-8") if isinstance(value, str) else value
    if len(data) > 255:
        raise ValueError(f"AMQP short string too long ({len(data)} bytes)")
    return bytes((len(data),)) + data


def _headers_table(headers: dict[str, str]) -> bytes:
    """An AMQP field table of long strings (``S``), as py-amqp encodes ``str`` values."""
    fields = b"".join(
        _shortstr(name) + b"S" + struct.pack(">I", len(data)) + data
        for name, data in ((n, str(v).encode("utf-8")) for n, v in headers.items()))
    return struct.pack(">I", len(fields)) + fields


def publish_frames(channel_id: int, exchange: str, routing_key: str, body: bytes,
                   headers: dict[str, str], frame_max: int, delivery_mode: int = PERSISTENT
                   ) -> bytes:
    """The frames of one ``basic.publish`` (method, content header, body frames)."""
    properties = _headers_table(headers) + bytes((delivery_mode, 0))
    return _publish_method(channel_id, exchange, routing_key) + _content(
        channel_id, body, properties, frame_max)


@functools.lru_cache(maxsize=4096)
def _publish_method(channel_id: int, exchange: str, routing_key: str) -> bytes:
    """The method frame of ``basic.publish`` (the same for every event of a type)."""
    method = (struct.pack(">HHH", 60, 40, 0) + _shortstr(exchange) + _shortstr(routing_key)
              + b"\x00")  # mandatory = immediate = false
    return struct.pack(">BHI", _METHOD, channel_id, len(method)) + method + _FRAME_END


_TYPE_AND_ENCODING = _shortstr(_JSON) + _shortstr(_UTF8)


def _content(channel_id: int, body: bytes, properties: bytes, frame_max: int) -> bytes:
    """The content header frame (after content_type and content_encoding come
    ``properties``) and the body frames."""
    header_size = 14 + len(_TYPE_AND_ENCODING) + len(properties)
    frames = [struct.pack(">BHIHHQH", _HEADER, channel_id, header_size, 60, 0, len(body),
                          _PROPERTY_FLAGS), _TYPE_AND_ENCODING, properties, _FRAME_END]
    chunk = max(frame_max - 8, 1) if frame_max else len(body) or 1
    for start in range(0, len(body), chunk):
        part = body[start:start + chunk]
        frames += [struct.pack(">BHI", _BODY, channel_id, len(part)), part, _FRAME_END]
    return b"".join(frames)


def read_ahead(transport) -> None:
    """Frames read from a buffer filled 64 KiB at a time. py-amqp reads each
    frame in three exact-size ``recv`` calls through a buffer it copies at every
    read (a consumer's deliveries are three frames each, the relay's confirms a
    stream of small ones); here a frame is sliced out of the buffer by offset,
    and the buffer is compacted only when more is read."""
    transport.read_frame = _FrameReader(transport)


class _FrameReader:
    """``transport.read_frame`` over a read-ahead buffer. A timeout (the
    caller's drain timeout) keeps what was read for the next call; a broken
    connection marks the transport disconnected, as py-amqp does."""

    __slots__ = ("transport", "sock", "buf", "pos")

    def __init__(self, transport):
        self.transport = transport
        self.sock = transport.sock
        # Whatever py-amqp had read ahead already (the handshake's tail).
        self.buf, self.pos = bytes(transport._read_buffer), 0
        transport._read_buffer = b""

    def __call__(self, unpack=None):
        buf, pos = self.buf, self.pos
        while True:
            have = len(buf) - pos
            if have >= 7:
                frame_type, channel, size = struct.unpack_from(">BHI", buf, pos)
                end = pos + 7 + size
                if len(buf) > end:
                    if buf[end] != 0xCE:
                        self.transport.connected = False
                        raise UnexpectedFrame(f"Received frame_end {buf[end]:#04x} "
                                              "while expecting 0xce")
                    self.pos = end + 1
                    return frame_type, channel, buf[pos + 7:end]
                need = end + 1 - pos
            else:
                need = 7
            try:
                chunk = self.sock.recv(max(need - have, 65536))
            except socket.timeout:
                raise
            except OSError:
                self.transport.connected = False
                raise
            if not chunk:
                self.transport.connected = False
                raise OSError("Server unexpectedly closed connection")
            buf = self.buf = buf[pos:] + chunk
            pos = self.pos = 0


class ConfirmedPublisher:
    """Publishes a batch of messages on one channel in confirm mode, then waits
    until the broker has confirmed all of them (one wait per batch instead of
    one round trip per message). Any nack, timeout or connection error raises;
    the caller then saves no position and publishes the batch again.

    The channel is opened, put in confirm mode and the exchange declared through
    kombu/py-amqp; the publishes themselves are framed here (``publish_frames``)
    and the batch written in one go; the broker's confirms (``basic.ack`` /
    ``basic.nack``, delivery tags 1, 2, ... on this channel) are read back
    through py-amqp, so a channel or connection closed by the broker raises."""

    def __init__(self, amqp_uri: str, exchange, confirm_timeout: float = 30.0):
        self.amqp_uri = amqp_uri
        self.exchange = exchange
        self.confirm_timeout = confirm_timeout
        self._conn: Connection | None = None
        self._channel = None
        self._sent = 0  # delivery tags the broker gives this channel: 1, 2, ...
        self._acked = 0
        self._nacked = False

    def _connect(self):
        if self._channel is not None:
            return
        conn = Connection(self.amqp_uri)
        channel = conn.channel()
        channel.confirm_select()
        channel.events["basic_ack"].add(self._on_ack)
        channel.events["basic_nack"].add(self._on_nack)
        self.exchange(channel).declare()
        read_ahead(conn.connection.transport)
        self._conn, self._channel = conn, channel
        self._sent = self._acked = 0
        self._nacked = False

    @property
    def sent(self) -> int:
        """The delivery tag of the last message written on this channel."""
        return self._sent

    def _on_ack(self, delivery_tag, multiple):
        # Confirms arrive in order on a channel; "multiple" covers all before.
        self._acked = max(self._acked, delivery_tag)

    def _on_nack(self, delivery_tag, multiple):
        self._nacked = True

    def publish_all(self, messages: list[tuple[bytes | dict, str, dict]]) -> None:
        """``messages``: (body, routing key, headers); a body is JSON bytes (or
        a dict, encoded here). Returns once the broker confirmed every one."""
        self.send(messages)
        self.wait_confirmed(self._sent)

    def send(self, messages: list[tuple[bytes | dict, str, dict]]) -> int:
        """Write the batch (no wait); returns the delivery tag of its last
        message (``wait_confirmed`` of it returns when all up to it are confirmed)."""
        try:
            self._connect()
            amqp_conn = self._conn.connection
            channel_id, frame_max = self._channel.channel_id, amqp_conn.frame_max
            exchange = self.exchange.name
            data = b"".join(
                publish_frames(channel_id, exchange, routing_key,
                               body if isinstance(body, bytes) else _json(body),
                               headers or {}, frame_max)
                for body, routing_key, headers in messages)
            amqp_conn.transport.write(data)
            self._sent += len(messages)
            return self._sent
        except BaseException:
            self.close()  # a fresh channel next time: no stale tags or confirms
            raise

    def wait_confirmed(self, tag: int) -> None:
        """Return once the broker confirmed every message up to delivery tag
        ``tag``; raise on a nack, a timeout or a connection error."""
        try:
            deadline = time.monotonic() + self.confirm_timeout
            while self._acked < tag and not self._nacked:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise PublishNotConfirmed(
                        f"{tag - self._acked} messages not confirmed in time")
                self._conn.connection.drain_events(timeout=remaining)
            if self._nacked:
                raise PublishNotConfirmed("the broker refused (nack) a message of the batch")
        except BaseException:
            self.close()
            raise

    def close(self):
        conn, self._conn, self._channel = self._conn, None, None
        self._sent = self._acked = 0
        self._nacked = False
        if conn is not None:
            try:
                conn.release()
            except Exception:
                pass


def _json(body: dict) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


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
        self._envelopes = StoredEnvelopes(app.mapper, service_name)
        self._conninfo = app.settings.conninfo()
        self._conn: psycopg.Connection | None = None
        self.is_leader = False
        # Test hook: called with the batch after the broker confirmed it and
        # before the position is saved (to simulate a crash just there).
        self.after_confirm: Callable[[list], None] | None = None
        # Batches written to the broker whose position is not saved yet:
        # (last delivery tag, last notification id, envelopes); and where the
        # next batch starts (None: read the saved position).
        self._unsaved: list[tuple[int, int, list[dict]]] = []
        self._next: int | None = None
        with app.transaction() as curs:
            curs.execute("SELECT pg_advisory_xact_lock(hashtext('relay_ddl'))")
            curs.execute(RELAY_DDL)
            curs.execute("INSERT INTO relay_positions (relay) VALUES (%s) ON CONFLICT DO NOTHING",
                         (self.relay_name,))

    # -- leadership --------------------------------------------------------
    def _try_lead(self) -> bool:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self._conninfo, autocommit=True)
            # The recorder NOTIFYs this channel with every insert (delivered at
            # commit): the leader wakes on a commit instead of its next poll.
            self._conn.execute(sql.SQL("LISTEN {}").format(
                sql.Identifier(self.app.recorder.channel_name)))
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
        self._forget_unsaved()
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
        """Publish the next batch if this instance leads; returns how many
        notifications it covered (internal events included, not published).

        Pipelined by one batch: a full batch is written and left for the
        broker to confirm while the next one is read, decoded and signed; its
        position is saved once its confirms are in (the next step, or at once
        when there is nothing more to read). Any error forgets every batch
        not saved: they are published again from the saved position."""
        if not self.is_leader and not self._try_lead():
            return 0
        try:
            return self._step()
        except BaseException:
            self._forget_unsaved()
            raise

    def _step(self) -> int:
        if self._next is None:
            self._next = self._conn.execute(
                "SELECT position FROM relay_positions WHERE relay = %s",
                (self.relay_name,)).fetchone()[0]
        notifications = self._read_notifications(self._next, self.batch_size)
        if notifications:
            batch, messages = [], []
            envelope_of = self._envelopes
            for notification in notifications:
                if envelope_of.is_internal(notification):
                    continue  # the service's own bookkeeping (docs/events.md)
                envelope = envelope_of(notification)
                if not batch:
                    self._update_lag(notification.id - 1, envelope["occurred_at"])
                body, signature = signed_json(envelope, self.signing_key)
                envelope[SIGNATURE_FIELD] = signature
                batch.append(envelope)
                messages.append((body, envelope["type"], {"event_id": envelope["event_id"]}))
            if not batch:  # internal bookkeeping only
                self._update_lag(notifications[-1].id, None)
            # Written now; confirmed (and its position saved) below or next step.
            tag = self.publisher.send(messages) if messages else self.publisher.sent
            self._unsaved.append((tag, notifications[-1].id, batch))
            self._next = notifications[-1].id
        else:
            self._update_lag(self._next, None)
        # A full batch stays in flight while the next is prepared; otherwise
        # (caught up) everything written is confirmed and saved now.
        in_flight = 1 if len(notifications) >= self.batch_size else 0
        while len(self._unsaved) > in_flight:
            self._save_when_confirmed(*self._unsaved[0])
            self._unsaved.pop(0)
        return len(notifications)

    def _read_notifications(self, after: int, limit: int) -> list["_Stored"]:
        """The next page of the log, read on the lock-holding connection as
        tuples in binary (the library's ``select_notifications`` builds a dict
        and an object per row through a pooled connection)."""
        recorder = self.app.recorder
        with self._conn.cursor(row_factory=tuple_row, binary=True) as page:
            page.execute(
                f'SELECT notification_id, originator_id, originator_version, topic, state '
                f'FROM "{recorder.datastore.schema}"."{recorder.events_table_name}" '
                f'WHERE notification_id > %s ORDER BY notification_id LIMIT %s',
                (after, limit))
            return [_Stored._make(row) for row in page.fetchall()]

    def _save_when_confirmed(self, tag: int, position: int, batch: list[dict]) -> None:
        # Returns once the broker confirmed every message up to ``tag``.
        self.publisher.wait_confirmed(tag)
        for event_type, n in Counter(envelope["type"] for envelope in batch).items():
            metrics.EVENTS_PUBLISHED.labels(self.service_name, event_type).inc(n)
        if self.after_confirm is not None:
            self.after_confirm(batch)
        # Saved through the lock-holding session: if that session is gone we
        # are no longer the leader and this fails instead of racing another.
        self._conn.execute(
            "UPDATE relay_positions SET position = %s, updated_at = now(), instance = %s "
            "WHERE relay = %s", (position, self.instance, self.relay_name))
        metrics.RELAY_POSITION.labels(self.service_name).set(position)

    def _forget_unsaved(self) -> None:
        """Batches written but not saved are published again from the saved
        position (consumers skip what they already applied)."""
        self._unsaved.clear()
        self._next = None
        self.publisher.close()

    def _update_lag(self, position: int, oldest_timestamp) -> None:
        newest = self.app.recorder.max_notification_id() or 0
        metrics.RELAY_LAG_EVENTS.labels(self.service_name).set(max(newest - position, 0))
        if isinstance(oldest_timestamp, str):  # an envelope's occurred_at
            oldest_timestamp = dt.datetime.fromisoformat(oldest_timestamp)
        if oldest_timestamp is not None:
            age = (dt.datetime.now(dt.timezone.utc) - oldest_timestamp).total_seconds()
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
            self._wait_for_commit(stopping)
        self.release()

    def _wait_for_commit(self, stopping: eventlet.event.Event) -> None:
        """Until a commit to the log is notified or ``poll_interval`` passed
        (the poll stays: a follower, or a notification lost with its session).

        A burst's events are then relayed as they commit: with a poll alone, a
        relay that caught up with its committer slept up to ``poll_interval``
        before each of the burst's later commits. Notifications received while
        the step read the log are in the connection's backlog: the step runs
        again at once for them (at worst one empty read)."""
        conn = self._conn
        if not self.is_leader or conn is None or conn.closed:
            stopping.wait(self.poll_interval)
            return
        try:
            for _ in conn.notifies(timeout=self.poll_interval, stop_after=1):
                pass
            for _ in conn.notifies(timeout=0):  # the rest of that packet, not waited for
                pass
        except psycopg.Error as exc:  # the session is gone: the next step finds out
            log.warning("relay %s stopped listening (%s)", self.relay_name, exc)
            stopping.wait(self.poll_interval)


def _dependency_of(exc: Exception) -> str:
    """Which dependency an error of the relay's loop points at."""
    from eventsourcing.persistence import PersistenceError

    return "database" if isinstance(exc, (psycopg.Error, PersistenceError)) else "broker"
