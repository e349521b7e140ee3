"""Enqueue tokens: the format a site mints, and a verifier that no input makes misbehave."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

from gatekeeper.enqueue import (
    MAX_TOKEN_CHARS,
    EnqueueClaim,
    mint_enqueue_token,
    verify_enqueue_token,
)

KEY = "site-secret-0123456789"
OLD = "older-secret-abcdefghij"
NOW = 1_800_000_000


def claim(**changes: object) -> EnqueueClaim:
    base: dict[str, object] = {"room": "tour", "user_id": "u-42", "expires_s": NOW + 600}
    base.update(changes)
    return EnqueueClaim(**base)  # type: ignore[arg-type]


def verify(token: str, room: str = "tour", keys: tuple[str, ...] = (KEY,)) -> EnqueueClaim | None:
    return verify_enqueue_token(keys, token, room=room, now_s=NOW)


def signed(payload: bytes, key: str = KEY) -> str:
    """A token the site signed whatever its payload (to test what the verifier parses)."""
    body = base64.urlsafe_b64encode(payload).rstrip(b"=").decode()
    message = f"v1.{body}"
    mac = hmac.new(key.encode(), message.encode(), hashlib.sha256).hexdigest()
    return f"{message}.{mac}"


def test_a_minted_token_verifies_to_its_claim():
    token = mint_enqueue_token(KEY, claim(priority=7))
    assert verify(token) == claim(priority=7)
    assert verify(mint_enqueue_token(KEY, claim())) == claim()


def test_the_format_is_the_documented_one():
    token = mint_enqueue_token(KEY, claim(user_id="zoë"))
    version, payload, mac = token.split(".")
    assert version == "v1"
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert body == {"room": "tour", "userId": "zoë", "exp": NOW + 600}
    expected = hmac.new(KEY.encode(), f"v1.{payload}".encode(), hashlib.sha256).hexdigest()
    assert mac == expected
    # Any JSON key order and spacing the site's language produces verifies as well.
    other = json.dumps({"exp": NOW + 600, "userId": "zoë", "room": "tour"}, indent=2)
    assert verify(signed(other.encode())) == claim(user_id="zoë")


def test_expired_other_room_and_tampered_tokens_are_refused():
    assert verify(mint_enqueue_token(KEY, claim(expires_s=NOW))) is None
    assert verify(mint_enqueue_token(KEY, claim()), room="other") is None
    token = mint_enqueue_token(KEY, claim())
    version, payload, mac = token.split(".")
    evil = base64.urlsafe_b64encode(b'{"room":"tour","userId":"admin","exp":9999999999}')
    assert verify(f"{version}.{evil.rstrip(b'=').decode()}.{mac}") is None
    assert verify(f"{version}.{payload}.{mac[:-1]}{'0' if mac[-1] != '0' else '1'}") is None
    assert verify(mint_enqueue_token("another-key-0123456789", claim())) is None


def test_keys_rotate_every_listed_key_verifies():
    token = mint_enqueue_token(OLD, claim())
    assert verify(token, keys=(KEY, OLD)) == claim()
    assert verify(token, keys=(KEY,)) is None
    assert verify(token, keys=()) is None
    assert verify(token, keys=("",)) is None


@pytest.mark.parametrize(
    "token",
    [
        "",
        "v1",
        "v1..",
        "v2.e30." + "0" * 64,
        "v1.e30." + "0" * 63,
        "v1.e30." + "G" * 64,
        "v1.e30.e30." + "0" * 64,
        "v1.e+30." + "0" * 64,
        "v1.é." + "0" * 64,
        "v1." + "A" * MAX_TOKEN_CHARS + "." + "0" * 64,
        "v1.e30.\ud800" + "0" * 63,
    ],
)
def test_malformed_tokens_are_refused_without_raising(token: str):
    assert verify(token) is None


@pytest.mark.parametrize(
    "payload",
    [
        b"[" * 50_000 + b"]" * 50_000,  # deep nesting, even signed
        b'{"room":"tour","userId":"u","exp":' + b"9" * 5000 + b"}",  # 5,000 digits
        b'{"room":"tour","userId":"\\ud800","exp":1900000000}',  # a lone surrogate
        b'{"room":"tour","userId":"","exp":1900000000}',
        b'{"room":"tour","userId":"' + b"u" * 129 + b'","exp":1900000000}',
        b'{"room":"tour","userId":"u","exp":true}',
        b'{"room":"tour","userId":"u","exp":1900000000.5}',
        b'{"room":"tour","userId":"u","exp":1900000000,"priority":100}',
        b'{"room":"tour","userId":"u","exp":1900000000,"priority":-1}',
        b'{"room":"tour","userId":"u","exp":1900000000,"priority":"9"}',
        b'{"room":["tour"],"userId":"u","exp":1900000000}',
        b'"just a string"',
        b"\xff\xfe",
        b"NaN",
    ],
)
def test_signed_but_wrong_payloads_are_refused(payload: bytes):
    assert verify(signed(payload)) is None


def test_minting_refuses_what_a_verifier_would():
    with pytest.raises(ValueError):
        mint_enqueue_token(KEY, claim(user_id=""))
    with pytest.raises(ValueError):
        mint_enqueue_token(KEY, claim(priority=100))
