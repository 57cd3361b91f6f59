"""API description (接口说明): each service describes its own RPC methods.

The gateway publishes one OpenAPI document for portals that cannot speak
nameko's AMQP RPC. It must not hold a second, hand-written schema, and it
imports no service, so every service answers ``describe_api()`` with the JSON
schema of each method's input, taken from the very models that validate it:

* every command (a ``Mutation`` entrypoint) also takes ``command_id``;
* a method taking ``**payload`` is described by the ``shared.commands.Command``
  its application method parses (``SomeCommand.parse(payload)``, found in the
  method's code or in a ``self._helper(...)`` it calls; an application may name
  it outright in ``API_MODELS = {"method": Model}``);
* a method with named arguments (the queries) by a model built from its
  signature, typed from the application method's annotations (an unannotated
  ``*_id`` is a UUID).

The application method's docstring, or else the entrypoint's, is the summary.
"""
from __future__ import annotations

import ast
import inspect
import textwrap
import types
import typing
from typing import Any, Optional
from uuid import UUID

from nameko.rpc import Rpc
from pydantic import BaseModel, ConfigDict, create_model

from shared.commands import Command
from shared.entrypoints import COMMAND_ID_PATTERN, Mutation, query

REF_TEMPLATE = "#/components/schemas/{service}.{model}"
# Every command (a ``Mutation``) also takes ``command_id`` (shared.entrypoints).
COMMAND_ID_SCHEMA = {
    "type": "string", "pattern": COMMAND_ID_PATTERN.pattern, "title": "Command Id",
    "description": "Makes the command apply once: a repeat with the same id returns the "
                   "first answer (a UUID is a good choice)."}
# Entrypoints that describe rather than serve; never part of the published API.
NOT_PUBLISHED = {"describe_api"}


def rpc_methods(service_cls) -> list[str]:
    """Names of the service class's ``@rpc`` entrypoints, in source order."""
    names = []
    for name, fn in inspect.getmembers(service_cls, inspect.isfunction):
        entrypoints = getattr(fn, "nameko_entrypoints", ())
        if any(isinstance(e, Rpc) for e in entrypoints) and name not in NOT_PUBLISHED:
            names.append(name)
    return names


def _parsed_models(fn, owner, seen: set) -> list[type[Command]]:
    """Command (and Query) classes ``fn`` parses (``X.parse(…)``, ``X.of(…)``),
    directly or through ``self.<helper>(…)``."""
    if fn in seen:
        return []
    seen.add(fn)
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    except (OSError, TypeError, SyntaxError):
        return []
    found, helpers = [], []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        target = node.func.value
        if node.func.attr in ("parse", "of") and isinstance(target, ast.Name):
            model = fn.__globals__.get(target.id)
            if isinstance(model, type) and issubclass(model, Command) and model not in found:
                found.append(model)
        elif isinstance(target, ast.Name) and target.id == "self":
            helper = getattr(owner, node.func.attr, None)
            if inspect.isfunction(helper):
                helpers.append(helper)
    if found:
        return found
    for helper in helpers:
        found.extend(m for m in _parsed_models(helper, owner, seen) if m not in found)
    return found


def _source_tree(fn):
    try:
        return ast.parse(textwrap.dedent(inspect.getsource(inspect.unwrap(fn))))
    except (OSError, TypeError, SyntaxError):
        return None


def _attribute_class(cls, attr: str):
    """The class of ``cls().<attr>``: a class attribute's, or what ``__init__``
    assigns (``self.programme = ProgrammeOperations(self)``)."""
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        tree = _source_tree(init) if init is not None else None
        for node in ast.walk(tree) if tree is not None else ():
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) and \
                    isinstance(node.value.func, ast.Name) and any(
                        isinstance(t, ast.Attribute) and t.attr == attr and
                        isinstance(t.value, ast.Name) and t.value.id == "self"
                        for t in node.targets):
                found = init.__globals__.get(node.value.func.id)
                if isinstance(found, type):
                    return found
    return None


def application_method(service_cls, app_cls, method: str):
    """The application method an entrypoint hands its work to: ``self.app.<method>``,
    or a sub-domain's (``self.app.programme.<method>``)."""
    tree = _source_tree(getattr(service_cls, method))
    for node in ast.walk(tree) if tree is not None else ():
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        chain, target = [node.func.attr], node.func.value
        while isinstance(target, ast.Attribute):
            chain.insert(0, target.attr)
            target = target.value
        if not (isinstance(target, ast.Name) and target.id == "self" and chain[0] == "app"):
            continue
        owner = app_cls
        for attr in chain[1:-1]:
            owner = _attribute_class(owner, attr) if owner is not None else None
        fn = getattr(owner, chain[-1], None) if owner is not None else None
        if inspect.isfunction(fn):
            return fn, owner
    return getattr(app_cls, method, None), app_cls


def _param_type(name: str, param: inspect.Parameter, hints: dict, known: dict):
    if name in known:  # the type the service's commands give a field of that name
        field = known[name]
        return field if param.default is param.empty or field is None else Optional[field]
    if name in hints:
        return hints[name]
    default = param.default
    if isinstance(default, bool):
        return bool
    if isinstance(default, int):
        return int
    base = UUID if name == "id" or name.endswith("_id") else str
    return Optional[base] if default is None else base


def signature_model(service: str, method: str, fn, app_fn, known: dict) -> type[BaseModel]:
    """For a query that validates its arguments with no model: a model of the
    entrypoint's named arguments (its defaults kept), for the document only.

    An argument named like a field of one of the service's commands takes that
    field's type (``college_id`` is a UUID wherever a command says so); else the
    application method's annotation; else a UUID for ``*_id``, or the default's type.
    """
    try:
        hints = typing.get_type_hints(app_fn) if app_fn is not None else {}
    except Exception:
        hints = {}
    fields: dict[str, Any] = {}
    for name, param in inspect.signature(fn).parameters.items():
        if name == "self" or param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
            continue
        default = ... if param.default is param.empty else param.default
        fields[name] = (_param_type(name, param, hints, known), default)
    title = "".join(part.title() for part in method.split("_")) + "Arguments"
    return create_model(title, __config__=ConfigDict(extra="forbid"), **fields)


def _strip_optional(annotation):
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        return args[0]
    return annotation


def known_fields(models) -> dict:
    """Field name → type (without ``Optional``) across the service's commands."""
    known: dict = {}
    for model in models:
        for name, field in model.model_fields.items():
            known.setdefault(name, _strip_optional(field.annotation))
    return known


def _arguments(fn) -> set[str]:
    return {name for name, p in inspect.signature(fn).parameters.items()
            if name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}


def method_model(service: str, service_cls, app_cls, method: str,
                 known: dict | None = None) -> type[BaseModel] | None:
    """The model that validates ``method``'s input, or None (a free-form object)."""
    explicit = getattr(app_cls, "API_MODELS", {}) or {}
    if method in explicit:
        return explicit[method]
    fn = getattr(service_cls, method)
    app_fn, owner = application_method(service_cls, app_cls, method)
    models = _parsed_models(app_fn, owner, set()) if app_fn is not None else []
    if _takes_payload(fn):
        return models[0] if models else None
    # a query: the model it checks its arguments with, when that model names them all
    arguments = _arguments(fn)
    for model in models:
        if arguments <= set(model.model_fields):
            return model
    return signature_model(service, method, fn, app_fn, known or {})


def is_command(service_cls, method: str) -> bool:
    entrypoints = getattr(getattr(service_cls, method), "nameko_entrypoints", ())
    return any(isinstance(e, Mutation) for e in entrypoints)


def _takes_payload(fn) -> bool:
    return any(p.kind == p.VAR_KEYWORD for p in inspect.signature(fn).parameters.values())


def _summary(*fns) -> str:
    for fn in fns:
        doc = inspect.getdoc(fn) if fn is not None else None
        if doc:
            return doc.strip().split("\n\n")[0].replace("\n", " ")
    return ""


def describe_service(service: str, service_cls, app_cls) -> dict:
    """``{"service", "methods": {name: {"summary", "model", "input"}}, "schemas"}``.

    ``input`` is a JSON schema whose ``$ref``s point at
    ``#/components/schemas/<service>.<Model>``; ``schemas`` holds those.
    """
    ref = REF_TEMPLATE.replace("{service}", service)
    methods, schemas = {}, {}
    names = rpc_methods(service_cls)
    commands = [m for m in (method_model(service, service_cls, app_cls, n, None) for n in names
                            if _takes_payload(getattr(service_cls, n))) if m is not None]
    known = known_fields(commands)
    for method in names:
        model = method_model(service, service_cls, app_cls, method, known)
        app_fn = application_method(service_cls, app_cls, method)[0]
        entry = {"summary": _summary(app_fn, getattr(service_cls, method)),
                 "model": model.__name__ if model else None}
        if model is None:
            entry["input"] = {"type": "object"}
        else:
            schema = model.model_json_schema(ref_template=ref)
            for name, sub in schema.pop("$defs", {}).items():
                schemas[f"{service}.{name}"] = sub
            if is_command(service_cls, method):
                schema.setdefault("properties", {})["command_id"] = COMMAND_ID_SCHEMA
            entry["input"] = schema
        methods[method] = entry
    return {"service": service, "methods": methods, "schemas": schemas}


class ApiDescription:
    """Mixin: ``describe_api()`` over RPC, needing no token (it names no data).

    The service must have ``app`` (a ``shared.runtime.EventStore``).
    """

    _api_description: dict | None = None

    @query
    def describe_api(self):
        cls = type(self)
        if cls._api_description is None:
            cls._api_description = describe_service(self.name, cls, type(self.app))
        return cls._api_description
