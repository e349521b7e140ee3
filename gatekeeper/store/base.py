"""The store protocol and the value types every backend speaks."""

from __future__ import annotations

import math
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

Clock = Callable[[], int]
"""Returns the current time in integer milliseconds since the epoch."""

ROOM_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_TOKEN = re.compile(r"[A-Za-z0-9_-]{22}")

DEFAULT_ROOM = "default"

# How many expired leases / stale waiters one grant step reaps, and how many dead stream
# entries it may skip: bounds the work of one atomic step whatever the queue length.
REAP_LIMIT = 200
SCAN_FACTOR = 10

# Time constant (ms) of the decaying grant-rate estimate used for ETAs.
RATE_TAU_MS = 60_000


class Status(StrEnum):
    """A session's state; the values are the API's status strings."""

    WAITING = "WAITING"
    ACTIVE = "ACTIVE"
    LEFT = "LEFT"
    EXPIRED = "EXPIRED"


TERMINAL = frozenset({Status.LEFT, Status.EXPIRED})


@dataclass(frozen=True, slots=True)
class RoomPolicy:
    """The numbers a store needs to run one room; all durations in milliseconds."""

    capacity: int
    batch_size: int
    waiting_timeout_ms: int
    claim_window_ms: int
    idle_timeout_ms: int
    retention_ms: int


@dataclass(frozen=True, slots=True)
class Ticket:
    """One session as the store saw it in a single atomic step.

    `ahead` is an upper-bound estimate of live waiters in front (0 unless WAITING): sessions that
    joined earlier and have not yet been passed by the grant cursor, capped by the live waiting
    count. `grant_rate` is the room's observed grants per second (decaying average).
    """

    session_id: str
    room: str
    status: Status
    ahead: int
    waiting: int
    active: int
    grant_rate: float


@dataclass(frozen=True, slots=True)
class GrantReport:
    """What one grant step did in one room."""

    granted: tuple[str, ...]
    expired_active: int
    expired_waiting: int
    waiting: int
    active: int


@dataclass(frozen=True, slots=True)
class RoomCounts:
    """Live figures of one room."""

    room: str
    waiting: int
    active: int
    grant_rate: float


def new_session_id(room: str) -> str:
    """An unguessable session id (128 random bits) that names its room: `<token>.<room>`."""
    return f"{secrets.token_urlsafe(16)}.{room}"


def room_of(session_id: str) -> str | None:
    """The room a well-formed session id belongs to, or None for a malformed id."""
    token, sep, room = session_id.partition(".")
    if not sep or not _TOKEN.fullmatch(token) or not ROOM_ID.fullmatch(room):
        return None
    return room


class Store(Protocol):
    """Atomic waiting-room state. Every method is one atomic step in the backend.

    Backends raise `StoreError` (and nothing else) when they cannot answer.
    """

    async def join(
        self, room: str, session_id: str, policy: RoomPolicy, *, user_id: str = ""
    ) -> Ticket:
        """Create a session; ACTIVE at once when the room has room and nobody waits.

        Idempotent by session id: joining with an existing id returns its current ticket.
        """
        ...

    async def poll(self, session_id: str, policy: RoomPolicy) -> Ticket | None:
        """Read a session and record that its owner is alive (heartbeat / lease renewal).

        None when the id is unknown, malformed or past its retention.
        """
        ...

    async def leave(self, session_id: str, policy: RoomPolicy) -> bool:
        """Release a session (idempotent). False when the id is unknown."""
        ...

    async def grant(self, room: str, policy: RoomPolicy) -> GrantReport:
        """One grant step: reap expired leases and stale waiters, admit in FIFO order."""
        ...

    async def rooms(self) -> list[str]:
        """Rooms that have seen joins recently (the grant loop's work list)."""
        ...

    async def counts(self, room: str) -> RoomCounts:
        """Live waiting/active counts of a room."""
        ...

    async def ping(self) -> None:
        """Raise `StoreError` unless the backend answers."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


def grant_rate(rate_sum: float, rate_at: int, rate_since: int, now: int) -> float:
    """Grants per second from the decaying sum the grant step keeps (time constant RATE_TAU_MS).

    The sum is normalised by the weight a constant rate would have accumulated since the first
    grant, so the estimate is unbiased from the first grant on, then forgets over ~a minute.
    """
    if rate_sum <= 0:
        return 0.0
    decayed = rate_sum * math.exp(-max(now - rate_at, 0) / RATE_TAU_MS)
    span = max(now - rate_since, 1000)
    return decayed / (RATE_TAU_MS / 1000 * (1 - math.exp(-span / RATE_TAU_MS)))
