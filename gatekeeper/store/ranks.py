"""Rank keys of the line in front of the stream: the draw's (docs/onsale.md) and priority's."""

from __future__ import annotations

import hashlib
import hmac
import re

from gatekeeper.enqueue import MAX_PRIORITY

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


PRIORITY_MARK = "!"
"""What a priority waiter's rank key starts with: it sorts before every hex rank key, so the
priority line (which shares the pre-queue's ordered set) goes before any drawn order."""


def priority_rank(priority: int, seq: int) -> str:
    """The rank key of a waiter of `priority` (1..MAX_PRIORITY) that joined as number `seq`:
    higher priorities first, join order within one (`priority_rank` in join.lua)."""
    return f"{PRIORITY_MARK}{MAX_PRIORITY - priority:02d}{seq:020d}"
