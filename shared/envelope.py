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

import orjson
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


_ORJSON_OPTIONS = (orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_SUBCLASS
                   | orjson.OPT_PASSTHROUGH_DATACLASS)


def _orjson_default(value: Any) -> Any:
    # What orjson hands back: subclasses of str/int/dict/list (enums among
    # them), sets, tuple subclasses, dataclasses, Decimals: as the Python path.
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, (set, frozenset, list, tuple)):
        return list(value)
    if isinstance(value, (str, int)):
        return (str if isinstance(value, str) else int)(value)
    return str(value)


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON types: UUIDs, dates and Decimals as strings,
    enums as their value, tuples and sets as lists."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return _scalar(value)
    if isinstance(value, (dict, list, tuple)):
        # Containers go through orjson and back, in C (the recursion below was
        # a tenth of the relay's time), with the same result for what events
        # hold (tests/unit/test_envelope_jsonable.py); what orjson refuses
        # (integers past 64 bits, lone surrogates) takes the Python path.
        try:
            return orjson.loads(orjson.dumps(value, default=_orjson_default,
                                             option=_ORJSON_OPTIONS))
        except (TypeError, orjson.JSONEncodeError):
            pass
        if isinstance(value, dict):
            return {str(k): jsonable(v) for k, v in value.items()}
        return [jsonable(v) for v in value]
    return _python_jsonable(value)


def _scalar(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    return value


def _python_jsonable(value: Any) -> Any:
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


# --- straight from the stored bytes (the relay's path) ----------------------
_TYPE_MARK = b'"_type_"'


def _dashed(hex32: str) -> str:
    return f"{hex32[:8]}-{hex32[8:12]}-{hex32[12:16]}-{hex32[16:20]}-{hex32[20:]}"


# The library's three transcodings (``Application.register_transcodings``) as the
# strings ``jsonable`` would make of the objects they revive: a UUID dashed, a
# datetime and a Decimal as the ISO text and the string they were stored as.
_PLAIN = {"uuid_hex": _dashed, "datetime_iso": str, "decimal_str": str}


class _NotPlain(Exception):
    """A stored event the plain path does not read (the object path does)."""


def _plain(value: Any, marks: int) -> tuple[Any, int]:
    """``value`` with its transcoded parts as strings; ``marks`` counts the
    ``"_type_"`` keys not yet met, so nothing is visited once all are found
    (as ``shared.transcoding`` revives)."""
    if isinstance(value, dict):
        if "_type_" in value:
            if len(value) == 2 and "_data_" in value:
                convert = _PLAIN.get(value["_type_"])
                if convert is None or not isinstance(value["_data_"], str):
                    raise _NotPlain(value["_type_"])
                return convert(value["_data_"]), marks - 1
            raise _NotPlain("_type_")
        for key, item in value.items():
            if not marks:
                break
            if isinstance(item, (dict, list)):
                value[key], marks = _plain(item, marks)
        return value, marks
    if isinstance(value, list):
        for index, item in enumerate(value):
            if not marks:
                break
            if isinstance(item, (dict, list)):
                value[index], marks = _plain(item, marks)
    return value, marks


class StoredEnvelopes:
    """``build_envelope(mapper.to_domain_event(stored), …)`` for a stored event
    (a notification), without making the event object: the stored JSON is
    decrypted and parsed in C and its transcoded values written straight as the
    strings the envelope carries (the object path revived them as UUIDs and
    datetimes only for ``jsonable`` to turn them back into strings: most of the
    relay's time). The answer is the same (tests/unit/test_envelope_jsonable.py);
    anything unusual — another mapper, a class version to upcast, a number
    orjson cannot read, a transcoding other than the library's three — takes
    the object path."""

    def __init__(self, mapper, source: str, audience: str = PUBLIC):
        from eventsourcing.persistence import Mapper
        from eventsourcing.utils import resolve_topic
        self.mapper, self.source, self.audience = mapper, source, audience
        self.fast = type(mapper) is Mapper
        self._resolve = resolve_topic
        self._topics: dict[str, tuple] = {}
        self.object_path = 0  # how many events took the object path

    def _topic(self, topic: str) -> tuple:
        found = self._topics.get(topic)
        if found is None:
            cls = self._resolve(topic)
            event_type, aggregate_type = _names_of(cls)
            private = (getattr(cls, PRIVATE_FIELDS, frozenset()) if self.audience == PUBLIC
                       else frozenset())
            found = self._topics[topic] = (
                cls, getattr(cls, INTERNAL, False), getattr(cls, "class_version", 1),
                event_type, aggregate_type, private)
        return found

    def is_internal(self, notification) -> bool:
        return self._topic(notification.topic)[1]

    def __call__(self, notification) -> dict:
        """The envelope of ``notification`` (its ``id`` is the position)."""
        cls, _, class_version, event_type, aggregate_type, private = self._topic(
            notification.topic)
        if self.fast:
            try:
                return self._plain_envelope(notification, class_version, event_type,
                                            aggregate_type, private)
            except _NotPlain:
                pass
        self.object_path += 1
        return build_envelope(self.mapper.to_domain_event(notification), notification.id,
                              self.source, self.audience)

    def _plain_envelope(self, notification, class_version, event_type, aggregate_type,
                        private) -> dict:
        mapper, state = self.mapper, notification.state
        try:
            if mapper.cipher:
                state = mapper.cipher.decrypt(state)
            if mapper.compressor:
                state = mapper.compressor.decompress(state)
            if b"0000000000000000000" in state.translate(_DIGITS_TO_ZERO):
                raise _NotPlain("long number")  # orjson reads past 64 bits as a float
            attrs = orjson.loads(state)
        except (ValueError, orjson.JSONDecodeError) as e:
            raise _NotPlain(str(e)) from None
        if not isinstance(attrs, dict) or attrs.pop("class_version", 1) != class_version:
            raise _NotPlain("class version")
        marks = state.count(_TYPE_MARK)
        if marks:
            attrs, _ = _plain(attrs, marks)
        data = {k: v for k, v in attrs.items() if k not in _META and k not in _AUDIT}
        if private:
            data = _without(data, private)
        originator_id = str(notification.originator_id)
        version = int(notification.originator_version)
        return {
            "envelope_version": ENVELOPE_VERSION,
            "event_id": f"{originator_id}:{version}",
            "type": event_type,
            "source": self.source,
            "aggregate_type": aggregate_type,
            "originator_id": originator_id,
            "originator_version": version,
            "position": int(notification.id),
            "occurred_at": attrs.get("timestamp"),
            "actor": attrs.get("actor"),
            "reason": attrs.get("reason"),
            "evidence": attrs.get("evidence"),
            "data": data,
        }


_DIGITS_TO_ZERO = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
