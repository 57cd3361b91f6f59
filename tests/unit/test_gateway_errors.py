"""Typed errors → HTTP statuses and bodies at the gateway (HTTP 网关)."""
import io

import pytest
from nameko.exceptions import IncorrectSignature, MethodNotFound, RemoteError, UnknownService

from shared.errors import (Conflict, Forbidden, NotFound, Unauthenticated, Unavailable,
                           ValidationError)
from services.gateway.application import (PayloadTooLarge, bearer_token, error_body, error_status,
                                          read_json_object)


@pytest.mark.parametrize("exc, status", [
    (ValidationError.single("name", "required"), 400), (Unauthenticated("no"), 401),
    (Forbidden("no"), 403), (NotFound("no"), 404), (Conflict("changed"), 409),
    (PayloadTooLarge("big"), 413), (Unavailable("down"), 503), (UnknownService("x"), 503),
    (RemoteError("Unavailable", "the store is down"), 503),
    (RemoteError("Conflict", "changed"), 409), (RemoteError("KeyError", "'x'"), 500),
    (MethodNotFound("nope"), 404), (IncorrectSignature("extra"), 400),
    (RuntimeError("boom"), 500)])
def test_status_of_each_error(exc, status):
    assert error_status(exc) == status


def test_bodies_name_fields_and_hide_internals():
    body = error_body(ValidationError([{"field": "kind", "message": "bad"}]))
    assert body == {"error": "ValidationError", "message": "kind: bad",
                    "fields": [{"field": "kind", "message": "bad"}]}
    hidden = error_body(RemoteError("KeyError", "secret internals"))
    assert hidden["error"] == "InternalError" and "secret" not in hidden["message"]
    assert error_body(RemoteError("Conflict", "reload"))["message"] == "reload"
    assert error_body(IncorrectSignature("unexpected 'x'"))["fields"] == [
        {"field": "body", "message": "unexpected 'x'"}]


def test_bearer_and_body_parsing():
    assert bearer_token("Bearer abc.def") == "abc.def"
    assert bearer_token("bearer   abc ") == "abc"
    assert bearer_token("Basic abc") is None and bearer_token(None) is None
    assert read_json_object(io.BytesIO(b""), 0, 10) == {}
    assert read_json_object(io.BytesIO(b'{"a": 1}'), 8, 10) == {"a": 1}
    with pytest.raises(PayloadTooLarge):
        read_json_object(io.BytesIO(b"x" * 11), None, 10)
    with pytest.raises(PayloadTooLarge):
        read_json_object(io.BytesIO(b""), 11, 10)
    with pytest.raises(ValidationError):
        read_json_object(io.BytesIO(b"[1]"), 3, 10)
