"""The pre-queue's rank key: the published rule that fixes the draw (docs/onsale.md)."""

from __future__ import annotations

import hashlib
import hmac
import re

_HEX_SEED = re.compile(r"[0-9a-f]{64}")


def rank_key(seed: str, session_id: str) -> str:
    """The key a session is drawn by: hex HMAC-SHA256(key = the seed's bytes, message = the
    session id as UTF-8). The smallest key goes first."""
    return hmac.new(seed_bytes(seed), session_id.encode(), hashlib.sha256).hexdigest()


def seed_bytes(seed: str) -> bytes:
    """The 32 bytes of a seed written as 64 lowercase hex characters."""
    if not _HEX_SEED.fullmatch(seed):
        raise ValueError("a seed is 64 lowercase hex characters")
    return bytes.fromhex(seed)
