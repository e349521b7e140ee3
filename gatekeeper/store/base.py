"""The store protocol and the value types every backend speaks."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from gatekeeper.errors import JoinRefused, Refusal
from gatekeeper.ids import room_of

# How many expired leases / stale waiters one grant step reaps, and how many dead stream
# entries it may skip: bounds the work of one atomic step whatever the queue length.
REAP_LIMIT = 200
SCAN_FACTOR = 10

# Time constant (ms) of the decaying grant-rate estimate used for ETAs.
RATE_TAU_MS = 60_000

# Operator actions the audit log keeps (the oldest go first).
AUDIT_LIMIT = 10_000

# Seconds a visitor turned away by a full line is asked to wait before trying again.
QUEUE_FULL_RETRY_S = 30

# A join lists its room (`Queue.rooms`) at most this often per store instance, or at once when
# it found the room empty: a room with someone in it is never left off the list for long.
REGISTER_EVERY_MS = 10_000


class Status(StrEnum):
    """A session's state; the values are the API's status strings."""

    WAITING = "WAITING"
    ACTIVE = "ACTIVE"
    LEFT = "LEFT"
    EXPIRED = "EXPIRED"


TERMINAL = frozenset({Status.LEFT, Status.EXPIRED})


class EndReason(StrEnum):
    """Why a session ended; the values are the API's `reason` strings and the session hash's
    `reason` field in Redis (lib.lua)."""

    LEFT = "left"
    """The visitor left (the leave API, a done path, the origin's leave command)."""
    WAITING_TIMEOUT = "waiting_timeout"
    """A waiter stopped polling for the waiting timeout."""
    CLAIM_TIMEOUT = "claim_timeout"
    """A place was granted (or taken at once by a lazy join) and never claimed: the session was
    not polled again before the claim window ran out."""
    IDLE_TIMEOUT = "idle_timeout"
    """An admitted visitor, polled at least once since the grant, idle past the idle timeout."""
    REVOKED = "revoked"
    """An operator revoked the session."""
    CLOSED = "closed"
    """A waiter whose room was closed (sold out)."""
    SESSION_LIMIT = "session_limit"
    """An admitted visitor reached the room's `max-session`, however busy."""

    @property
    def status(self) -> Status:
        """The terminal status of a session ended for this reason: LEFT only when it left."""
        return Status.LEFT if self is EndReason.LEFT else Status.EXPIRED


@dataclass(frozen=True, slots=True)
class RoomPolicy:
    """The numbers a store needs to run one room; all durations in milliseconds."""

    capacity: int
    batch_size: int
    waiting_timeout_ms: int
    claim_window_ms: int
    idle_timeout_ms: int
    retention_ms: int
    per_minute: int = 0
    """New visitors admitted per minute at most (0 = no limit)."""
    max_waiting: int = 0
    """Most sessions waiting in line; a join that would wait beyond is refused (0 = no cap)."""
    client_joins_per_minute: int = 0
    """Joins one client (see `Entry.client`) may make per minute, sustained (0 = no limit)."""
    client_join_burst: int = 1
    """Joins one client may make at once before its per-minute limit applies."""
    max_session_ms: int = 0
    """An admitted session ends this long after its grant, however busy (0 = no cap)."""


@dataclass(frozen=True, slots=True)
class Entry:
    """Who asks to join, and how.

    `client` is the key per-client join limits count by (`gatekeeper.clients.client_key`;
    "" = not limited). A `lazy` join writes a session only when it is admitted at once; one
    that would wait is answered with a WAITING ticket (everyone in line ahead of it) and writes
    nothing, so a client that keeps no cookies cannot add itself to the line: its session is
    written when it comes back with the cookie and joins again, not lazily.
    """

    client: str = ""
    lazy: bool = False
    rank: str = ""
    """In an event's pre-queue: the session's rank key (`core.draw.rank_key`), which fixes its
    place in the drawn order; "" = arrival order."""
    user: str = ""
    """An enqueue token's user: one place per user and room. A join of a user whose session
    still holds a place answers that session (another `Ticket.session_id`); "" = none."""
    priority: int = 0
    """0 for the ordinary line; 1..`enqueue.MAX_PRIORITY` wait in front of it, the highest first, in
    join order within a priority (an enqueue token's `priority`). Never a lazy join."""


NO_ENTRY = Entry()


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
    reason: EndReason | None = None
    """Why the session ended (LEFT or EXPIRED); None while it is WAITING or ACTIVE, and for a
    session that ended before reasons were kept."""
    ends_at: int | None = None
    """An ACTIVE session's hard end (`grantedAt + max-session`, epoch ms); None without a cap."""
    ended: bool = False
    """This very call ended the session (a poll past a deadline, or of a waiter in a closed
    room): the caller is the one to count it."""


@dataclass(frozen=True, slots=True)
class GrantReport:
    """What one grant step did in one room."""

    granted: tuple[str, ...]
    expired_active: int
    """Admitted sessions whose lease ran out (claim or idle timeout)."""
    expired_waiting: int
    """Waiters ended: silent past the waiting timeout, or sent away by a closed room."""
    waiting: int
    active: int
    unclaimed: int = 0
    """Of `expired_active`, places never claimed (claim_timeout; the rest idle_timeout)."""
    closed: int = 0
    """Of `expired_waiting`, waiters of a closed room (closed; the rest waiting_timeout)."""
    limited: int = 0
    """Of `expired_active`, sessions that reached the room's max-session (session_limit)."""

    def ended(self) -> dict[EndReason, int]:
        """The sessions this step ended, by reason (reasons with none left out)."""
        counts = {
            EndReason.CLAIM_TIMEOUT: self.unclaimed,
            EndReason.SESSION_LIMIT: self.limited,
            EndReason.IDLE_TIMEOUT: self.expired_active - self.unclaimed - self.limited,
            EndReason.WAITING_TIMEOUT: self.expired_waiting - self.closed,
            EndReason.CLOSED: self.closed,
        }
        return {reason: n for reason, n in counts.items() if n}


@dataclass(frozen=True, slots=True)
class RoomCounts:
    """Live figures of one room."""

    room: str
    waiting: int
    active: int
    grant_rate: float
    oldest_join_ms: int = 0
    """When the oldest entry still queued joined (0 when the queue is empty)."""


class Mode(StrEnum):
    """A room's admission mode, set live by operators."""

    OPEN = "open"
    PAUSED = "paused"
    """No admissions (queue and grants frozen); admitted visitors continue."""
    QUEUE_ALL = "queue-all"
    """Emergency stop: no admissions, and the gate holds back admitted visitors too."""
    PASSTHROUGH = "passthrough"
    """The gate lets everyone through but still counts them."""
    CLOSED = "closed"
    """Sold out: joins are refused (ROOM_CLOSED), waiters end as EXPIRED (reason closed) at
    their next poll or grant step; admitted visitors keep their place until they leave or
    time out."""


class Control(StrEnum):
    """A live room control an operator may set; an absent one falls back to the configuration.

    The values are the fields of the room's control hash in Redis (and of lib.lua).
    """

    CAPACITY = "capacity"
    BATCH_SIZE = "batch-size"
    PER_MINUTE = "per-minute"
    MODE = "mode"


MESSAGE_FIELD = "message"
"""The control-hash field of an operator's message to a room's waiters (plain text)."""
MAX_MESSAGE = 500
"""Characters an operator's message may have."""


class EventField(StrEnum):
    """A room's on-sale event, kept as fields of its control hash (set through
    `Operations.set_controls`, read by the scripts: `event_phase` in lib.lua). Instants are
    epoch milliseconds."""

    OPENS = "event-opens"
    STARTS = "event-starts"
    ENDS = "event-ends"
    SHUFFLE = "event-shuffle"
    """"1" when the pre-queue is drawn by rank key, "" for arrival order."""
    SEED = "event-seed"
    """The draw's seed (hex); secret until the draw."""
    COMMITMENT = "event-commitment"
    DRAWN = "event-drawn"
    """When the pre-queue became the front of the line (set by the first grant step after the
    start); from then on the seed is published."""


class Queue(Protocol):
    """The queue of each room: sessions joining, polling, leaving and being granted places.

    Every method is one atomic step in the backend. A session id names its room
    (`<token>.<room>`, see `gatekeeper.ids`), and every backend follows that one rule: `join`
    accepts only ids of the room it is given, and `poll` and `leave` find the room from the id
    alone (`room_of`). Backends raise `StoreError` (and nothing else) when they cannot answer.
    """

    async def join(
        self,
        room: str,
        session_id: str,
        policy: RoomPolicy,
        *,
        user_id: str = "",
        entry: Entry = NO_ENTRY,
    ) -> Ticket:
        """Create a session; ACTIVE at once when the room has room and nobody waits.

        Idempotent by session id: joining with an existing id returns its current ticket.
        Raises `ValueError` before writing anything when `room_of(session_id) != room` (a
        malformed id, or one of another room): that is a caller's bug (`require_room`).
        Raises `JoinRefused`, writing nothing, when the room is closed (ROOM_CLOSED, checked
        first), when a join that would wait finds the line at `policy.max_waiting`
        (QUEUE_FULL, lazy joins included) or when the client's join limit is spent
        (RATE_LIMITED; only joins that write count). A lazy join
        admitted at once holds its place for the claim window, not the idle timeout, until
        the session is polled (its owner came back with the cookie). See `Entry`.
        """
        ...

    async def poll(self, session_id: str, policy: RoomPolicy) -> Ticket | None:
        """Read a session and record that its owner is alive (heartbeat / lease renewal).

        The room is `room_of(session_id)`. None, and nothing changes, when the id is
        malformed, when that room has no such session, or when it is past its retention.
        A waiter silent past the waiting timeout, or whose room is closed, and an admitted
        session past its lease end here (`Ticket.ended`, with the `EndReason`). The first
        poll of an admitted session claims its place: its lease becomes the idle timeout.
        """
        ...

    async def leave(self, session_id: str, policy: RoomPolicy, *, revoke: bool = False) -> bool:
        """Release a session (idempotent); True when it exists.

        The room is `room_of(session_id)`. False, and nothing changes, when the id is
        malformed, when that room has no such session, or when it is past its retention.
        `revoke` (an operator's action) ends it as EXPIRED (reason revoked) instead of LEFT
        (reason left).
        """
        ...

    async def grant(self, room: str, policy: RoomPolicy) -> GrantReport:
        """One grant step: reap expired leases and stale waiters, admit in FIFO order.

        In a closed room nobody is admitted: the step ends up to REAP_LIMIT live waiters, in
        join order, as EXPIRED (reason closed)."""
        ...

    async def rooms(self) -> list[str]:
        """Rooms that have seen joins recently (the grant loop's work list)."""
        ...

    async def forget(self, room: str, idle_ms: int) -> bool:
        """Drop an empty room from `rooms()` when its last listing is `idle_ms` old or more.

        True when the room was dropped: its queue state (sequence, rate, budget) is released,
        its live controls and its ended sessions (until their retention) are kept. A room with
        anyone waiting or active stays listed. A join that finds a room empty lists it again at
        once, so a forgotten room works as before on its next join.
        """
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


class Operations(Protocol):
    """What operators set and read: live room controls, the live grant interval, the audit log.

    Every replica sees a change at once; backends raise `StoreError` when they cannot answer.
    """

    async def controls(self, room: str) -> dict[str, str]:
        """The live controls set on a room (only those set; see Control)."""
        ...

    async def set_controls(self, room: str, changes: dict[str, str | None]) -> None:
        """Set (or with None, clear) live controls of a room; every replica sees them."""
        ...

    async def ensure_seed(self, room: str, seed: str, commitment: str) -> str:
        """Give the room's event `seed` and its `commitment` unless it has a seed already;
        the seed in force (one step: every replica and operator agrees on one)."""
        ...

    async def prequeue(self, room: str, offset: int, limit: int) -> tuple[int, list[str]]:
        """The room's pre-queue: how many are in it, and the session ids from `offset` (its
        rank), at most `limit`, in drawn order."""
        ...

    async def rate_ms(self) -> int | None:
        """The live grant-loop interval, when an operator set one."""
        ...

    async def set_rate_ms(self, ms: int | None) -> None:
        """Set (or clear) the live grant-loop interval of every replica."""
        ...

    async def audit(self, entry: dict[str, str]) -> None:
        """Append an operator action to the audit log."""
        ...

    async def audit_log(self, limit: int) -> list[dict[str, str]]:
        """The newest audit entries, newest first."""
        ...


class Store(Queue, Operations, Protocol):
    """A backend: the queue and the operations in one place (embedded, Redis, Redis Cluster)."""


def require_room(room: str, session_id: str) -> None:
    """Raise `ValueError` unless `session_id` is a well-formed id of `room` (`Store.join`)."""
    if room_of(session_id) != room:
        # The id itself stays out of the message: it is the visitor's bearer secret.
        raise ValueError(f"not a session id of room {room!r}")


def refusal(reason: str, retry_ms: int) -> JoinRefused:
    """The error of a join a store turned away: `reason` is a `Refusal` value; a full line is
    tried again after QUEUE_FULL_RETRY_S, a spent join limit once a token is back, and a
    closed room not at all (0: no Retry-After)."""
    why = Refusal(reason)
    if why is Refusal.ROOM_CLOSED:
        return JoinRefused(why, 0)
    if why is Refusal.QUEUE_FULL:
        return JoinRefused(why, QUEUE_FULL_RETRY_S)
    return JoinRefused(why, max(1, math.ceil(retry_ms / 1000)))


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
