"""JSON logs (结构化日志): one object a line, and one line for every call handled.

``JsonFormatter`` is named in each service's config.yaml ``LOGGING``;
``CallLog`` is a dependency every service declares. A call's line carries the
service, instance, entrypoint and method, the caller's ``sub`` and role, the
outcome and duration, and nameko's call id stack: a command sent through the
gateway shows the gateway's call id first in the stack of every service call
it caused. A command's line names the aggregate it changed (``aggregate_id``,
from its answer) and an event handler's line the event it applied (id, type,
source, aggregate) and the actor who caused it: one command is followed from
the gateway to every service that applied its events.

Never logged: tokens, and the personal fields of a payload (names, staff
numbers, contact details): a call's line records no arguments at all, and
every message is scrubbed of anything shaped like a token or an email address.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import socket
import time

from nameko.events import EventHandler
from nameko.extensions import DependencyProvider
from nameko.rpc import Rpc
from nameko.timer import Timer
from nameko.web.handlers import HttpRequestHandler

from shared.identity import CONTEXT_KEY, verify_token
from shared.secrets import AUTH_SECRET, MissingSecret, load_secret

CALLS = logging.getLogger("lianchuang.calls")
_TOKEN = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
_BEARER = re.compile(r"(?i)bearer\s+\S+")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")


def scrub(text: str) -> str:
    """No token, bearer header or email address survives into a log line."""
    text = _TOKEN.sub("[token]", text)
    text = _BEARER.sub("Bearer [token]", text)
    return _EMAIL.sub("[email]", text)


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "service", "instance", "message", …}`` per line.

    A record carrying ``call`` (a dict, see ``CallLog``) has its fields merged
    in. An expected error's traceback (nameko logs one per typed error) is
    dropped: its message may quote the caller's input, and ``CallLog`` already
    records the outcome.
    """

    def __init__(self, service: str | None = None, instance: str | None = None, **kwargs):
        super().__init__()
        self.service = service or os.environ.get("LIANCHUANG_SERVICE")
        self.instance = instance or os.environ.get("INSTANCE") or \
            f"{socket.gethostname()}-{os.getpid()}"

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(
                timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "service": self.service,
            "instance": self.instance,
        }
        call = getattr(record, "call", None)
        if isinstance(call, dict):
            line.update(call)
        expected = record.name == "nameko.containers" and str(record.msg).startswith("(expected)")
        if expected:
            line["message"] = "expected error (see the call's outcome)"
        else:
            line["message"] = scrub(record.getMessage())
            if record.exc_info:
                line["exc"] = scrub(self.formatException(record.exc_info))
        return json.dumps(line, ensure_ascii=False, default=str)


def _event_fields(envelope: dict) -> dict:
    """What a consumer's call line says of the event it applied."""
    actor = envelope.get("actor") or {}
    if not isinstance(actor, dict):
        actor = {}
    return {"event_id": envelope.get("event_id"), "event_type": envelope.get("type"),
            "event_source": envelope.get("source"), "actor_sub": actor.get("sub"),
            "actor_role": actor.get("role"), "aggregate_id": envelope.get("originator_id")}


def _entrypoint_kind(entrypoint) -> str:
    for kind, cls in (("rpc", Rpc), ("http", HttpRequestHandler), ("event", EventHandler),
                      ("timer", Timer)):
        if isinstance(entrypoint, cls):
            return kind
    if hasattr(entrypoint, "source_service"):  # shared.consumer's batch consumer
        return "event"
    return type(entrypoint).__name__


class CallLog(DependencyProvider):
    """Logs one line (``lianchuang.calls``, INFO) for every worker: rpc, http,
    event handler or timer."""

    def setup(self):
        config = self.container.config
        try:  # only to name the caller; Identity refuses to start without a secret
            self.secret = load_secret(AUTH_SECRET, config)
        except MissingSecret:
            self.secret = ""
        self.instance = str(config.get("INSTANCE") or f"{socket.gethostname()}-{os.getpid()}")
        self.started: dict = {}

    def worker_setup(self, worker_ctx):
        self.started[worker_ctx] = time.perf_counter()

    def _caller(self, worker_ctx) -> dict:
        token = worker_ctx.data.get(CONTEXT_KEY)
        if not token:
            return {"sub": None, "role": None}
        try:
            caller = verify_token(self.secret, token)
        except Exception:
            return {"sub": None, "role": None, "token": "invalid"}
        return {"sub": caller.sub, "role": caller.role}

    def worker_result(self, worker_ctx, result=None, exc_info=None):
        started = self.started.pop(worker_ctx, None)
        if started is None:
            return
        call = {
            "service": self.container.service_name,
            "instance": self.instance,
            "entrypoint": _entrypoint_kind(worker_ctx.entrypoint),
            "method": worker_ctx.entrypoint.method_name,
            **self._caller(worker_ctx),
            "outcome": "ok" if exc_info is None else exc_info[0].__name__,
            "duration_ms": round((time.perf_counter() - started) * 1000, 2),
            "call_id": worker_ctx.call_id,
            "call_id_stack": worker_ctx.call_id_stack,
        }
        envelope = worker_ctx.args[0] if worker_ctx.args else None
        if isinstance(envelope, list):  # a consumer's batch: one line per event
            if CALLS.isEnabledFor(logging.INFO):
                outcomes = result if isinstance(result, list) else [None] * len(envelope)
                for one, outcome in zip(envelope, outcomes):
                    if isinstance(one, dict):
                        CALLS.info("%s.%s %s", call["service"], call["method"], call["outcome"],
                                   extra={"call": {**call, **_event_fields(one),
                                                   "batch": len(envelope),
                                                   "event_outcome": outcome}})
            return
        if isinstance(envelope, dict) and "event_id" in envelope:
            call.update(_event_fields(envelope))
        elif isinstance(result, dict) and isinstance(result.get("id"), str):
            # a command answers with the aggregate it changed: the events it
            # caused carry that originator id (and, with a version, the last one's id)
            call["aggregate_id"] = result["id"]
            if isinstance(result.get("version"), int):
                call["event_id"] = f"{result['id']}:{result['version']}"
        status = getattr(result, "status_code", None)
        if status is not None:
            call["http_status"] = status
        CALLS.info("%s.%s %s", call["service"], call["method"], call["outcome"],
                   extra={"call": call})

    def worker_teardown(self, worker_ctx):
        self.started.pop(worker_ctx, None)
