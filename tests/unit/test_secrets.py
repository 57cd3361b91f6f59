"""Secrets (密钥): no default outside development mode; tokens need a subject."""
import base64
import logging
import time

import jwt
import pytest
from click.testing import CliRunner

from lianchuang_cli.main import main as cli
from shared.errors import Unauthenticated
from shared.identity import mint_token, verify_token
from shared.secrets import (MissingSecret, dev_secret, event_cipher_key, event_signing_key,
                            load_secret)

LONG = "x" * 32
SECRET = "unit-test-secret-0123456789-abcdefghijkl"


def test_no_secret_refuses_outside_dev_mode():
    with pytest.raises(MissingSecret) as e:
        load_secret("AUTH_SECRET", {}, env={})
    assert "AUTH_SECRET is not configured" in str(e.value)
    assert "LIANCHUANG_DEV_MODE" in str(e.value)


@pytest.mark.parametrize("env", [{"AUTH_SECRET": "short"}, {"LIANCHUANG_DEV_MODE": "1",
                                                            "AUTH_SECRET": "x" * 31}])
def test_short_secret_refused_even_in_dev_mode(env):
    with pytest.raises(MissingSecret) as e:
        load_secret("AUTH_SECRET", None, env=env)
    assert "at least 32" in str(e.value)


def test_dev_mode_uses_the_development_value_and_warns(caplog):
    with caplog.at_level(logging.WARNING, logger="shared.secrets"):
        value = load_secret("DEV_ONLY_TEST_SECRET", None, env={"LIANCHUANG_DEV_MODE": "1"})
    assert value == dev_secret("DEV_ONLY_TEST_SECRET") and len(value) >= 32
    assert "LIANCHUANG_DEV_MODE" in caplog.text
    with pytest.raises(MissingSecret):
        load_secret("DEV_ONLY_TEST_SECRET", None, env={"LIANCHUANG_DEV_MODE": "0"})


def test_sources_in_order(tmp_path):
    key_file = tmp_path / "auth"
    key_file.write_text("f" * 40 + "\n")
    env = {"AUTH_SECRET_FILE": str(key_file)}
    assert load_secret("AUTH_SECRET", None, env=env) == "f" * 40  # newline dropped
    assert load_secret("AUTH_SECRET", None, env={**env, "AUTH_SECRET": "e" * 32}) == "e" * 32
    assert load_secret("AUTH_SECRET", {"AUTH_SECRET": LONG}, env=env) == LONG
    with pytest.raises(MissingSecret) as e:
        load_secret("AUTH_SECRET", None, env={"AUTH_SECRET_FILE": str(tmp_path / "none")})
    assert "cannot be read" in str(e.value)


def test_event_and_cipher_keys():
    config = {"EVENT_SIGNING_KEYS": {"organizations": "o" * 32}}
    assert event_signing_key("organizations", config, env={}) == b"o" * 32
    assert event_signing_key("evaluation", None, env={"EVALUATION_EVENT_KEY": "v" * 32}) \
        == b"v" * 32
    with pytest.raises(MissingSecret):
        event_signing_key("evaluation", config, env={})
    key = event_cipher_key("organizations", {"ORGANIZATIONS_CIPHER_KEY": LONG}, env={})
    assert len(base64.b64decode(key)) == 32  # AES-256
    assert key != event_cipher_key("organizations", {"ORGANIZATIONS_CIPHER_KEY": "y" * 32},
                                   env={})


@pytest.mark.parametrize("sub", ["", "   ", "\t\n"])
def test_token_with_empty_sub_is_refused(sub):
    # Signed correctly, but naming nobody.
    now = int(time.time())
    forged = jwt.encode({"sub": sub, "role": "org_admin", "iat": now, "exp": now + 60},
                        SECRET, algorithm="HS256")
    with pytest.raises(Unauthenticated) as e:
        verify_token(SECRET, forged)
    assert "sub" in str(e.value)
    with pytest.raises(ValueError):
        mint_token(SECRET, sub=sub, role="org_admin")


def test_cli_token_without_secret_uses_dev_secret(monkeypatch):
    monkeypatch.delenv("AUTH_SECRET", raising=False)
    monkeypatch.delenv("AUTH_SECRET_FILE", raising=False)
    result = CliRunner().invoke(cli, ["token", "--role", "org_admin", "--sub", "alice"])
    assert result.exit_code == 0, result.output
    token = result.stdout.strip().splitlines()[-1]
    assert verify_token(dev_secret("AUTH_SECRET"), token).sub == "alice"
    short = CliRunner().invoke(cli, ["token", "--role", "org_admin", "--sub", "a",
                                     "--secret", "short"])
    assert short.exit_code != 0 and "at least 32" in short.output
