"""The exception tree: every failure gatekeeper raises on purpose is one of these.

GatekeeperError
 ├── ConfigError      a bad or missing configuration value (names the key)
 ├── StoreError       the state store is unreachable, slow or answered nonsense
 │    └── StoreFull           out of memory: no new sessions; the rest keeps working
 └── OriginError      the upstream origin failed
      ├── OriginUnavailable   connect error, refused, reset  → 502
      └── OriginTimeout       no answer in time               → 504
"""

from __future__ import annotations

from enum import StrEnum


class GatekeeperError(Exception):
    """Base class of every error gatekeeper raises on purpose."""


class ConfigError(GatekeeperError):
    """A configuration value is missing or invalid; the message names the key."""


class StoreError(GatekeeperError):
    """The state store could not complete a call (unreachable, timed out, bad reply)."""


class StoreFull(StoreError):
    """The store is out of memory and refuses to add sessions; what is there keeps working."""


class OriginError(GatekeeperError):
    """The origin behind the proxy failed."""


class OriginUnavailable(OriginError):
    """The origin refused or dropped the connection."""


class OriginTimeout(OriginError):
    """The origin did not answer within the configured timeout."""


class Refusal(StrEnum):
    """Why a room turned a join away; the values are the API's error codes."""

    RATE_LIMITED = "rate_limited"
    """The client's join limit is spent (429)."""
    QUEUE_FULL = "queue_full"
    """The room's line is as long as `max-waiting` allows, or the store is full (503)."""
    ROOM_CLOSED = "room_closed"
    """The room is closed (sold out): no new sessions until an operator reopens it (409)."""


class JoinRefused(GatekeeperError):
    """A room turned a join away; nothing was written. Try again after `retry_after_s` (0: not
    worth trying again, the room is closed)."""

    def __init__(self, reason: Refusal, retry_after_s: int) -> None:
        super().__init__(f"join refused: {reason.value}, retry after {retry_after_s} s")
        self.reason = reason
        self.retry_after_s = retry_after_s
