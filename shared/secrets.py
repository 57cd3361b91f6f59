"""Secrets (密钥): the one place where keys are loaded, for every service.

A secret named ``NAME`` is taken from, in order:
  1. the service's config (``NAME`` or ``NAME_FILE``; tests pass keys this way),
  2. the environment variable ``NAME``,
  3. the environment variable ``NAME_FILE``: a file holding it (a Docker or
     Kubernetes secret mounted as a file; one trailing newline is ignored).

It must be at least 32 bytes (UTF-8); a shorter one is always refused. There
is no default: a service refuses to start without it, except in development
mode (``LIANCHUANG_DEV_MODE=1``, set by ``make run``), where a fixed development
value is used and a warning is logged, once per secret. Development values are public (they are in this
file): never run with ``LIANCHUANG_DEV_MODE`` where real people's records are.

The secrets:
  * ``AUTH_SECRET``: signs and verifies RPC tokens (shared by all services and
    by whoever mints tokens);
  * ``<SOURCE>_EVENT_KEY`` (e.g. ``ORGANIZATIONS_EVENT_KEY``), or config
    ``EVENT_SIGNING_KEYS: {<source>: key}``: the HMAC key with which a service's
    relay signs its events and its consumers verify them;
  * ``<SERVICE>_CIPHER_KEY``: encrypts the service's stored events at rest
    (an AES-256 key derived from it; only the owning service holds it).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
from typing import Mapping

log = logging.getLogger(__name__)

DEV_MODE_VAR = "LIANCHUANG_DEV_MODE"
MIN_BYTES = 32
AUTH_SECRET = "AUTH_SECRET"
_DEV_PREFIX = "lianchuang-development-only-not-secret:"
_warned: set[str] = set()


class MissingSecret(RuntimeError):
    """A secret is not configured (or too short) and development mode is off."""


def dev_mode(env: Mapping[str, str] | None = None) -> bool:
    """Whether ``LIANCHUANG_DEV_MODE`` is set to a true value (1, true, yes, on)."""
    value = (env if env is not None else os.environ).get(DEV_MODE_VAR, "")
    return value.strip().lower() in ("1", "true", "yes", "on")


def dev_secret(name: str) -> str:
    """The fixed, public development value of secret ``name`` (dev mode only)."""
    return _DEV_PREFIX + name


def _from_file(path: str, name: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise MissingSecret(f"{name}_FILE names {path!r}, which cannot be read: {exc}")
    return text[:-1] if text.endswith("\n") else text


def _lookup(name: str, config: Mapping | None, env: Mapping[str, str]) -> tuple[str, str]:
    """(value, where it came from); value is '' when not configured."""
    config = config or {}
    if config.get(name):
        return str(config[name]), f"config {name}"
    if config.get(f"{name}_FILE"):
        return _from_file(str(config[f"{name}_FILE"]), name), f"config {name}_FILE"
    if env.get(name):
        return env[name], f"environment {name}"
    if env.get(f"{name}_FILE"):
        return _from_file(env[f"{name}_FILE"], name), f"environment {name}_FILE"
    return "", ""


def load_secret(name: str, config: Mapping | None = None,
                env: Mapping[str, str] | None = None) -> str:
    """Secret ``name`` (see the module docstring), or ``MissingSecret``."""
    env = env if env is not None else os.environ
    value, where = _lookup(name, config, env)
    if value:
        if len(value.encode("utf-8")) < MIN_BYTES:  # even in development mode
            raise MissingSecret(f"{name} (from {where}) is {len(value.encode('utf-8'))} "
                                f"bytes; at least {MIN_BYTES} are required")
        return value
    if dev_mode(env):
        if name not in _warned:
            _warned.add(name)
            log.warning("%s=1: %s is not configured; using the public development value. "
                        "Never run like this with real records.", DEV_MODE_VAR, name)
        return dev_secret(name)
    raise MissingSecret(
        f"{name} is not configured: set {name} or {name}_FILE (at least {MIN_BYTES} bytes, "
        f"e.g. `openssl rand -base64 48`), or {DEV_MODE_VAR}=1 for local development")


def event_key_name(source: str) -> str:
    """``organizations`` -> ``ORGANIZATIONS_EVENT_KEY``."""
    return f"{source.upper()}_EVENT_KEY"


def event_signing_key(source: str, config: Mapping | None = None,
                      env: Mapping[str, str] | None = None) -> bytes:
    """The HMAC key for events published by ``source`` (config
    ``EVENT_SIGNING_KEYS: {source: key}`` or ``<SOURCE>_EVENT_KEY``)."""
    keys = dict((config or {}).get("EVENT_SIGNING_KEYS") or {})
    name = event_key_name(source)
    own = {name: keys[source]} if keys.get(source) else {}
    return load_secret(name, {**(config or {}), **own}, env).encode("utf-8")


def cipher_key_name(service: str) -> str:
    """``organizations`` -> ``ORGANIZATIONS_CIPHER_KEY``."""
    return f"{service.upper()}_CIPHER_KEY"


def event_cipher_key(service: str, config: Mapping | None = None,
                     env: Mapping[str, str] | None = None) -> str:
    """The eventsourcing ``CIPHER_KEY`` (AES-256, base64) for ``service``'s
    stored events, derived from the secret ``<SERVICE>_CIPHER_KEY``."""
    secret = load_secret(cipher_key_name(service), config, env)
    key = hmac.new(secret.encode("utf-8"), b"lianchuang event store cipher v1",
                   hashlib.sha256).digest()
    return base64.b64encode(key).decode("ascii")
