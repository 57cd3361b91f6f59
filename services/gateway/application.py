"""Gateway application (HTTP 网关): the JSON API for portals that are not Python.

``POST /api/v1/<service>/<method>`` with a JSON object body calls that RPC
method with the body as keyword arguments and the Bearer token as nameko
context data ``auth_token``. The OpenAPI 3.1 document is assembled from what
each service says of itself (``describe_api``, see ``shared.api``), so the
schemas are the ones that validate the RPC payloads. The gateway checks a body
against that same schema before calling, and turns the typed errors into HTTP
statuses.
"""
from __future__ import annotations

import json
import threading
import time

from jsonschema import Draft202012Validator, FormatChecker
from nameko.exceptions import RemoteError

from shared.errors import ValidationError

API_PREFIX = "/api/v1"
# Typed errors (by class name, as ``RemoteError.exc_type`` names them) → HTTP status.
STATUS_OF = {"ValidationError": 400, "Unauthenticated": 401, "Forbidden": 403,
             "NotFound": 404, "Conflict": 409, "PayloadTooLarge": 413, "Unavailable": 503}
ERROR_TEXT = {400: "输入有误 bad input", 401: "未认证 no valid token",
              403: "无权限 not allowed", 404: "不存在 not found",
              409: "冲突 changed meanwhile, reload and retry", 413: "请求过大 body too large",
              503: "服务暂不可用 a service is unavailable"}


class PayloadTooLarge(Exception):
    """The request body is over the configured limit."""


class GatewaySettings:
    def __init__(self, config: dict):
        cfg = config.get("GATEWAY") or {}
        self.services = list(cfg.get("services") or ("organizations", "evaluation",
                                                     "notifications"))
        self.max_body_bytes = int(cfg.get("max_body_bytes") or 1 << 20)
        self.rpc_timeout = float(cfg.get("rpc_timeout") or 30)
        self.describe_ttl = float(cfg.get("describe_ttl") or 60)
        self.secure_cookie = str(cfg.get("secure_cookie", "false")).lower() in ("1", "true", "yes")


# -- errors as HTTP ------------------------------------------------------------------
# nameko's own errors, read as ours.
ALIASES = {"UnknownService": "Unavailable", "MethodNotFound": "NotFound",
           "IncorrectSignature": "ValidationError"}


def error_status(exc: BaseException) -> int:
    name = exc.exc_type if isinstance(exc, RemoteError) else type(exc).__name__
    return STATUS_OF.get(ALIASES.get(name, name), 500)


def error_body(exc: BaseException) -> dict:
    """``{"error", "message", "fields"?}``: never a traceback, never the token."""
    status = error_status(exc)
    if status == 500:
        return {"error": "InternalError", "message": "内部错误 internal error"}
    name = [k for k, v in STATUS_OF.items() if v == status][0]
    if isinstance(exc, RemoteError):
        message = str(exc.value) if exc.value else ERROR_TEXT[status]
    else:
        message = str(exc) or ERROR_TEXT[status]
    body = {"error": name, "message": message}
    if isinstance(exc, ValidationError):
        body["fields"] = exc.errors
    elif name == "ValidationError":
        value = exc.value if isinstance(exc, RemoteError) else None
        body["fields"] = value if isinstance(value, list) else [{"field": "body",
                                                                 "message": message}]
    return body


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


def read_json_object(stream, content_length: int | None, limit: int) -> dict:
    """The body as a JSON object ({} when empty), at most ``limit`` bytes."""
    if content_length is not None and content_length > limit:
        raise PayloadTooLarge(f"body of {content_length} bytes is over {limit}")
    raw = stream.read(limit + 1)
    if len(raw) > limit:
        raise PayloadTooLarge(f"body is over {limit} bytes")
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationError.single("body", f"not JSON: {exc}")
    if not isinstance(body, dict):
        raise ValidationError.single("body", "must be a JSON object of the method's arguments")
    return body


# -- the document --------------------------------------------------------------------
ERROR_SCHEMA = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {
        "error": {"type": "string", "enum": [k for k in STATUS_OF] + ["InternalError"]},
        "message": {"type": "string"},
        "fields": {"type": "array", "items": {
            "type": "object", "required": ["field", "message"],
            "properties": {"field": {"type": "string"}, "message": {"type": "string"}}}},
    },
}


def _error_response(description: str) -> dict:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def openapi_document(descriptions: list[dict]) -> dict:
    """OpenAPI 3.1 for every published method of every described service."""
    schemas = {"Error": ERROR_SCHEMA}
    paths = {}
    for described in descriptions:
        service = described["service"]
        schemas.update(described["schemas"])
        for method, spec in described["methods"].items():
            schema = spec["input"]
            needs_body = bool(schema.get("required"))
            operation = {
                "operationId": f"{service}.{method}",
                "tags": [service],
                "summary": spec["summary"] or f"{service}.{method}",
                "requestBody": {"required": needs_body,
                                "content": {"application/json": {"schema": schema}}},
                "responses": {
                    "200": {"description": "the method's result (see docs/rpc.md)",
                            "content": {"application/json": {"schema": {}}}},
                    **{str(status): {"$ref": f"#/components/responses/{name}"}
                       for name, status in STATUS_OF.items()},
                },
            }
            paths[f"{API_PREFIX}/{service}/{method}"] = {"post": operation}
    return {
        "openapi": "3.1.0",
        "info": {"title": "联创 Lianchuang API", "version": "1",
                 "description": "三级联创 services over HTTP/JSON. Every call is a POST of the "
                                "method's arguments as a JSON object, with a Bearer token."},
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer",
                                               "bearerFormat": "JWT"}},
            "responses": {name: _error_response(ERROR_TEXT[status])
                          for name, status in STATUS_OF.items()},
        },
    }


class ApiCatalogue:
    """The services' descriptions, fetched over RPC and kept ``ttl`` seconds."""

    def __init__(self, services: list[str], ttl: float):
        self.services = services
        self.ttl = ttl
        self._lock = threading.Lock()
        self._described: dict[str, tuple[float, dict]] = {}
        self._validators: dict[str, Draft202012Validator] = {}

    def description(self, service: str, fetch) -> dict:
        """``fetch(service)`` asks the service; raises ``Unavailable`` if it cannot."""
        now = time.monotonic()
        cached = self._described.get(service)
        if cached is not None and now - cached[0] < self.ttl:
            return cached[1]
        described = fetch(service)
        with self._lock:
            self._described[service] = (now, described)
            for key in [k for k in self._validators if k.startswith(service + ".")]:
                del self._validators[key]
        return described

    def document(self, fetch) -> dict:
        return openapi_document([self.description(s, fetch) for s in self.services])

    def validate(self, service: str, method: str, body: dict, fetch) -> None:
        """NotFound for an unknown service or method; ValidationError naming each bad field."""
        from shared.errors import NotFound

        if service not in self.services:
            raise NotFound(f"no service '{service}' behind this gateway")
        described = self.description(service, fetch)
        spec = described["methods"].get(method)
        if spec is None:
            raise NotFound(f"'{service}' has no method '{method}'")
        key = f"{service}.{method}"
        validator = self._validators.get(key)
        if validator is None:
            schema = {**spec["input"], "components": {"schemas": described["schemas"]}}
            validator = Draft202012Validator(schema, format_checker=FormatChecker())
            self._validators[key] = validator
        errors = []
        for err in sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path)):
            field = ".".join(str(p) for p in err.absolute_path)
            if not field and err.validator == "required":
                field = str(err.message).split("'")[1]
            elif not field and err.validator == "additionalProperties":
                field = ",".join(sorted(set(body) - set(err.schema.get("properties", {}))))
            errors.append({"field": field or "body", "message": err.message})
        if errors:
            raise ValidationError(errors)
