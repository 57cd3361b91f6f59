"""Signed envelopes: events between services are authenticated.

The relay signs each envelope with its service's event key (``shared.secrets``,
``<SOURCE>_EVENT_KEY``): ``signature`` is ``hmac-sha256:<hex>``, an HMAC-SHA256
over the canonical JSON of every other field of the envelope (keys sorted, no
spaces, UTF-8). A consumer verifies it with the key of the service whose
exchange it reads, and drops (acknowledges, counts and logs) any message whose
signature is missing or does not verify, before its inbox sees it.
Documented in ``docs/events.md``.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
from typing import Any

import orjson

from shared import metrics

log = logging.getLogger(__name__)

SIGNATURE_FIELD = "signature"
SCHEME = "hmac-sha256:"


def canonical(envelope: dict) -> bytes:
    """The bytes that are signed: the envelope without its signature, as
    orjson writes it with sorted keys (compact, UTF-8; written in C: the
    Python encoder was a quarter of the relay's time). What orjson refuses
    (integers past 64 bits, lone surrogates) is written by ``json`` instead."""
    unsigned = envelope if SIGNATURE_FIELD not in envelope else \
        {k: v for k, v in envelope.items() if k != SIGNATURE_FIELD}
    try:
        return orjson.dumps(unsigned, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        return python_canonical(unsigned)


def python_canonical(envelope: dict) -> bytes:
    """The canonical form as Python's ``json`` writes it (what relays wrote
    before orjson): byte for byte the same except for floats under 1e-4 in
    magnitude (``1e-05`` against orjson's ``0.00001``). Consumers accept
    either, so events signed by an older relay still verify."""
    unsigned = {k: v for k, v in envelope.items() if k != SIGNATURE_FIELD}
    return json.dumps(unsigned, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")


def signature_of(envelope: dict, key: bytes) -> str:
    return SCHEME + hmac.new(key, canonical(envelope), hashlib.sha256).hexdigest()


def sign_envelope(envelope: dict, key: bytes) -> dict:
    """A copy of ``envelope`` carrying its ``signature``."""
    return {**envelope, SIGNATURE_FIELD: signature_of(envelope, key)}


def signed_json(envelope: dict, key: bytes) -> tuple[bytes, str]:
    """The signed envelope as the JSON body the relay publishes (UTF-8), and its
    signature: the canonical bytes are encoded once, signed, and the signature
    appended as the last member (a consumer decodes the body and checks the
    signature over the canonical form of everything else, whatever the order)."""
    unsigned = canonical(envelope)
    signature = SCHEME + hmac.digest(key, unsigned, "sha256").hex()
    if unsigned == b"{}":
        return b'{"%s":"%s"}' % (SIGNATURE_FIELD.encode(), signature.encode()), signature
    return (unsigned[:-1] + b',"%s":"%s"}' % (SIGNATURE_FIELD.encode(), signature.encode()),
            signature)


def signature_problem(envelope: Any, key: bytes, source: str) -> str | None:
    """Why ``envelope`` is not a genuine event of ``source`` (``malformed``,
    ``wrong_source``, ``missing``, ``mismatch``), or None when it is."""
    if not isinstance(envelope, dict):
        return "malformed"
    if envelope.get("source") != source:
        return "wrong_source"
    given = envelope.get(SIGNATURE_FIELD)
    if not given:
        return "missing"
    if not isinstance(given, str):
        return "malformed"
    try:
        expected = signature_of(envelope, key)
        if hmac.compare_digest(given, expected):
            return None
        legacy = SCHEME + hmac.new(key, python_canonical(envelope), hashlib.sha256).hexdigest()
    except (TypeError, ValueError):
        return "malformed"
    return None if hmac.compare_digest(given, legacy) else "mismatch"


def reject(service: str, source: str, reason: str, envelope: Any, via: str) -> None:
    """Count and log an envelope that was dropped because it is not genuine."""
    metrics.EVENTS_REJECTED.labels(service, source, reason).inc()
    event_id = envelope.get("event_id") if isinstance(envelope, dict) else None
    event_type = envelope.get("type") if isinstance(envelope, dict) else None
    log.warning("%s dropped an event claiming to be from %s (%s, via %s): "
                "event_id=%r type=%r", service, source, reason, via, event_id, event_type)


def verified(envelopes: list, key: bytes, service: str, source: str, via: str) -> list[dict]:
    """The genuine envelopes of ``source`` among ``envelopes``; the others are
    counted, logged and left out."""
    genuine = []
    for envelope in envelopes or ():
        problem = signature_problem(envelope, key, source)
        if problem is None:
            genuine.append(envelope)
        else:
            reject(service, source, problem, envelope, via)
    return genuine
