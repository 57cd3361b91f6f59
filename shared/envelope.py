"""The event envelope: what a domain event looks like on RabbitMQ.

Documented in ``docs/events.md``. Built only by the relay, from the store's
notification log, never by a command handler (no dual writes).

Personal data (个人信息) stays off the bus: an aggregate declares which of its
events' fields are personal (``@personal_data(Registered=("staff_no",))``) and
the envelope has an audience. ``PUBLIC`` (the relay, ``read_events`` and
``read_aggregate_events``, i.e. whatever another service can read) leaves those
fields out; ``AUDIT`` (the owning service's ``get_history`` for 纪委办 auditors)
keeps the full record. A new event is public unless its aggregate lists fields.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import re
from decimal import Decimal
from enum import Enum
from typing import Any
from uuid import UUID

from eventsourcing.domain import CanMutateAggregate

ENVELOPE_VERSION = 1
# Attributes every event class carries that are not part of its data.
_META = {"originator_id", "originator_version", "timestamp", "originator_topic"}
# Attributes recorded on events by convention (see shared.domain.AuditedAggregate).
_AUDIT = ("actor", "reason", "evidence")
# Audiences of an envelope: other services (the bus, gap filling) or the owner's auditors.
PUBLIC, AUDIT = "public", "audit"
AUDIENCES = (PUBLIC, AUDIT)
# Class attribute of an event class: its personal fields ("field" or "field.key"
# for a key of a dict field, e.g. "changes.email").
PRIVATE_FIELDS = "private_fields"


def personal_data(**events: tuple[str, ...]):
    """Class decorator for an aggregate: ``EventName=("field", "dict_field.key", ...)``
    lists each event's personal fields, left out of every envelope but the
    auditors' (``AUDIT``). Names are checked against the event's fields, so a
    typo fails at import, not silently on the bus."""
    def declare(aggregate_cls):
        for event_name, fields in events.items():
            event_cls = getattr(aggregate_cls, event_name)
            known = {f.name for f in dataclasses.fields(event_cls)}
            unknown = [f for f in fields if f.split(".", 1)[0] not in known]
            if unknown:
                raise TypeError(f"{aggregate_cls.__name__}.{event_name} has no field "
                                f"{', '.join(unknown)}")
            setattr(event_cls, PRIVATE_FIELDS, frozenset(fields))
        return aggregate_cls
    return declare


# Class attribute of an event class: the event stays in its service (not published).
INTERNAL = "internal_event"


def internal(aggregate_cls):
    """Class decorator for an aggregate whose events are the service's own
    bookkeeping (e.g. the sibling-name uniqueness index, the audit-read
    records): the relay does not publish them (its position still advances
    past them). Whole aggregates, never single event types, so that a
    consumer never sees a gap in an aggregate's versions. See docs/events.md."""
    for value in vars(aggregate_cls).values():
        if isinstance(value, type) and issubclass(value, CanMutateAggregate):
            setattr(value, INTERNAL, True)
    return aggregate_cls


def is_internal(domain_event: Any) -> bool:
    return getattr(type(domain_event), INTERNAL, False)


def private_fields_of(domain_event: Any) -> frozenset:
    return getattr(type(domain_event), PRIVATE_FIELDS, frozenset())


def _without(data: dict, paths) -> dict:
    """A copy of ``data`` without the given fields (``field`` or ``field.key``)."""
    data = dict(data)
    for path in paths:
        field, _, key = path.partition(".")
        if not key:
            data.pop(field, None)
        elif isinstance(data.get(field), dict):
            data[field] = _without(data[field], [key])
    return data


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def event_type_of(domain_event: Any) -> str:
    """``Member.Transferred`` -> ``member_transferred``: the nameko event type."""
    return _names_of(type(domain_event))[0]


@functools.lru_cache(maxsize=None)
def _names_of(event_cls: type) -> tuple[str, str]:
    """(event type, aggregate type) of an event class, worked out once per class."""
    qualname = event_cls.__qualname__
    return "_".join(snake(part) for part in qualname.split(".")), qualname.split(".")[0]


def jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    return str(value)


def build_envelope(domain_event: Any, position: int | None, source: str,
                   audience: str = PUBLIC) -> dict:
    """The envelope of a stored event for an audience: ``PUBLIC`` leaves the
    event's personal fields out, ``AUDIT`` keeps everything."""
    if audience not in AUDIENCES:
        raise ValueError(f"unknown audience {audience!r}; one of {', '.join(AUDIENCES)}")
    attrs = dict(domain_event.__dict__)
    data = {k: v for k, v in attrs.items() if k not in _META and k not in _AUDIT}
    if audience == PUBLIC:
        data = _without(data, private_fields_of(domain_event))
    originator_id = str(domain_event.originator_id)
    version = int(domain_event.originator_version)
    event_type, aggregate_type = _names_of(type(domain_event))
    return {
        "envelope_version": ENVELOPE_VERSION,
        "event_id": f"{originator_id}:{version}",
        "type": event_type,
        "source": source,
        "aggregate_type": aggregate_type,
        "originator_id": originator_id,
        "originator_version": version,
        "position": int(position) if position is not None else None,
        "occurred_at": jsonable(domain_event.timestamp),
        "actor": jsonable(attrs.get("actor")),
        "reason": attrs.get("reason"),
        "evidence": jsonable(attrs.get("evidence")),
        "data": jsonable(data),
    }
