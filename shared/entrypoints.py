"""RPC entrypoints every service uses: ``command`` for what changes state,
``query`` for what reads it.

Both translate infrastructure failures into the documented ``Unavailable``
(a database or broker outage never reaches a caller as ``OperationalError``),
and both survive a broker that dies while a reply is being sent: the reply is
dropped and logged, the request stays unacknowledged and comes back when the
connection does, and the container keeps running.

``command`` also makes a command apply once. Nameko acknowledges a request
after replying, so a worker that dies between its commit and its reply has its
request delivered again. Each command runs under a key — the caller's
``command_id`` when given, otherwise the AMQP correlation id of the request —
and the store records the key and the command's result in the same transaction
as its events (``shared.store``). A repeat finds the key and returns the first
result without applying anything.
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import re
from functools import partial

import psycopg
from eventsourcing.persistence import InterfaceError, OperationalError
from nameko.exceptions import ContainerBeingKilled, MalformedRequest, RpcTimeout, UnknownService
from nameko.extensions import DependencyProvider
from nameko.rpc import Rpc, RpcConsumer
from psycopg_pool import PoolTimeout

from shared.errors import EXPECTED_ERRORS, Unavailable, ValidationError

log = logging.getLogger(__name__)

# The request's AMQP correlation id travels from the entrypoint to the worker
# under this context key; ``CommandContext`` removes it before the worker runs,
# so it never leaks into the calls the worker makes.
CORRELATION_KEY = "_lianchuang_correlation_id"
COMMAND_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$")


class ResilientRpcConsumer(RpcConsumer):
    """Nameko's RPC consumer, except that a reply the broker cannot take is
    dropped (logged) instead of killing the container. The request is then
    neither acknowledged nor lost: the broker redelivers it after the
    connection comes back, and the command log answers it from its record."""

    def handle_result(self, message, result, exc_info):
        try:
            return super().handle_result(message, result, exc_info)
        except Exception:  # the broker went away between the work and the reply
            log.warning("reply to %s could not be sent; the request will be redelivered",
                        message.properties.get("correlation_id"), exc_info=True)
            return result, exc_info


class ResilientRpc(Rpc):
    """An RPC entrypoint on ``ResilientRpcConsumer`` that hands the request's
    correlation id to the worker."""

    rpc_consumer = ResilientRpcConsumer()

    def handle_message(self, body, message):
        # nameko's Rpc.handle_message, plus the correlation id in the context.
        try:
            args, kwargs = body["args"], body["kwargs"]
        except KeyError:
            raise MalformedRequest("Message missing `args` or `kwargs`")
        self.check_signature(args, kwargs)
        context_data = self.unpack_message_headers(message)
        correlation_id = message.properties.get("correlation_id")
        if correlation_id:
            context_data[CORRELATION_KEY] = correlation_id
        handle_result = partial(self.handle_result, message)
        try:
            self.container.spawn_worker(self, args, kwargs, context_data=context_data,
                                        handle_result=handle_result)
        except ContainerBeingKilled:
            self.rpc_consumer.requeue_message(message)


class Mutation(ResilientRpc):
    """The entrypoint of a method that changes something (a command). Its
    caller is refused with ``Forbidden`` when the role is read-only (the
    auditor, 纪委办, reads everything and changes nothing), before the payload
    is even read (``shared.identity.Identity``)."""


def translate_infrastructure_errors(func, signature_of=None):
    """Arguments that do not fit the method are a ``ValidationError``; database
    and broker outages become ``Unavailable``; the documented errors pass
    unchanged."""
    signature = inspect.signature(signature_of or func)

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise ValidationError.single("arguments", str(exc)) from None
        try:
            return func(*args, **kwargs)
        except EXPECTED_ERRORS:
            raise
        except (OperationalError, InterfaceError, PoolTimeout, psycopg.OperationalError,
                psycopg.InterfaceError, ConnectionError, OSError, UnknownService,
                RpcTimeout) as exc:
            log.warning("%s: infrastructure unavailable: %s", func.__name__, exc)
            raise Unavailable(
                "the service cannot reach its database, the broker or a service it needs right now; "
                "nothing was changed unless the command's answer says so — retry with the "
                "same command_id") from None

    return wrapper


class CommandContext(DependencyProvider):
    """Gives the worker the key its command runs under (see module doc)."""

    def worker_setup(self, worker_ctx):
        worker_ctx.correlation_id = worker_ctx.context_data.pop(CORRELATION_KEY, None)

    def get_dependency(self, worker_ctx):
        return worker_ctx


def command_key(payload: dict, worker_ctx, service: str, method: str) -> str | None:
    """The key a command runs under: the caller's ``command_id`` (popped from
    the payload), else the request's correlation id."""
    command_id = payload.pop("command_id", None)
    if command_id is not None:
        if not isinstance(command_id, str) or not COMMAND_ID_PATTERN.match(command_id):
            raise ValidationError.single(
                "command_id", "1-100 characters: letters, digits and . _ : - "
                              "(a UUID is a good choice)")
        return f"{service}:id:{command_id}"
    correlation_id = getattr(worker_ctx, "correlation_id", None)
    if correlation_id:
        return f"{service}:amqp:{correlation_id}"
    return None


def _with_command_id(func):
    """``func``'s signature, accepting ``command_id`` too (popped before the call)."""
    signature = inspect.signature(func)
    params = list(signature.parameters.values())
    if not any(p.kind is p.VAR_KEYWORD for p in params) and "command_id" not in signature.parameters:
        extra = inspect.Parameter("command_id", inspect.Parameter.KEYWORD_ONLY, default=None)
        keyword_at = next((i for i, p in enumerate(params) if p.kind is p.VAR_KEYWORD),
                          len(params))
        params.insert(keyword_at, extra)

    def stand_in(*args, **kwargs):
        pass

    stand_in.__signature__ = signature.replace(parameters=params)
    return stand_in


def command(func):
    """A state-changing RPC method: applied once per key, typed errors."""
    method = func.__name__

    @functools.wraps(func)
    def entry(self, *args, **payload):
        if args:
            raise ValidationError.single("arguments", "pass arguments by name")
        with _session(self):
            caller = self.caller()  # unauthenticated calls never reach the command log
            key = command_key(payload, self.command_context, self.name, method)
            return self.app.run_command(key, method, caller,
                                        lambda: func(self, **payload))

    return Mutation.decorator(expected_exceptions=EXPECTED_ERRORS)(
        translate_infrastructure_errors(entry, signature_of=_with_command_id(func)))


def _session(service):
    """The call's database session (``EventSourcedApplication.session``): one
    pooled connection for every statement of the call."""
    session = getattr(getattr(service, "app", None), "session", None)
    return session() if session is not None else contextlib.nullcontext()


def query(func):
    """A read-only RPC method: typed errors, resilient replies; its queries
    share one connection (``EventSourcedApplication.session``)."""

    @functools.wraps(func)
    def in_one_session(self, *args, **kwargs):
        with _session(self):
            return func(self, *args, **kwargs)

    return ResilientRpc.decorator(expected_exceptions=EXPECTED_ERRORS)(
        translate_infrastructure_errors(in_one_session, signature_of=func))


rpc = query  # for mixins whose methods are plain RPC
