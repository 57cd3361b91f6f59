"""Typed errors shared by all services.

A portal tells them apart by ``RemoteError.exc_type`` (the class name). Each is
registered with nameko so that a Python client importing this module gets the
same class back from a ``ClusterRpcProxy`` call.
"""
from __future__ import annotations

from nameko.exceptions import deserialize_to_instance


class LianchuangError(Exception):
    """Base of every error a caller is expected to handle."""


@deserialize_to_instance
class ValidationError(LianchuangError):
    """Bad input: names each bad field and why. Nothing was changed.

    ``errors`` is a list of ``{"field": ..., "message": ...}``.
    """

    def __init__(self, errors, message: str | None = None):
        if isinstance(errors, dict):
            errors = [{"field": k, "message": v} for k, v in errors.items()]
        self.errors = list(errors)
        super().__init__(self.errors)

    @classmethod
    def single(cls, field: str, message: str) -> "ValidationError":
        return cls([{"field": field, "message": message}])

    @property
    def fields(self) -> list[str]:
        return [e["field"] for e in self.errors]

    def __str__(self):
        return "; ".join(f"{e['field']}: {e['message']}" for e in self.errors)


@deserialize_to_instance
class NotFound(LianchuangError):
    """The thing named does not exist."""


@deserialize_to_instance
class Forbidden(LianchuangError):
    """The caller's role or organisation scope does not allow this call."""


@deserialize_to_instance
class Unauthenticated(LianchuangError):
    """No token, a bad signature, or an expired token."""


@deserialize_to_instance
class Conflict(LianchuangError):
    """Someone else changed the same thing first; reload and try again."""


@deserialize_to_instance
class Unavailable(LianchuangError):
    """The service cannot reach its database or broker right now; retry later
    (with the same ``command_id``, so a command that did go through is not
    applied twice)."""


EXPECTED_ERRORS = (ValidationError, NotFound, Forbidden, Unauthenticated, Conflict, Unavailable)


def validation_error_from_pydantic(exc) -> ValidationError:
    """Turn a pydantic ``ValidationError`` into ours, one entry per bad field."""
    errors = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err.get("loc", ())) or "__root__"
        errors.append({"field": field, "message": err.get("msg", "invalid")})
    return ValidationError(errors)
