"""The embedded store's state: a room and a session, and the helpers its steps share."""

from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import dataclass, field

from gatekeeper.store.base import Control, EndReason, Mode, RoomPolicy, Status

ADMITTING = (Mode.OPEN, Mode.PASSTHROUGH)


class ScoredSet:
    """A sorted-set stand-in: member → score, with a lazy min-heap for range-by-score pops."""

    def __init__(self) -> None:
        self.scores: dict[str, int] = {}
        self._heap: list[tuple[int, str]] = []

    def __len__(self) -> int:
        return len(self.scores)

    def add(self, member: str, score: int) -> None:
        self.scores[member] = score
        heapq.heappush(self._heap, (score, member))
        if len(self._heap) > 2 * len(self.scores) + 1024:
            self._heap = [(s, m) for m, s in self.scores.items()]
            heapq.heapify(self._heap)

    def remove(self, member: str) -> None:
        self.scores.pop(member, None)

    def due(self, max_score: int, limit: int) -> list[str]:
        """Members with score <= max_score, lowest first (ties by member), like ZRANGEBYSCORE."""
        found: list[tuple[int, str]] = []
        heap = self._heap
        while heap and heap[0][0] <= max_score and len(found) < limit:
            score, member = heapq.heappop(heap)
            if self.scores.get(member) == score and (score, member) not in found:
                found.append((score, member))
        for item in found:
            heapq.heappush(heap, item)
        return [member for _, member in found]


@dataclass(slots=True)
class SessionState:
    room: str
    status: Status
    seq: int
    user_id: str
    joined_at: int
    ended_at: int = 0
    claimed: bool = False
    """Polled since its grant (Redis: the hash's `claimed` field): its lease is the idle
    timeout, and it ends as idle_timeout rather than claim_timeout."""
    reason: EndReason | None = None


def timed_out(session: SessionState) -> EndReason:
    """Why a session past its deadline ends (`lapsed` in lib.lua): a silent waiter, or a lease
    that ran out before the place was claimed or after."""
    if session.status is Status.WAITING:
        return EndReason.WAITING_TIMEOUT
    return EndReason.IDLE_TIMEOUT if session.claimed else EndReason.CLAIM_TIMEOUT


@dataclass(slots=True)
class RoomState:
    seq: int = 0
    head: int = 0
    granted: int = 0
    rate_sum: float = 0.0
    rate_at: int = 0
    rate_since: int = 0
    tokens: int | None = None
    tokens_at: int | None = None
    controls: dict[str, str] = field(default_factory=dict)
    clients: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Join buckets per client: milli-tokens and when they were counted (see ClientLimit)."""
    joins: deque[str] = field(default_factory=deque)
    waiting: ScoredSet = field(default_factory=ScoredSet)
    active: ScoredSet = field(default_factory=ScoredSet)


def controls_of(r: RoomState, policy: RoomPolicy) -> tuple[int, int, int, str]:
    """Capacity, batch size, per-minute limit and mode: live controls over the policy."""
    c = r.controls
    return (
        int(c.get(Control.CAPACITY, policy.capacity)),
        int(c.get(Control.BATCH_SIZE, policy.batch_size)),
        int(c.get(Control.PER_MINUTE, policy.per_minute)),
        c.get(Control.MODE, Mode.OPEN),
    )


def refill(tokens: int, at: int, now: int, per_minute: int, burst: int) -> int:
    """Milli-tokens of a join bucket counted at `at`, refilled until `now` (see lib.lua)."""
    elapsed = now - at
    if elapsed > 0:
        tokens = min(burst, tokens + math.floor(elapsed * per_minute / 60))
    return tokens


def bucket(r: RoomState, now: int, per_minute: int) -> int | None:
    """Milli-tokens of the per-minute admission budget (None: no limit); see lib.lua."""
    if per_minute <= 0:
        return None
    burst = max(1, math.ceil(per_minute / 12)) * 1000
    tokens = burst if r.tokens is None else r.tokens
    return refill(tokens, now if r.tokens_at is None else r.tokens_at, now, per_minute, burst)


def spend(r: RoomState, now: int, tokens: int | None, used: int) -> None:
    if tokens is not None:
        r.tokens, r.tokens_at = tokens - used * 1000, now


@dataclass(frozen=True, slots=True)
class ClientLimit:
    """One client's join bucket: `per_minute` joins a minute, `burst` at once (join.lua)."""

    per_minute: int
    burst: int

    def take(self, buckets: dict[str, tuple[int, int]], client: str, now: int) -> int:
        """Spend a join of `client`: 0, or the milliseconds until one is left (nothing spent).

        A bucket that is full again is dropped (Redis lets its key expire), so `buckets` holds
        only clients that joined within the last burst's refill time."""
        burst = self.burst * 1000
        tokens, at = buckets.get(client, (burst, now))
        tokens = refill(tokens, at, now, self.per_minute, burst)
        if tokens < 1000:
            return math.ceil((1000 - tokens) * 60 / self.per_minute)
        size = len(buckets)
        if size >= 1024 and size & (size - 1) == 0 and client not in buckets:
            # At each power of two: a sweep costs O(size) once per doubling.
            rate = self.per_minute
            for done in [
                c for c, (t, a) in buckets.items() if refill(t, a, now, rate, burst) >= burst
            ]:
                del buckets[done]
        buckets[client] = (tokens - 1000, now)
        return 0
