"""Safe text (shared.commands): the rules every command and query inherits."""
import math
from typing import Optional
from uuid import UUID

import pytest
import yaml

from shared.commands import Command, Evidence, Mapping, Name, Page, Reason, check_document
from shared.errors import ValidationError
from services.evaluation.schemes import parse_scheme_text, validate_scheme


class Sample(Command):
    name: Name
    reason: Optional[Reason] = None
    evidence: Evidence = []
    page: Page = 1
    weight: float = 1.0
    definition: Optional[Mapping] = None
    org_id: Optional[UUID] = None


def refused(**payload) -> ValidationError:
    with pytest.raises(ValidationError) as e:
        Sample.parse({"name": "教工第一党支部", **payload})
    return e.value


@pytest.mark.parametrize("char", ["\x00", "\ud800", "\udc00", "\x01", "\x1b", "\x7f", "\x85",
                                  "\x9f", "\u202e", "\u202a", "\u2066", "\u2069", "\u200e",
                                  "\u200f", "\u061c"])
def test_poison_characters_refused_in_every_kind_of_text(char):
    assert refused(name=f"毒{char}药").fields == ["name"]
    assert refused(reason=f"line one\n{char}").fields == ["reason"]
    assert refused(evidence=["ok", f"x{char}"]).fields == ["evidence"]
    assert refused(definition={"a": [{"b": f"x{char}"}]}).fields == ["definition"]
    assert refused(definition={f"k{char}": 1}).fields == ["definition"]


def test_tab_and_line_breaks_only_in_multi_line_text():
    assert Sample.parse({"name": "n", "reason": "第一\r\n第二\t完"}).reason == "第一\r\n第二\t完"
    for char in "\t\n\r":
        assert "single-line" in str(refused(name=f"a{char}b"))
        assert refused(evidence=[f"a{char}b"]).fields == ["evidence.0"]
    assert Sample.parse({"name": "  trimmed \n"}).name == "trimmed"


def test_limits_are_named():
    assert "at most 100 characters" in str(refused(name="x" * 101))
    assert "at most 2000 characters" in str(refused(reason="x" * 1_000_000))
    assert "at most 500 characters" in str(refused(evidence=["x" * 501]))
    assert "at most 20 items" in str(refused(evidence=["x"] * 21))
    assert "2147483647" in str(refused(page=10**30))
    assert "200000" in str(refused(definition={"a": "x" * 200_001}))
    assert Sample.parse({"name": "x" * 100, "evidence": ["e"] * 20}).evidence == ["e"] * 20


@pytest.mark.parametrize("number", [math.nan, math.inf, -math.inf])
def test_nan_and_infinity_refused(number):
    assert refused(weight=number).fields == ["weight"]
    assert refused(definition={"max_score": number}).fields == ["definition"]
    assert refused(name=number).fields == ["name"]


def test_malformed_ids_are_validation_errors():
    for bad in ("not-a-uuid", "", 12345, 10**30, [], {}):
        assert refused(org_id=bad).fields == ["org_id"]


@pytest.mark.parametrize("declaration", [
    "s: str", "s: Optional[str] = None", "n: int", "n: int = Field(ge=0)",
    "names: list[Name]", "d: dict", "d: dict[str, int] = {}", "t: list[str] = []"])
def test_a_command_declared_without_limits_fails_when_defined(declaration):
    source = f"class Loose(Command):\n    {declaration}\n"
    with pytest.raises(TypeError, match="declared with limits"):
        exec(source, {"Command": Command, "Optional": Optional, "Name": Name,
                      "Field": __import__("pydantic").Field})


def test_free_form_documents_are_bounded():
    bomb = yaml.safe_load("a: &a [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n" for i in range(8)))
    with pytest.raises(ValidationError, match="too large"):
        check_document(bomb, "definition")
    deep: list = []
    for _ in range(100):
        deep = [deep]
    with pytest.raises(ValidationError, match="deeper"):
        check_document({"x": deep}, "definition")
    with pytest.raises(ValidationError, match="not a JSON value"):
        validate_scheme(parse_scheme_text("scheme_id: x\ntitle: 2026-01-01\n"))
    with pytest.raises(ValidationError) as e:
        validate_scheme(parse_scheme_text('scheme_id: "a\\0b"\npublicity_days: .nan\n'))
    assert {"definition.scheme_id", "definition.publicity_days"} <= set(e.value.fields)
    with pytest.raises(ValidationError, match="nested too deeply"):
        parse_scheme_text("[" * 100_000, "json")


def test_an_unknown_argument_is_named_without_its_poison():
    with pytest.raises(ValidationError) as e:
        Sample.parse({"name": "n", "x\x00": 1})
    assert e.value.fields == ["'x\\x00'"]
