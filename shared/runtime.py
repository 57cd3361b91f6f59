"""Nameko plumbing shared by the three services: the event-store dependency
(with its projector and relay threads) and the /health and /metrics endpoints."""
from __future__ import annotations

import json
import logging

from eventlet.event import Event
from kombu import Connection
from nameko.extensions import DependencyProvider
from nameko.web.handlers import http
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Gauge, generate_latest
from werkzeug.wrappers import Response

from shared import metrics
from shared.audit import publish_heads_forever
from shared.config import DatabaseSettings, service_instance
from shared.entrypoints import command, query
from shared.relay import Relay
from shared.secrets import event_cipher_key, event_signing_key
from shared.signing import sign_envelope

log = logging.getLogger(__name__)


class EventStore(DependencyProvider):
    """Gives workers the service's application; runs its background followers.

    ``app_class(settings)`` builds the application (and its projector and
    inboxes). Unless ``RELAY_ENABLED`` is false in config, this instance also
    competes for the relay lock and publishes the service's events.
    """

    def __init__(self, app_class, **kwargs):
        self.app_class = app_class
        super().__init__(**kwargs)

    def setup(self):
        config = self.container.config
        self.instance = service_instance(config)
        self.app = self.app_class(DatabaseSettings.from_config(config).with_cipher(
            event_cipher_key(self.container.service_name, config)))
        self.relay = None
        relay_cfg = config.get("RELAY") or {}
        if relay_cfg.get("enabled", True) not in (False, "false", "no", "0", 0):
            self.relay = Relay(
                self.app, self.container.service_name, config, self.instance,
                batch_size=int(relay_cfg.get("batch_size", 1000)),
                poll_interval=float(relay_cfg.get("poll_interval", 0.2)))
        self.stopping = Event()
        self.projection_poll = float((config.get("PROJECTIONS") or {}).get("poll_interval", 0.5))
        configure_parking(self.app, config)
        # How often the hash chain's head is published (0: never).
        self.head_interval = float((config.get("CHAIN") or {}).get("publish_interval", 300))

    def start(self):
        if self.app.projector is not None:
            self.container.spawn_managed_thread(
                lambda: self.app.projector.run_forever(self.stopping, self.projection_poll))
        if self.relay is not None:
            self.container.spawn_managed_thread(lambda: self.relay.run_forever(self.stopping))
        if self.head_interval > 0 and hasattr(self.app, "publish_chain_head"):
            self.container.spawn_managed_thread(lambda: publish_heads_forever(
                self.app, self.stopping, self.head_interval))

    def _shutdown(self):
        if not self.stopping.ready():
            self.stopping.send(True)
        if self.relay is not None:
            self.relay.release()
        try:
            self.app.close()
        except Exception:
            log.exception("closing the application failed")

    def stop(self):
        self._shutdown()

    def kill(self):
        self._shutdown()

    def get_dependency(self, worker_ctx):
        return self.app


def check_health(app, amqp_uri: str, service: str = "") -> tuple[bool, dict]:
    """What is up and what is down: the database and the broker (both needed
    to serve), and, for the record, this instance's relay role and read-model lag."""
    checks = {}
    try:
        app.query("SELECT 1")
        checks["database"] = "ok"
        if service:
            metrics.dependency_ok(service, "database")
    except Exception as exc:
        checks["database"] = f"error: {exc}"
        if service:
            metrics.dependency_failed(service, "database")
    try:
        with Connection(amqp_uri, connect_timeout=2) as conn:
            conn.ensure_connection(max_retries=1)
        checks["broker"] = "ok"
        if service:
            metrics.dependency_ok(service, "broker")
    except Exception as exc:
        checks["broker"] = f"error: {exc}"
        if service:
            metrics.dependency_failed(service, "broker")
    return all(v == "ok" for v in checks.values()), checks


def render_business_gauges(gauges: list[dict]) -> bytes:
    """Render gauges computed at scrape time from read models.

    Each gauge: ``{"name", "help", "labels": [...], "samples": [(labelvalues, value)]}``.
    """
    registry = CollectorRegistry()
    for spec in gauges:
        gauge = Gauge(spec["name"], spec["help"], spec["labels"], registry=registry)
        for labelvalues, value in spec["samples"]:
            if spec["labels"]:
                gauge.labels(*labelvalues).set(value)
            else:
                gauge.set(value)
    return generate_latest(registry)


class PublishedLogService:
    """Mixin: the service's event log over RPC (the application mixes in
    ``shared.published_log.PublishedLogQueries``). Envelopes are signed as the
    relay signs them, so a consumer filling a gap verifies them the same way."""

    def _signed(self, envelopes: list[dict]) -> list[dict]:
        key = event_signing_key(self.name, self.config)
        return [sign_envelope(e, key) for e in envelopes]

    @query
    def read_events(self, **payload):
        return self._signed(self.app.read_events(self.caller(), payload))

    @query
    def read_aggregate_events(self, **payload):
        return self._signed(self.app.read_aggregate_events(self.caller(), payload))


class ObservableService:
    """Mixin: ``GET /health`` (database and broker reachable) and ``GET /metrics``.

    The service must have ``app`` (an ``EventStore``); the application may offer
    ``business_gauges()``.
    """

    @http("GET", "/health")
    def health(self, request):
        ok, checks = check_health(self.app, self.config["AMQP_URI"], self.name)
        body = {"service": self.name, "status": "ok" if ok else "unavailable", "checks": checks}
        return Response(json.dumps(body), status=200 if ok else 503,
                        mimetype="application/json")

    @http("GET", "/metrics")
    def metrics(self, request):
        payload = generate_latest(REGISTRY)
        payload += parked_metrics(self.app)
        gauges = getattr(self.app, "business_gauges", None)
        if gauges is not None:
            try:
                payload += render_business_gauges(gauges())
            except Exception:
                log.exception("business gauges failed")
        return Response(payload, mimetype=CONTENT_TYPE_LATEST)


# -- parked events (停放的事件) ------------------------------------------------------
def parked_metrics(app) -> bytes:
    """``lianchuang_parked_events`` read at scrape time (see ``shared.parking``)."""
    gauges = getattr(app, "parked_gauges", None)
    if gauges is None:
        return b""
    try:
        return render_business_gauges(gauges())
    except Exception:
        log.exception("parked event gauges failed")
        return b""


def configure_parking(app, config: dict) -> None:
    """``CONSUMERS: {max_attempts, failure_pause}``: how many times a consumer
    tries an event's effect (pausing between) before it parks the event."""
    settings = config.get("CONSUMERS") or {}
    for lot in (getattr(app, "parking_lots", None) or {}).values():
        inbox = lot.owner
        if inbox is None:
            continue
        if settings.get("max_attempts") not in (None, ""):
            inbox.max_attempts = max(1, int(settings["max_attempts"]))
        if settings.get("failure_pause") not in (None, ""):
            inbox.failure_pause = float(settings["failure_pause"])


class ParkedEventsService:
    """Mixin: events a projection or consumer parked, over RPC (the application
    mixes in ``shared.parking.ParkingOperations``). Listing: org_admin, ops,
    auditor; retry and skip: org_admin, ops, with a ``reason``."""

    @query
    def consumer_status(self):
        return self.app.consumer_status(self.caller())

    @query
    def list_parked(self, **payload):
        return self.app.list_parked(self.caller(), payload)

    @command
    def retry_parked(self, **payload):
        return self.app.retry_parked(self.caller(), payload)

    @command
    def skip_parked(self, **payload):
        return self.app.skip_parked(self.caller(), payload)
