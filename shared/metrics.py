"""Prometheus metrics shared by all services.

Technical metrics live in the process-wide registry and carry a ``service``
label. Business gauges (organisations by level, members by category, …) are
read from a service's read models at scrape time (see ``ObservableService``).
"""
from __future__ import annotations

import time

from nameko.extensions import DependencyProvider
from nameko.rpc import Rpc
from prometheus_client import Counter, Gauge, Histogram

RPC_CALLS = Counter(
    "lianchuang_rpc_calls_total", "RPC calls handled, by method and outcome",
    ["service", "method", "outcome"])
RPC_LATENCY = Histogram(
    "lianchuang_rpc_duration_seconds", "RPC handling time, by method and outcome",
    ["service", "method", "outcome"],
    buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
EVENTS_PUBLISHED = Counter(
    "lianchuang_events_published_total", "Domain events the relay published (broker-confirmed)",
    ["service", "event_type"])
EVENTS_CONSUMED = Counter(
    "lianchuang_events_consumed_total",
    "Events a consumer received, by outcome (applied, duplicate, deferred, failed, parked, held)",
    ["service", "consumer", "source", "outcome"])
CONSUMER_FAILURES = Counter(
    "lianchuang_consumer_failures_total", "Events whose effect raised an error (redelivered later)",
    ["service", "consumer", "source"])
EVENTS_REJECTED = Counter(
    "lianchuang_events_rejected_total",
    "Events dropped unapplied because their signature is missing or does not verify "
    "(reason: missing, mismatch, wrong_source, malformed)",
    ["service", "source", "reason"])
RELAY_LAG_EVENTS = Gauge(
    "lianchuang_relay_lag_events", "Events in the store not yet published", ["service"])
RELAY_LAG_SECONDS = Gauge(
    "lianchuang_relay_lag_seconds", "Age of the oldest event not yet published", ["service"])
RELAY_LEADER = Gauge(
    "lianchuang_relay_leader", "1 where this instance holds the relay lock", ["service", "instance"])
RELAY_POSITION = Gauge(
    "lianchuang_relay_position", "Last notification id confirmed by the broker", ["service"])
DEPENDENCY_UP = Gauge(
    "lianchuang_dependency_up",
    "1 while the service last reached this dependency (database, broker), 0 after a failure",
    ["service", "dependency"])
DEPENDENCY_FAILURES = Counter(
    "lianchuang_dependency_failures_total",
    "Failures to reach a dependency (database, broker) seen by the service's background work",
    ["service", "dependency"])
EVENTS_PARKED = Counter(
    "lianchuang_events_parked_total",
    "Events a projection or consumer parked after its handler kept raising (see list_parked)",
    ["service", "consumer"])
PARKED_RESOLVED = Counter(
    "lianchuang_parked_resolved_total", "Parked events ops retried or skipped",
    ["service", "consumer", "action"])
PROJECTION_LAG = Gauge(
    "lianchuang_projection_lag_events", "Events not yet applied to read models",
    ["service", "projection"])


class RpcMetrics(DependencyProvider):
    """Counts and times every RPC call by method and outcome (ok or error type)."""

    def setup(self):
        self.started: dict = {}
        self.handled = 0  # calls this instance handled (shows how load spreads)

    def worker_setup(self, worker_ctx):
        if isinstance(worker_ctx.entrypoint, Rpc):
            self.started[worker_ctx] = time.perf_counter()

    def worker_result(self, worker_ctx, result=None, exc_info=None):
        started = self.started.pop(worker_ctx, None)
        if started is None:
            return
        self.handled += 1
        outcome = "ok" if exc_info is None else exc_info[0].__name__
        labels = (self.container.service_name, worker_ctx.entrypoint.method_name, outcome)
        RPC_CALLS.labels(*labels).inc()
        RPC_LATENCY.labels(*labels).observe(time.perf_counter() - started)

    def worker_teardown(self, worker_ctx):
        self.started.pop(worker_ctx, None)


def dependency_ok(service: str, dependency: str) -> None:
    DEPENDENCY_UP.labels(service, dependency).set(1)


def dependency_failed(service: str, dependency: str) -> None:
    DEPENDENCY_UP.labels(service, dependency).set(0)
    DEPENDENCY_FAILURES.labels(service, dependency).inc()
