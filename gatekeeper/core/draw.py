"""The on-sale draw: a seed committed before, and the order anyone can recompute after.

When an event is created a 32-byte random seed is made and its commitment, the hex SHA-256 of
the seed, is published at once; the seed itself is published once the pre-queue is drawn. The
pre-queue's order is then fixed by a rule anyone can recompute (docs/onsale.md): its sessions
sorted by the hex HMAC-SHA256 of the session id under the seed, ascending.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable

from gatekeeper.store.ranks import rank_key, seed_bytes

SEED_BYTES = 32

__all__ = ["commitment", "drawn_order", "new_seed", "rank_key"]


def new_seed() -> str:
    """A fresh seed, as the 64 lowercase hex characters that are published after the draw."""
    return secrets.token_bytes(SEED_BYTES).hex()


def commitment(seed: str) -> str:
    """The hex SHA-256 of the seed's 32 bytes: published when the event is created."""
    return hashlib.sha256(seed_bytes(seed)).hexdigest()


def drawn_order(seed: str, session_ids: Iterable[str]) -> list[str]:
    """`session_ids` in drawn order (the rule of the module docstring)."""
    return sorted(session_ids, key=lambda sid: rank_key(seed, sid))
