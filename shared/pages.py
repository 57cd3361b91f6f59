"""A page of a service's notification log, as a projector reads it: binary
rows with each record's id made once per page (``_Id``), decoded by the
library's mapper with what it looks up per event looked up once per topic
(``EventDecoder``), under a paused cyclic collector (``collector_paused``).
Split from ``shared.projection``, which applies pages and parks what fails."""
from __future__ import annotations

import gc
from contextlib import contextmanager
from typing import Any, NamedTuple
from uuid import UUID, SafeUUID

from eventsourcing.persistence import Mapper, find_id_convertor
from eventsourcing.utils import resolve_topic
from psycopg.adapt import Loader
from psycopg.pq import Format
from psycopg.rows import tuple_row

_paused = 0  # pages being applied with the cyclic collector paused (green threads)
_collector_was_enabled = False


@contextmanager
def collector_paused():
    """The cyclic garbage collector paused while a page is read, decoded and
    applied. A page makes a few container objects per event that all live
    until it is written (events, their states, folded rows): each 700 of them
    set off a collection, every tenth of those a deeper one, and the deepest
    walks every object of the process, for nothing (none of them is garbage
    yet). It took a fifth of a rebuild. The collector runs again as soon as
    the last page being applied in this process is done (green threads apply
    pages of different projectors at once: counted)."""
    global _paused, _collector_was_enabled
    if _paused == 0:
        _collector_was_enabled = gc.isenabled()
        gc.disable()
    _paused += 1
    try:
        yield
    finally:
        _paused -= 1
        if _paused == 0 and _collector_was_enabled:
            gc.enable()


class _Id(UUID):
    """A record's id as a page of the log reads it: a UUID whose text is made
    once (folds key their rows by it as text, parking names it), shared by
    every event of that record in the page."""

    __slots__ = ("_text",)

    def __str__(self) -> str:
        try:
            return self._text
        except AttributeError:  # a copy (copy, pickle) keeps only the number
            return UUID.__str__(self)

    def __repr__(self) -> str:  # as a UUID's (error messages, parked errors)
        return f"UUID('{self}')"


class _IdLoader(Loader):
    """Binary uuid columns of a page as ``_Id``, one object per id in the page."""

    format = Format.BINARY

    def __init__(self, oid: int, context=None):
        super().__init__(oid, context)
        self._ids: dict[bytes, _Id] = {}

    def load(self, data) -> _Id:
        data = bytes(data)
        found = self._ids.get(data)
        if found is None:
            found = object.__new__(_Id)  # UUID() checks its arguments: slow, per row
            object.__setattr__(found, "int", int.from_bytes(data, "big"))
            object.__setattr__(found, "is_safe", SafeUUID.unknown)
            object.__setattr__(found, "_text", UUID.__str__(found))
            self._ids[data] = found
        return found


def _page_cursor(conn):
    """A cursor reading a page of the log: binary tuples, ids as ``_Id``."""
    page = conn.cursor(row_factory=tuple_row, binary=True)
    page.adapters.register_loader("uuid", _IdLoader)
    return page


class _Stored(NamedTuple):
    """A stored event as the library's mapper reads it."""

    originator_id: Any
    originator_version: int
    topic: str
    state: bytes


class EventDecoder:
    """The library mapper's ``to_domain_event`` for a page of events, with what
    it looks up per event (the class, the id convertor, the class version)
    looked up once per topic. Anything unusual (a mapper of another kind, an
    error) goes through the library's own method, which raises its own error."""

    def __init__(self, mapper):
        self.mapper = mapper
        self.fast = type(mapper) is Mapper
        self.topics: dict[str, tuple] = {}
        # Bound once per page: a rebuild decodes every event through here.
        self._decrypt = mapper.cipher.decrypt if mapper.cipher else None
        self._decompress = mapper.compressor.decompress if mapper.compressor else None
        self._decode = mapper.transcoder.decode

    def __call__(self, originator_id, version: int, topic: str, state: bytes):
        if not self.fast:
            return self.mapper.to_domain_event(_Stored(originator_id, version, topic, state))
        try:
            cls, convert, class_version = self.topics[topic]
        except KeyError:
            cls = resolve_topic(topic)
            found = self.topics[topic] = (
                cls, find_id_convertor(cls, type(originator_id)),
                getattr(cls, "class_version", 1))
            cls, convert, class_version = found
        try:
            plain = state
            if self._decrypt is not None:
                plain = self._decrypt(plain)
            if self._decompress is not None:
                plain = self._decompress(plain)
            event_state = self._decode(plain)
        except Exception:
            return self.mapper.to_domain_event(_Stored(originator_id, version, topic, state))
        event_state["originator_id"] = convert(originator_id)
        event_state["originator_version"] = version
        from_version = event_state.pop("class_version", 1)
        while from_version < class_version:
            getattr(cls, f"upcast_v{from_version}_v{from_version + 1}")(event_state)
            from_version += 1
        event = object.__new__(cls)
        object.__setattr__(event, "__dict__", event_state)
        return event


class _Item:
    """One event of a page: where it is, and its decoded event (None where no
    projection handles it) or the error decoding it raised; ``plan`` is what
    applies it (see ``Projector._plan``). Its record's id as text and its
    event id are made only when parking needs them."""

    __slots__ = ("position", "origin", "version", "topic", "event", "error", "plan")

    def __init__(self, position, origin, version, topic, event, error, plan):
        self.position = position
        self.origin = origin  # as read (a UUID)
        self.version = version
        self.topic = topic
        self.event = event
        self.error = error
        self.plan = plan

    @property
    def originator(self) -> str:
        return str(self.origin)

    @property
    def event_id(self) -> str:
        return f"{self.origin}:{self.version}"

    @property
    def targets(self) -> tuple:
        """The projections that handle it."""
        return tuple(projection for projection, _ in self.plan)
