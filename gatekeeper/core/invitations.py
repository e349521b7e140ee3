"""Which joins need an enqueue token, where a request carries one, and what it is worth."""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

from gatekeeper.asgi import Scope, header, without_parameter
from gatekeeper.clock import Clock
from gatekeeper.config.settings import Settings
from gatekeeper.enqueue import MAX_TOKEN_CHARS, EnqueueClaim, TokenProblem, verify_enqueue_token

QUERY_PARAMETER = b"gk-enqueue"
"""The query parameter a site's link carries the token in (removed by a redirect)."""
HEADER = b"x-gatekeeper-enqueue"
"""The request header a client may carry the token in instead (never forwarded)."""


class Invitations:
    """The enqueue-token rule of each room (`gate.require-enqueue-token`, per room too) and
    the check of a token with the site's keys (`WAITINGROOM_ENQUEUE_TOKEN_SECRET`)."""

    def __init__(self, settings: Settings, clock: Clock) -> None:
        self._keys = settings.enqueue_token_keys
        self._clock = clock
        self._default = settings.gate.require_enqueue_token
        self._rooms = settings.rooms.overridden(lambda o: o.require_enqueue_token)
        self.active = bool(self._keys) or self._default or any(self._rooms.values())
        """Whether tokens mean anything here; when not, nobody needs to look for one."""

    def required(self, room: str) -> bool:
        """Whether a join of `room` needs a valid token."""
        return self._rooms.get(room, self._default)

    def check(self, room: str, token: str | None) -> EnqueueClaim | TokenProblem | None:
        """What a join of `room` with `token` (None: none came) is: the token's claim, the
        problem that refuses it, or None to join as a visitor without identity (a room that
        needs no token treats a bad token as absent)."""
        required = self.required(room)
        if not token:
            return TokenProblem.REQUIRED if required else None
        claim = verify_enqueue_token(self._keys, token, room=room, now_s=self._clock() // 1000)
        if claim is None:
            return TokenProblem.INVALID if required else None
        return claim


def token_of(scope: Scope) -> tuple[str | None, bool]:
    """The token a request carries, and whether it came in the query (the address bar, which
    a redirect then cleans): the `gk-enqueue` parameter first, else the header."""
    query: bytes = scope.get("query_string", b"")
    if QUERY_PARAMETER in query:
        for part in query.split(b"&"):
            name, _, value = part.partition(b"=")
            if name == QUERY_PARAMETER:
                return _text(unquote_to_bytes(value.replace(b"+", b" "))), True
    raw = header(scope, HEADER)
    return (None if raw is None else _text(raw)), False


def without_token(query: bytes) -> bytes:
    """The query string with every `gk-enqueue` parameter removed, the rest kept as it was."""
    return without_parameter(query, QUERY_PARAMETER)


def _text(raw: bytes) -> str:
    # A token is ASCII and bounded: anything else is a bad token (rejected without work).
    if len(raw) > MAX_TOKEN_CHARS or not raw.isascii():
        return "?"
    return raw.decode("ascii")
