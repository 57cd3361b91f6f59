"""Commands and queries as small pydantic models: RPC arguments are checked
here, before anything reaches the domain or the database, and every bad field
is named at once.

Safe text (安全文本), the discipline every command inherits:

* every string, wherever it sits (a field, a list item, a map key or value),
  refuses NUL, lone surrogates, the other C0/C1 control characters (tab, line
  feed and carriage return only in multi-line text: reasons, comments,
  descriptions, documents) and the bidirectional controls (U+061C, U+200E,
  U+200F, U+202A-U+202E, U+2066-U+2069) that can make a name read differently
  from what is stored;
* every string and list has a maximum length (the annotated types below), and
  every integer an upper bound;
* numbers refuse NaN and ±Infinity.

A model that declares a ``str`` without one of the annotated types, an ``int``
without an upper bound, or a list or map without a maximum length fails when
its class is defined, so a new command cannot forget the rules.
"""
from __future__ import annotations

import functools
import math
import re
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Optional, TypeVar, Union
from uuid import UUID

import annotated_types
from pydantic import (BaseModel, ConfigDict, Field, StringConstraints, ValidationInfo,
                      field_validator)
from pydantic import ValidationError as PydanticValidationError
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError, core_schema

from shared.errors import ValidationError, validation_error_from_pydantic

C = TypeVar("C", bound="Command")

# -- limits (documented in docs/rpc.md, "Limits and characters") ---------------------
NAME_MAX = 100            # names of organisations, members, contacts, cycles
KEY_MAX = 100             # codes, keys, caller-chosen ids, groups
MOMENT_MAX = 64           # ISO-8601 date or timestamp text
REASON_MAX = 2000         # the reason recorded with a change
TEXT_MAX = 4000           # comments, descriptions, plans, objections, appeals
EVIDENCE_ITEM_MAX = 500   # one piece of evidence (a document reference)
EVIDENCE_ITEMS_MAX = 20   # pieces of evidence per list
ADDRESS_MAX = 500         # an email address or a webhook URL
DOCUMENT_MAX = 200_000    # a scheme file's text; also the total text of a free-form mapping
DOCUMENT_NODES_MAX = 20_000  # values in a free-form mapping (aliases counted each time)
DOCUMENT_DEPTH_MAX = 32
BATCH_MAX = 500           # ids in one batch (approve, mark_read, ...)
ANY_STRING_MAX = DOCUMENT_MAX  # no string anywhere in a payload is longer
INT_MAX = 2**31 - 1       # counters, versions, pages
POSITION_MAX = 2**63 - 1  # log positions (bigint)

_BIDI = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
_POISON = re.compile(f"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff{_BIDI}]")
_POISON_SINGLE_LINE = re.compile(f"[\x00-\x1f\x7f-\x9f\ud800-\udfff{_BIDI}]")


def bad_character(text: str, multiline: bool = True) -> str | None:
    """Why ``text`` is refused (the first offending character), or None."""
    found = (_POISON if multiline else _POISON_SINGLE_LINE).search(text)
    if found is None:
        return None
    i, code = found.start(), ord(found.group())
    if code == 0:
        what = "a NUL character"
    elif 0xD800 <= code <= 0xDFFF:
        what = "a lone surrogate"
    elif found.group() in "\t\n\r":
        what = "a line break or tab (single-line text)"
    elif code < 0x20 or 0x7F <= code <= 0x9F:
        what = "a control character"
    else:
        what = "a bidirectional control"
    return f"contains {what} U+{code:04X} (position {i})"


def problems_in(value: Any, path: str = "", budget: list | None = None,
                depth: int = 0, long_ok: bool = False,
                json_only: bool = False) -> list[tuple[str, str]]:
    """Poison anywhere in a JSON-like value: bad characters in any string or map
    key, non-finite numbers, over-long strings, too deep or too large a value
    (and, with ``json_only``, anything but JSON values and integers beyond 64
    bits). Returns ``[(path, message)]`` (path relative to the value, e.g. ``[3]``)."""
    if budget is None:
        budget = [DOCUMENT_NODES_MAX]
    budget[0] -= 1
    if budget[0] < 0:
        return [(path, f"too large: more than {DOCUMENT_NODES_MAX} values")]
    if depth > DOCUMENT_DEPTH_MAX:
        return [(path, f"nested deeper than {DOCUMENT_DEPTH_MAX} levels")]
    if isinstance(value, str):
        if len(value) > ANY_STRING_MAX and not long_ok:
            return [(path, f"text longer than {ANY_STRING_MAX} characters")]
        why = bad_character(value)
        return [(path, why)] if why else []
    if isinstance(value, float):
        if not math.isfinite(value):
            return [(path, "must be a finite number (NaN and Infinity are refused)")]
        return []
    if json_only:
        if isinstance(value, int) and not isinstance(value, bool) and \
                not -POSITION_MAX <= value <= POSITION_MAX:
            return [(path, "an integer beyond 64 bits")]
        if not isinstance(value, (int, bool, list, dict)) and value is not None:
            return [(path, f"not a JSON value ({type(value).__name__})")]
    found: list[tuple[str, str]] = []
    if isinstance(value, dict):
        for key, item in value.items():
            key_text = str(key)
            if json_only and not isinstance(key, str):
                found.append((path, f"key {key_text[:40]!r}: not text"))
                continue
            if isinstance(key, str):
                why = bad_character(key, multiline=False) or (
                    f"key longer than {KEY_MAX} characters" if len(key) > KEY_MAX else None)
                if why:
                    found.append((path, f"key {key_text[:40]!r}: {why}"))
                    continue
            found += problems_in(item, f"{path}.{key_text}", budget, depth + 1, long_ok,
                                 json_only)
            if budget[0] < 0:
                break
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            found += problems_in(item, f"{path}[{i}]", budget, depth + 1, long_ok, json_only)
            if budget[0] < 0:
                break
    return found


def check_document(value: Any, field: str) -> Any:
    """Raise a ValidationError naming ``field`` (and the path inside it) if a
    free-form value (e.g. a parsed scheme file) holds poison; return it."""
    found = problems_in(value, json_only=True)
    if found:
        raise ValidationError([{"field": f"{field}{p}", "message": m} for p, m in found[:20]])
    return value


# -- annotated types -------------------------------------------------------------------
@dataclass(frozen=True)
class TextRule:
    """Marks a string type as checked for characters: single-line (names,
    keys) or multi-line (reasons, comments: tab and line breaks allowed)."""
    multiline: bool = False

    def __get_pydantic_core_schema__(self, source, handler):
        return core_schema.no_info_after_validator_function(self.check, handler(source))

    def check(self, value: str) -> str:
        why = bad_character(value, self.multiline)
        if why:
            raise PydanticCustomError("unsafe_text", "{why}", {"why": why})
        return value


@dataclass(frozen=True)
class FreeForm:
    """Marks a free-form mapping (e.g. a scheme definition): bounded by the
    document limits and checked value by value."""


def text_type(max_length: int, min_length: int = 0, multiline: bool = False):
    """A string type with these limits and the safe-text rule (single- or multi-line)."""
    return Annotated[str, StringConstraints(min_length=min_length, max_length=max_length),
                     TextRule(multiline)]


Name = text_type(NAME_MAX, 1)
Key = text_type(KEY_MAX, 1)
Moment = text_type(MOMENT_MAX)
Address = text_type(ADDRESS_MAX)
Reason = text_type(REASON_MAX, multiline=True)
RequiredReason = text_type(REASON_MAX, 1, multiline=True)
Text = text_type(TEXT_MAX, multiline=True)
RequiredText = text_type(TEXT_MAX, 1, multiline=True)
EvidenceItem = text_type(EVIDENCE_ITEM_MAX, 1)
Evidence = Annotated[list[EvidenceItem], Field(max_length=EVIDENCE_ITEMS_MAX)]
RequiredEvidence = Annotated[list[EvidenceItem],
                             Field(min_length=1, max_length=EVIDENCE_ITEMS_MAX)]
Document = text_type(DOCUMENT_MAX, multiline=True)
Mapping = Annotated[dict, FreeForm()]
Count = Annotated[int, Field(ge=0, le=INT_MAX)]
Page = Annotated[int, Field(ge=1, le=INT_MAX)]
Version = Annotated[int, Field(ge=0, le=INT_MAX)]
Position = Annotated[int, Field(ge=0, le=POSITION_MAX)]
Days = Annotated[float, Field(gt=0, le=3650)]  # a window in days (at most ten years)


def Ids(min_length: int = 0, max_length: int = BATCH_MAX):  # noqa: N802 (a type)
    return Annotated[list[UUID], Field(min_length=min_length, max_length=max_length)]


# -- the safety net: every field of every command is declared with limits -----------------
def _flat(metadata) -> list:
    """Annotated metadata with any ``Field(...)`` opened into its constraints."""
    out = []
    for m in metadata:
        out += _flat(m.metadata) if isinstance(m, FieldInfo) else [m]
    return out


def _metadata_has(metadata, kind) -> bool:
    return any(isinstance(m, kind) for m in metadata)


def _bounded_above(metadata) -> bool:
    return any(isinstance(m, (annotated_types.Le, annotated_types.Lt)) or
               getattr(m, "le", None) is not None or getattr(m, "lt", None) is not None
               for m in metadata)


def _max_length(metadata) -> bool:
    return any(isinstance(m, annotated_types.MaxLen) or
               getattr(m, "max_length", None) is not None for m in metadata)


def _declares(tp, metadata, kind) -> bool:
    """Does a field's type carry a marker of ``kind`` (at its top level)?"""
    if _metadata_has(metadata, kind):
        return True
    origin = typing.get_origin(tp)
    if origin is Annotated:
        base, *extra = typing.get_args(tp)
        return _declares(base, extra, kind)
    if origin in (Union, types.UnionType):
        return any(_declares(arg, (), kind) for arg in typing.get_args(tp))
    return False


def unsafe_declarations(tp, metadata=(), where: str = "") -> list[str]:
    """What in a field's type escapes the rules (for the class-definition check)."""
    metadata = _flat(metadata)
    origin = typing.get_origin(tp)
    if origin is Annotated:
        base, *extra = typing.get_args(tp)
        return unsafe_declarations(base, [*metadata, *extra], where)
    if origin in (Union, types.UnionType):
        return [p for arg in typing.get_args(tp) if arg is not type(None)
                for p in unsafe_declarations(arg, metadata, where)]
    if tp is str:
        if not (_metadata_has(metadata, TextRule) and _max_length(metadata)):
            return [f"{where}: str without a text type (Name, Key, Reason, Text, ...)"]
        return []
    if tp is int:
        return [] if _bounded_above(metadata) else [f"{where}: int without an upper bound"]
    if tp in (dict, Any, list, tuple, set, object):
        return [] if _metadata_has(metadata, FreeForm) else \
            [f"{where}: {getattr(tp, '__name__', tp)} without item types (use Mapping)"]
    if origin in (list, tuple, set, frozenset, dict):
        found = [] if _max_length(metadata) or origin is tuple else \
            [f"{where}: {origin.__name__} without a max_length"]
        for arg in typing.get_args(tp):
            if arg is not Ellipsis:
                found += unsafe_declarations(arg, (), f"{where}[]")
        return found
    return []  # UUID, date, bool, float (finite by config), Literal, nested models


class Command(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True,
                              allow_inf_nan=False)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs):
        super().__pydantic_init_subclass__(**kwargs)
        found = [p for name, info in cls.model_fields.items()
                 for p in unsafe_declarations(info.annotation, info.metadata,
                                              f"{cls.__name__}.{name}")]
        if found:
            raise TypeError("command fields must be declared with limits: " + "; ".join(found))

    @classmethod
    @functools.cache
    def _free_form_fields(cls) -> frozenset:
        return frozenset(name for name, f in cls.model_fields.items()
                         if _declares(f.annotation, f.metadata, FreeForm))

    @field_validator("*", mode="before")
    @classmethod
    def _no_poison(cls, value, info: ValidationInfo):
        """Whatever a field's type, no poison character, non-finite number or
        oversized value gets as far as type conversion. (A typed text field
        reports its own, smaller length limit; a free-form one this net's.)"""
        if isinstance(value, (bool, int, UUID)) or value is None:
            return value  # nothing to check (ints are bounded by their types)
        free_form = info.field_name in cls._free_form_fields()
        found = problems_in(value, long_ok=not free_form, json_only=free_form)
        if found:
            path, message = found[0]
            where = f"{path.lstrip('.')}: " if path else ""
            raise PydanticCustomError("unsafe_value", "{where}{message}",
                                      {"where": where, "message": message})
        return value

    @classmethod
    def parse(cls: type[C], payload: dict) -> C:
        try:
            return cls.model_validate(payload)
        except PydanticValidationError as exc:
            error = validation_error_from_pydantic(exc)
            for entry in error.errors:  # an unknown argument's name, echoed back printable
                if bad_character(entry["field"], multiline=False) or len(entry["field"]) > 200:
                    entry["field"] = ascii(entry["field"][:KEY_MAX])
            raise error from None


class Query(Command):
    """The arguments of a query, validated like a command's (a malformed id is a
    ValidationError, never a database error)."""

    @classmethod
    def of(cls: type[C], **arguments) -> C:
        return cls.parse(arguments)


class OrgRef(Query):
    """One organisation, by id (every service knows organisations by their id)."""
    org_id: UUID


class CollegeFilter(Query):
    """An optional college (二级学院) to narrow a report to."""
    college_id: Optional[UUID] = None

