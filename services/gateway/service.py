"""Gateway service (HTTP 网关): nameko ``@http`` entrypoints only.

``POST /api/v1/<service>/<method>`` (JSON, Bearer token), ``GET
/api/v1/openapi.json``, the 组织部 dashboard (``/dashboard``, ``/login``), and
``/health`` and ``/metrics``. It owns no data and imports no other service: it
calls them over RPC with the caller's token. See services/gateway/application.py.
"""
import shared  # noqa: F401  (sets PSYCOPG_WAIT_FUNC before psycopg loads)

import json
import logging
import time

from kombu import Connection
from nameko.dependency_providers import Config
from nameko.web.handlers import http
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from werkzeug.wrappers import Response

from shared.errors import Forbidden, Unauthenticated
from shared.identity import ORG_ADMIN
from shared.logs import CallLog
from services.gateway import dashboard
from services.gateway.application import (ERROR_TEXT, bearer_token, error_body, error_status,
                                          read_json_object)
from services.gateway.backends import Backends, BearerIdentity, HttpMetrics

log = logging.getLogger(__name__)


def json_response(status: int, body) -> Response:
    return Response(json.dumps(body, ensure_ascii=False, default=str), status=status,
                    mimetype="application/json")


# The dashboard sends no script and is never framed or cached.
PAGE_HEADERS = {"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                                           "img-src 'self'; form-action 'self'; "
                                           "frame-ancestors 'none'",
                "X-Frame-Options": "DENY", "Cache-Control": "no-store",
                "Referrer-Policy": "same-origin", "X-Content-Type-Options": "nosniff"}


def html_response(status: int, page: str) -> Response:
    return Response(page, status=status, mimetype="text/html", headers=PAGE_HEADERS)


class GatewayService:
    name = "gateway"

    config = Config()
    backends = Backends()
    verify = BearerIdentity()
    call_log = CallLog()
    http_metrics = HttpMetrics()

    def _error(self, exc: Exception) -> Response:
        if error_status(exc) == 500:
            log.exception("gateway request failed")
        return json_response(error_status(exc), error_body(exc))

    # -- the JSON API ------------------------------------------------------------------
    @http("GET", "/api/v1/openapi.json")
    def openapi(self, request):
        try:
            return json_response(200, self.backends.catalogue.document(self.backends.describe))
        except Exception as exc:
            return self._error(exc)

    @http("POST", "/api/v1/<service>/<method>")
    def call_method(self, request, service, method):
        try:
            token = bearer_token(request.headers.get("Authorization"))
            self.verify(token)
            body = read_json_object(request.stream, request.content_length,
                                    self.backends.settings.max_body_bytes)
            self.backends.catalogue.validate(service, method, body, self.backends.describe)
            return json_response(200, self.backends.call(service, method, body, token))
        except Exception as exc:
            return self._error(exc)

    # -- the 组织部 dashboard ------------------------------------------------------------
    def _viewer(self, request):
        """The org_admin behind the cookie, or an HTML response to send instead."""
        token = request.cookies.get(dashboard.COOKIE)
        try:
            caller = self.verify(token)
        except Unauthenticated:
            return None, Response(status=303, headers={"Location": "/login"})
        if caller.role != ORG_ADMIN:
            return None, html_response(403, dashboard.render(
                "login.html.j2", error="看板仅供组织部 (org_admin) 使用"))
        return (caller, token), None

    def _page(self, request, build):
        viewer, refusal = self._viewer(request)
        if refusal is not None:
            return refusal
        caller, token = viewer

        def call(service, method, **kwargs):
            return self.backends.call(service, method, kwargs, token)
        try:
            return html_response(200, build(call, caller))
        except (Unauthenticated, Forbidden) as exc:
            return html_response(error_status(exc), dashboard.render(
                "login.html.j2", error=f"{ERROR_TEXT[error_status(exc)]}: {exc}"))
        except Exception as exc:
            status = error_status(exc)
            if status == 500:
                log.exception("dashboard failed")
            return html_response(status, f"<p>{ERROR_TEXT.get(status, '内部错误')}</p>")

    @http("GET", "/dashboard")
    def dashboard_page(self, request):
        return self._page(request, lambda call, caller: dashboard.render(
            "dashboard.html.j2", viewer=caller.sub, **dashboard.overview(call)))

    @http("GET", "/dashboard/orgs")
    def dashboard_orgs(self, request):
        params = request.args.to_dict()
        return self._page(request, lambda call, caller: dashboard.render(
            "orgs.html.j2", **dashboard.drill_down(call, params)))

    @http("GET", "/")
    def root(self, request):
        return Response(status=303, headers={"Location": "/dashboard"})

    @http("GET", "/login")
    def login_form(self, request):
        return html_response(200, dashboard.render("login.html.j2", error=None))

    @http("POST", "/login")
    def login(self, request):
        if (request.content_length or 0) > 16384:
            return html_response(413, dashboard.render("login.html.j2", error=ERROR_TEXT[413]))
        token = (request.form.get("token") or "").strip()
        try:
            caller = self.verify(token)
        except Unauthenticated as exc:
            return html_response(401, dashboard.render("login.html.j2", error=f"令牌无效: {exc}"))
        if caller.role != ORG_ADMIN:
            return html_response(403, dashboard.render(
                "login.html.j2", error="看板仅供组织部 (org_admin) 使用"))
        response = Response(status=303, headers={"Location": "/dashboard"})
        response.set_cookie(dashboard.COOKIE, token,
                            max_age=max(0, dashboard.token_expiry(token) - int(time.time())),
                            httponly=True, samesite="Strict", path="/",
                            secure=self.backends.settings.secure_cookie)
        return response

    @http("POST", "/logout")
    def logout(self, request):
        response = Response(status=303, headers={"Location": "/login"})
        response.delete_cookie(dashboard.COOKIE, path="/", httponly=True, samesite="Strict")
        return response

    # -- operations --------------------------------------------------------------------
    @http("GET", "/health")
    def health(self, request):
        try:
            with Connection(self.config["AMQP_URI"], connect_timeout=2) as conn:
                conn.ensure_connection(max_retries=1)
            checks = {"broker": "ok"}
        except Exception as exc:
            checks = {"broker": f"error: {type(exc).__name__}"}
        ok = all(v == "ok" for v in checks.values())
        return json_response(200 if ok else 503, {"service": self.name, "checks": checks,
                                                  "status": "ok" if ok else "unavailable"})

    @http("GET", "/metrics")
    def metrics(self, request):
        return Response(generate_latest(REGISTRY), mimetype=CONTENT_TYPE_LATEST)

