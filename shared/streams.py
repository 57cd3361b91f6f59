"""Consuming a source service's published events (the transport side of
``shared.consumer``): ``StreamHandler`` / ``@consumes`` reads the source's
event exchange in batches and hands them to the service's ``Inbox`` (one
transaction, then one multiple ack), and ``SourceLog`` reads a missing
predecessor from the source's own log to fill a gap. Split from
``shared.consumer``, which keeps the inbox itself (positions, parking, order)."""
from __future__ import annotations

import logging
import socket
import time

import eventlet
import orjson
from kombu import Connection, Consumer, Queue
from nameko.extensions import DependencyProvider, Entrypoint
from nameko.standalone.events import get_event_exchange

from shared import metrics
from shared.consumer import DEFERRED
from shared.relay import read_ahead
from shared.secrets import AUTH_SECRET, event_signing_key, load_secret
from shared.signing import reject, signature_problem, verified

log = logging.getLogger(__name__)


class StreamHandler(Entrypoint):
    """Consumes every event type a source service publishes (routing key ``#``),
    from one durable queue per consuming method shared by all instances, in
    batches: the service method gets a list of envelopes (up to ``batch_size``
    deliveries, prefetched; a batch is handed over as soon as the queue pauses
    for ``linger`` seconds or ``max_wait`` passed since its first message) and
    returns one outcome per envelope (``Inbox.handle_batch``). Then every
    delivery is acknowledged at once (one multiple ack) except those it
    ``DEFERRED``, which go back on the queue; if the method raises, the whole
    batch goes back. Only genuine events of the source (signature verified,
    ``shared.signing``) reach the method; anything else is acknowledged (never
    redelivered), counted and logged.

    A crash before the method's transaction commits redelivers the batch and
    applies nothing twice; after the commit and before the ack, the redelivered
    events are recognised (inbox positions) and skipped.
    """

    def __init__(self, source_service: str, batch_size: int = 500, linger: float = 0.005,
                 max_wait: float = 0.05, **kwargs):
        self.source_service = source_service
        self.batch_size = batch_size
        self.linger = linger
        self.max_wait = max_wait
        super().__init__(**kwargs)

    def setup(self):
        config = self.container.config
        exchange = get_event_exchange(self.source_service, config)
        # One durable queue per consuming method, shared by all instances.
        self.queue = Queue(
            f"evt-{self.source_service}-all--{self.container.service_name}.{self.method_name}",
            exchange=exchange, routing_key="#", durable=True, auto_delete=False)
        self.signing_key = event_signing_key(self.source_service, config)
        self.amqp_uri = config["AMQP_URI"]
        settings = config.get("CONSUMERS") or {}
        self.batch_size = max(1, int(settings.get("batch_size") or self.batch_size))
        self._stopping = eventlet.event.Event()
        self._consumed = eventlet.event.Event()  # the queue is declared and consumed
        self._thread = None

    def start(self):
        self._thread = self.container.spawn_managed_thread(
            self._run, identifier=f"{self.queue.name} consumer")
        # Like nameko's own consumers: the queue exists once the container has
        # started (unless the broker is away: then it is declared when it is back).
        with eventlet.Timeout(30, False):
            self._consumed.wait()

    def stop(self):
        if not self._stopping.ready():
            self._stopping.send(True)
        if self._thread is not None:
            self._thread.wait()

    def kill(self):
        if not self._stopping.ready():
            self._stopping.send(True)
        if self._thread is not None:
            self._thread.kill()

    # -- the consuming loop ---------------------------------------------------
    def _run(self):
        service = self.container.service_name
        while not self._stopping.ready():
            try:
                self._consume()
            except Exception as exc:
                log.warning("consumer of %s lost the broker (%s); reconnecting",
                            self.queue.name, exc)
                metrics.dependency_failed(service, "broker")
                self._stopping.wait(1.0)

    def _consume(self):
        buffer: list = []
        with Connection(self.amqp_uri) as conn:
            channel = conn.channel()
            read_ahead(conn.connection.transport)
            # Decoded later, in _handle: a body that is not JSON is dropped there.
            consumer = Consumer(channel, queues=[self.queue], on_message=buffer.append,
                                accept=["json"])
            # Room for the batch being applied and the next one being collected.
            consumer.qos(prefetch_count=2 * self.batch_size)
            consumer.consume()
            if not self._consumed.ready():
                self._consumed.send(True)
            applying = None  # the batch the worker applies meanwhile
            try:
                while not self._stopping.ready():
                    first = None
                    # Collect while the previous batch is applied (so the next
                    # one grows under load); hand it over once that one is done.
                    while len(buffer) < self.batch_size:
                        if applying is not None and applying.done.ready():
                            self._finish(channel, applying)
                            applying = None
                        if buffer and first is None:
                            first = time.monotonic()
                        if applying is None and first is not None and \
                                time.monotonic() - first >= self.max_wait:
                            break
                        try:
                            conn.drain_events(
                                timeout=self.linger if buffer or applying else 0.5)
                        except socket.timeout:
                            if applying is None and (buffer or self._stopping.ready()):
                                break
                    if applying is not None:
                        applying.done.wait()
                        self._finish(channel, applying)
                        applying = None
                    if buffer:
                        batch, buffer[:] = list(buffer), []
                        applying = self._start(batch)
            finally:
                if applying is not None:
                    applying.done.wait()
                    self._finish(channel, applying)
            consumer.cancel()

    def _start(self, messages: list) -> "_Applying | None":
        """Verify the batch's signatures (dropping what is not genuine) and hand
        the genuine envelopes to a worker."""
        genuine, kept = [], []
        for message in messages:
            try:
                body = _decoded(message)
            except Exception:
                body, problem = None, "malformed"
            else:
                problem = signature_problem(body, self.signing_key, self.source_service)
            if problem is not None:
                message.ack()
                reject(self.container.service_name, self.source_service, problem, body,
                       f"queue {self.queue.name}")
                continue
            genuine.append(body)
            kept.append(message)
        if not kept:
            return None
        applying = _Applying(kept)

        def handle_result(worker_ctx, result, exc_info):
            applying.done.send((result, exc_info))
            return result, exc_info

        try:
            self.container.spawn_worker(self, (genuine,), {}, handle_result=handle_result)
        except Exception:
            for message in kept:
                message.requeue()
            raise
        return applying

    @staticmethod
    def _finish(channel, applying: "_Applying") -> None:
        """Acknowledge the applied batch (one multiple ack), or put back what
        it deferred, or all of it when the worker raised."""
        kept = applying.messages
        result, exc_info = applying.done.wait()
        outcomes = result if exc_info is None and isinstance(result, list) \
            and len(result) == len(kept) else None
        if outcomes is None:  # the method raised: the whole batch goes back
            for message in kept:
                message.requeue()
            return
        if DEFERRED not in outcomes:
            channel.basic_ack(kept[-1].delivery_tag, multiple=True)
            return
        for message, outcome in zip(kept, outcomes):
            if outcome == DEFERRED:
                message.requeue()
            else:
                message.ack()


class _Applying:
    """A batch handed to a worker: its messages, and the worker's result."""

    def __init__(self, messages: list):
        self.messages = messages
        self.done = eventlet.event.Event()


consumes = StreamHandler.decorator


class SourceLog(DependencyProvider):
    """Reads one aggregate's events from another service's log, as this service
    (an ``ops`` token for ``service:<name>``): the ``fill_gap`` of ``Inbox.handle``.

    Used rarely (only for a predecessor that never arrived), so each call opens
    its own short-lived proxy rather than sharing one between green threads.
    """

    def __init__(self, source_service: str, timeout: float = 10.0, **kwargs):
        self.source_service = source_service
        self.timeout = timeout
        super().__init__(**kwargs)

    def setup(self):
        self.amqp_uri = self.container.config["AMQP_URI"]
        self.secret = load_secret(AUTH_SECRET, self.container.config)
        self.signing_key = event_signing_key(self.source_service, self.container.config)
        self.caller_name = f"service:{self.container.service_name}"

    def read_aggregate(self, originator_id: str, after_version: int) -> list[dict]:
        from nameko.standalone.rpc import ClusterRpcProxy

        from shared.identity import OPS, mint_token

        token = mint_token(self.secret, sub=self.caller_name, role=OPS, ttl=60)
        with ClusterRpcProxy({"AMQP_URI": self.amqp_uri}, context_data={"auth_token": token},
                             timeout=self.timeout) as rpc:
            envelopes = getattr(rpc, self.source_service).read_aggregate_events(
                aggregate_id=originator_id, after_version=after_version)
        # Signed like published events: whoever answers on the broker cannot
        # slip in an event of its own (one left out stays a gap, tried again).
        return verified(envelopes, self.signing_key, self.container.service_name,
                        self.source_service, "read_aggregate_events")

    def verified(self, envelopes: list, via: str = "read_events") -> list[dict]:
        """The genuine (signature-verified) envelopes of the source among
        ``envelopes`` read over RPC (e.g. a ``read_events`` page); others are
        counted and logged and left out."""
        return verified(envelopes, self.signing_key, self.container.service_name,
                        self.source_service, via)

    def get_dependency(self, worker_ctx):
        return SourceLogReader(self)


class SourceLogReader:
    """What a worker gets from ``SourceLog``: call it as ``fill_gap``
    (originator_id, after_version); ``verified(envelopes)`` checks a page read
    some other way."""

    def __init__(self, source_log: SourceLog):
        self._log = source_log

    def __call__(self, originator_id: str, after_version: int) -> list[dict]:
        return self._log.read_aggregate(originator_id, after_version)

    def verified(self, envelopes: list, via: str = "read_events") -> list[dict]:
        return self._log.verified(envelopes, via)


def _decoded(message):
    """A delivery's JSON body, parsed by orjson in C (kombu's ``decode`` uses
    Python's json: a fifth of a consumer's time); what orjson refuses (NaN,
    integers past 64 bits) or another content type is left to kombu."""
    if message.content_type == "application/json":
        try:
            return orjson.loads(message.body)
        except orjson.JSONDecodeError:
            pass
    return message.decode()
