"""The gateway's calls to the services behind it (后端服务), over nameko RPC.

Each call carries the HTTP caller's token as context data ``auth_token`` and
nameko's call id stack (so the services' logs show the gateway call that caused
theirs). A service that is not running, or does not answer within
``GATEWAY.rpc_timeout`` seconds, is ``Unavailable`` (HTTP 503).
"""
from __future__ import annotations

import time

import eventlet
from nameko.exceptions import MethodNotFound, UnknownService
from nameko.extensions import DependencyProvider
from nameko.rpc import MethodProxy, ReplyListener

from prometheus_client import Counter, Histogram

from shared.identity import CONTEXT_KEY, Identity, verify_token
from shared.errors import Unavailable
from services.gateway.application import ApiCatalogue, GatewaySettings

HTTP_REQUESTS = Counter("lianchuang_http_requests_total",
                        "HTTP requests the gateway answered, by route and status",
                        ["service", "route", "status"])
HTTP_LATENCY = Histogram("lianchuang_http_duration_seconds",
                         "Time the gateway took to answer, by route",
                         ["service", "route"],
                         buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))


class Backends(DependencyProvider):
    """Gives a worker ``call(service, method, payload, token)``, ``describe(service)``,
    the gateway's settings and its catalogue of the services' APIs."""

    rpc_reply_listener = ReplyListener()

    def setup(self):
        self.settings = GatewaySettings(self.container.config)
        self.catalogue = ApiCatalogue(self.settings.services, self.settings.describe_ttl)

    def get_dependency(self, worker_ctx):
        return BackendCaller(worker_ctx, self.rpc_reply_listener, self.settings, self.catalogue)


class BackendCaller:
    def __init__(self, worker_ctx, reply_listener, settings: GatewaySettings,
                 catalogue: ApiCatalogue):
        self.worker_ctx = worker_ctx
        self.reply_listener = reply_listener
        self.settings = settings
        self.catalogue = catalogue
        self.timeout = settings.rpc_timeout

    def call(self, service: str, method: str, payload: dict, token: str | None = None):
        data = self.worker_ctx.data
        if token:
            data[CONTEXT_KEY] = token
        else:
            data.pop(CONTEXT_KEY, None)
        proxy = MethodProxy(self.worker_ctx, service, method, self.reply_listener)
        try:
            reply = proxy.call_async(**payload)
        except UnknownService:
            raise Unavailable(f"service '{service}' is not running")
        try:
            with eventlet.Timeout(self.timeout):
                return reply.result()
        except eventlet.Timeout:
            raise Unavailable(f"service '{service}' did not answer within {self.timeout:g}s")

    def describe(self, service: str) -> dict:
        try:
            return self.call(service, "describe_api", {})
        except MethodNotFound:
            raise Unavailable(f"service '{service}' does not describe its API (an older version?)")


class HttpMetrics(DependencyProvider):
    """Counts and times every HTTP answer by route (the URL rule) and status."""

    def setup(self):
        self.started: dict = {}

    def worker_setup(self, worker_ctx):
        self.started[worker_ctx] = time.perf_counter()

    def worker_result(self, worker_ctx, result=None, exc_info=None):
        started = self.started.pop(worker_ctx, None)
        if started is None:
            return
        route = getattr(worker_ctx.entrypoint, "url", worker_ctx.entrypoint.method_name)
        status = getattr(result, "status_code", 500 if exc_info else 200)
        name = self.container.service_name
        HTTP_REQUESTS.labels(name, route, str(status)).inc()
        HTTP_LATENCY.labels(name, route).observe(time.perf_counter() - started)

    def worker_teardown(self, worker_ctx):
        self.started.pop(worker_ctx, None)


class BearerIdentity(Identity):
    """Gives a worker ``verify(token)`` -> Caller (or ``Unauthenticated``), with the
    secret ``Identity`` settles on (a service that has none does not start)."""

    def get_dependency(self, worker_ctx):
        return lambda token: verify_token(self.secret, token)
