"""Room and session ids: their shape, how a session id is made, and the room it names."""

from __future__ import annotations

import re
import secrets

ROOM_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
# `<token>.<room>`: a token has no dot, so the first dot ends it (one match per lookup).
_SESSION_ID = re.compile(r"[A-Za-z0-9_-]{22}\.([A-Za-z0-9_.-]{1,64})")

DEFAULT_ROOM = "default"


def new_session_id(room: str) -> str:
    """An unguessable session id (128 random bits) that names its room: `<token>.<room>`."""
    return f"{secrets.token_urlsafe(16)}.{room}"


def room_of(session_id: str) -> str | None:
    """The room a well-formed session id belongs to, or None for a malformed id."""
    found = _SESSION_ID.fullmatch(session_id)
    return None if found is None else found.group(1)
