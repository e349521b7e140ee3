"""Enqueue tokens: a site's signed word that a user may take one place in a room (stdlib only).

A token is ``v1.<payload>.<mac>``: the payload is the unpadded base64url of a JSON object
``{"room", "userId", "exp", "priority"?}`` (``exp`` in Unix seconds; ``priority`` an integer,
0 or absent for the ordinary line) and the mac is the lowercase hex HMAC-SHA256, keyed with
the shared secret's UTF-8 bytes, of ``v1.<payload>``. This module can be copied into a site
that mints tokens; docs/identity.md shows the same in other languages.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

MAX_PRIORITY = 99
"""The highest priority a token may give (higher goes first)."""
MAX_TOKEN_CHARS = 2048
"""Longest token read; a longer one is invalid before any work is done on it."""
MAX_USER_ID_CHARS = 128
"""Longest user id a token may carry."""

_PREFIX = "v1."
_PAYLOAD = re.compile(r"[A-Za-z0-9_-]+")
_MAC = re.compile(r"[0-9a-f]{64}")


class TokenProblem(StrEnum):
    """Why a join was refused for its enqueue token; the values are the API's error codes."""

    REQUIRED = "enqueue_token_required"
    """The room takes joins with a token only, and none came."""
    INVALID = "invalid_enqueue_token"
    """A token came, but it is malformed, tampered with, expired or for another room."""


@dataclass(frozen=True, slots=True)
class EnqueueClaim:
    """What a valid token says: who may take a place in which room, until when, how urgently."""

    room: str
    user_id: str
    expires_s: int
    priority: int = 0


def _mac(secret: str, message: str) -> str:
    return hmac.new(secret.encode(), message.encode("ascii"), hashlib.sha256).hexdigest()


def mint_enqueue_token(secret: str, claim: EnqueueClaim) -> str:
    """The token of `claim`, signed with `secret` (the first of the room's keys)."""
    if not claim.user_id or len(claim.user_id) > MAX_USER_ID_CHARS:
        raise ValueError(f"a user id has 1..{MAX_USER_ID_CHARS} characters")
    if not 0 <= claim.priority <= MAX_PRIORITY:
        raise ValueError(f"priority is 0..{MAX_PRIORITY}")
    body: dict[str, object] = {"room": claim.room, "userId": claim.user_id}
    body["exp"] = claim.expires_s
    if claim.priority:
        body["priority"] = claim.priority
    raw = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    payload = base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
    message = _PREFIX + payload
    return f"{message}.{_mac(secret, message)}"


def verify_enqueue_token(
    secrets: Iterable[str], token: str, *, room: str, now_s: int
) -> EnqueueClaim | None:
    """The claim of a token signed with any of `secrets`, for `room`, not expired at `now_s`;
    else None. Never raises on a malformed token; the mac is checked before the payload is
    parsed, so only a token the site signed is ever decoded."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS or not token.isascii():
        return None
    version, _, rest = token.partition(".")
    payload, _, mac = rest.partition(".")
    if version + "." != _PREFIX or not _PAYLOAD.fullmatch(payload) or not _MAC.fullmatch(mac):
        return None
    message = _PREFIX + payload
    # Every key is tried (no early exit), so timing does not tell which one matched.
    signed = [hmac.compare_digest(_mac(secret, message), mac) for secret in secrets if secret]
    if not any(signed):
        return None
    claim = _claim(payload)
    if claim is None or claim.room != room or claim.expires_s <= now_s:
        return None
    return claim


def _claim(payload: str) -> EnqueueClaim | None:
    try:
        raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        body = json.loads(raw.decode("utf-8"))
    except (ValueError, binascii.Error, RecursionError):
        return None
    if not isinstance(body, dict):
        return None
    room, user, exp = body.get("room"), body.get("userId"), body.get("exp")
    priority = body.get("priority", 0)
    if not (isinstance(room, str) and isinstance(user, str) and _int(exp) and _int(priority)):
        return None
    assert isinstance(exp, int) and isinstance(priority, int)
    if not (0 < len(user) <= MAX_USER_ID_CHARS and 0 <= priority <= MAX_PRIORITY):
        return None
    try:
        user.encode()  # a lone surrogate (JSON "\ud800") can be neither stored nor shown
    except UnicodeEncodeError:
        return None
    return EnqueueClaim(room, user, exp, priority)


def _int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
