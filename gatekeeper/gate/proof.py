"""The signed header that tells the origin a request passed the gate (stdlib only, copyable)."""

from __future__ import annotations

import hashlib
import hmac

PROOF_HEADER = "x-gatekeeper-proof"
"""Default name of the header carrying the proof."""

_PREFIX = "v1."
_MAX_LEN = 512
_MAX_TS_DIGITS = 12
_MAC_LEN = 64  # hex SHA-256
_MIN_SECRET_LEN = 16


def _mac(secret: bytes, message: str) -> str:
    return hmac.new(secret, message.encode("ascii"), hashlib.sha256).hexdigest()


def make_proof(secret: bytes, session_id: str, now_s: int) -> str:
    """`v1.<now_s>.<session_id>.<hex HMAC-SHA256 of everything before the last dot>`."""
    if len(secret) < _MIN_SECRET_LEN:
        raise ValueError(f"proof secret must be at least {_MIN_SECRET_LEN} bytes")
    if not session_id or not session_id.isascii() or not session_id.isprintable():
        raise ValueError(f"session id not usable in a header: {session_id!r}")
    if " " in session_id or now_s < 0:
        raise ValueError("session id contains a space or now_s is negative")
    message = f"{_PREFIX}{now_s}.{session_id}"
    return f"{message}.{_mac(secret, message)}"


def verify_proof(secret: bytes, value: str, *, now_s: int, max_skew_s: int = 30) -> str | None:
    """The session id of a valid proof made within `max_skew_s` of `now_s`, else None.

    Never raises on a malformed value; an empty or short secret verifies nothing.
    """
    if (
        not isinstance(value, str)
        or len(value) > _MAX_LEN
        or not value.isascii()
        or not value.startswith(_PREFIX)
        or len(secret) < _MIN_SECRET_LEN
    ):
        return None
    message, _, mac = value.rpartition(".")
    ts, _, session_id = message[len(_PREFIX) :].partition(".")
    if (
        len(mac) != _MAC_LEN
        or not session_id
        or not ts.isdigit()
        or len(ts) > _MAX_TS_DIGITS
        or abs(now_s - int(ts)) > max_skew_s
    ):
        return None
    # compare_digest on ASCII str keeps the comparison time independent of where it differs.
    if not hmac.compare_digest(_mac(secret, message), mac):
        return None
    return session_id
