"""The event envelope: what a domain event looks like on RabbitMQ.

Documented in ``docs/events.md``. Built only by the relay, from the store's
notification log, never by a command handler (no dual writes).
"""
from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from enum import Enum
from typing import Any
from uuid import UUID

ENVELOPE_VERSION = 1
# Attributes every event class carries that are not part of its data.
_META = {"originator_id", "originator_version", "timestamp", "originator_topic"}
# Attributes recorded on events by convention (see shared.domain.AuditedAggregate).
_AUDIT = ("actor", "reason", "evidence")


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def event_type_of(domain_event: Any) -> str:
    """``Member.Transferred`` -> ``member_transferred``: the nameko event type."""
    qualname = type(domain_event).__qualname__
    return "_".join(snake(part) for part in qualname.split("."))


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


def build_envelope(domain_event: Any, position: int | None, source: str) -> dict:
    attrs = dict(domain_event.__dict__)
    data = {k: v for k, v in attrs.items() if k not in _META and k not in _AUDIT}
    originator_id = str(domain_event.originator_id)
    version = int(domain_event.originator_version)
    return {
        "envelope_version": ENVELOPE_VERSION,
        "event_id": f"{originator_id}:{version}",
        "type": event_type_of(domain_event),
        "source": source,
        "aggregate_type": type(domain_event).__qualname__.split(".")[0],
        "originator_id": originator_id,
        "originator_version": version,
        "position": int(position) if position is not None else None,
        "occurred_at": jsonable(domain_event.timestamp),
        "actor": jsonable(attrs.get("actor")),
        "reason": attrs.get("reason"),
        "evidence": jsonable(attrs.get("evidence")),
        "data": jsonable(data),
    }
