"""Commands as small pydantic models: RPC arguments are checked here, before
anything reaches the domain, and every bad field is named at once."""
from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ConfigDict
from pydantic import ValidationError as PydanticValidationError

from shared.errors import validation_error_from_pydantic

C = TypeVar("C", bound="Command")


class Command(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    @classmethod
    def parse(cls: type[C], payload: dict) -> C:
        try:
            return cls.model_validate(payload)
        except PydanticValidationError as exc:
            raise validation_error_from_pydantic(exc) from None
