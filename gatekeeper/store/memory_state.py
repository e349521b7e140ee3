"""The embedded store's state: a room and a session, and the helpers its steps share."""

from __future__ import annotations

import bisect
import heapq
import math
from collections import deque
from dataclasses import dataclass, field

from gatekeeper.store.base import (
    RATE_TAU_MS,
    Control,
    EndReason,
    Entry,
    EventField,
    Mode,
    RoomPolicy,
    Status,
)
from gatekeeper.store.ranks import PRIORITY_MARK, priority_rank, rank_key

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


class Prequeue:
    """The pre-queue of an event, ordered by key (`<rank key>:<sid>`) like Redis's zset whose
    scores are all 0: `rank` is ZRANK, `pop` takes from the front."""

    def __init__(self) -> None:
        self._keys: list[str] = []
        self._head = 0  # keys before it were popped (compacted once they are half the list)
        self.rank_of: dict[str, str] = {}
        self.priority = 0
        """How many of its sessions are priority waiters (`ranks.priority_rank`)."""

    def __len__(self) -> int:
        return len(self._keys) - self._head

    def add(self, sid: str, rank: str) -> None:
        bisect.insort(self._keys, f"{rank}:{sid}", lo=self._head)
        self.rank_of[sid] = rank
        self.priority += rank.startswith(PRIORITY_MARK)

    def rank(self, sid: str) -> int | None:
        rank = self.rank_of.get(sid)
        if rank is None:
            return None
        return bisect.bisect_left(self._keys, f"{rank}:{sid}", lo=self._head) - self._head

    def remove(self, sid: str) -> None:
        rank = self.rank_of.pop(sid, None)
        if rank is not None:
            self.priority -= rank.startswith(PRIORITY_MARK)
            key = f"{rank}:{sid}"
            i = bisect.bisect_left(self._keys, key, lo=self._head)
            if i < len(self._keys) and self._keys[i] == key:
                del self._keys[i]

    def page(self, offset: int, limit: int) -> list[str]:
        """The sessions from rank `offset` on, at most `limit`, in order."""
        start = self._head + max(offset, 0)
        return [key.partition(":")[2] for key in self._keys[start : start + limit]]

    def pop(self, n: int) -> list[str]:
        """The first `n` sessions in order, taken off the pre-queue."""
        taken = self._keys[self._head : self._head + n]
        self._head += len(taken)
        if self._head > len(self._keys) // 2:
            del self._keys[: self._head]
            self._head = 0
        sids = [key.partition(":")[2] for key in taken]
        for sid in sids:
            self.priority -= self.rank_of.pop(sid).startswith(PRIORITY_MARK)
        return sids


def event_phase(controls: dict[str, str], now: int) -> tuple[str, bool]:
    """A room's on-sale phase at `now` and whether it is drawn: `event_phase` in lib.lua."""
    starts = controls.get(EventField.STARTS)
    if starts is None:
        return "", False
    drawn = EventField.DRAWN in controls
    ends = controls.get(EventField.ENDS)
    if ends is not None and now >= int(ends):
        return "closed", drawn
    if now >= int(starts):
        return "open", drawn
    if now >= int(controls.get(EventField.OPENS, starts)):
        return "prequeue", drawn
    return "before", drawn


def prequeue_rank(controls: dict[str, str], sid: str, entry: Entry, seq: int) -> str:
    """A rank key in the ordered line: a priority waiter's, else (an event's pre-queue) the one
    given, else the rule's with the event's seed when it shuffles (join.lua asks the caller for
    it), else the arrival order."""
    if entry.priority > 0:
        return priority_rank(entry.priority, seq)
    given = entry.rank
    if given:
        return given
    seed = controls.get(EventField.SEED, "")
    if controls.get(EventField.SHUFFLE) == "1" and seed:
        return rank_key(seed, sid)
    return f"{seq:020d}"


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
    ends_at: int | None = None
    """An admitted session's hard end (its grant + max-session; `hard_end` in lib.lua)."""

    def admit(self, now: int, lease_ms: int, max_session_ms: int) -> int:
        """Turn ACTIVE at `now` for `lease_ms`, capped by the hard end: the lease's expiry."""
        self.status = Status.ACTIVE
        self.ends_at = now + max_session_ms if max_session_ms > 0 else None
        return capped(now + lease_ms, self.ends_at)


def capped(lease: int, ends_at: int | None) -> int:
    """A lease that never reaches past a session's hard end (`capped` in lib.lua)."""
    return lease if ends_at is None else min(lease, ends_at)


def timed_out(session: SessionState, now: int) -> EndReason:
    """Why a session past its deadline at `now` ends (`expiry_reason` in lib.lua): a silent
    waiter, an admitted visitor at its hard end, or a lease that ran out before the place was
    claimed or after."""
    if session.status is Status.WAITING:
        return EndReason.WAITING_TIMEOUT
    if session.ends_at is not None and now >= session.ends_at:
        return EndReason.SESSION_LIMIT
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
    prequeue: Prequeue = field(default_factory=Prequeue)
    clients: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Join buckets per client: milli-tokens and when they were counted (see ClientLimit)."""
    users: dict[str, str] = field(default_factory=dict)
    """Enqueue-token user id → the session that took the user's place (join.lua's KEYS[11])."""
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


@dataclass(slots=True)
class Walk:
    """One grant step's walk over waiters: what it may do and what it did."""

    policy: RoomPolicy
    now: int
    quota: int = 0
    closing: bool = False
    granted: list[str] = field(default_factory=list)
    closed: int = 0
    expired: int = 0

    @property
    def left(self) -> int:
        return self.quota - len(self.granted) - self.closed

    @property
    def done(self) -> bool:
        return self.left <= 0


def record_grants(r: RoomState, now: int, n: int) -> None:
    """Add `n` grants to the room's decaying grant-rate sum (see grant.lua)."""
    if n:
        decayed = r.rate_sum * math.exp(-(now - r.rate_at) / RATE_TAU_MS) if r.rate_at else 0.0
        r.rate_sum, r.rate_at = decayed + n, now
        r.rate_since = r.rate_since or now
        r.granted += n


def holder(r: RoomState, sessions: dict[str, SessionState], user: str, now: int) -> str | None:
    """The session holding `user`'s place in the room (`held` in join.lua): waiting, or
    admitted with a lease that has not run out; None when the place is gone."""
    sid = r.users.get(user)
    session = None if sid is None else sessions.get(sid)
    if sid is None or session is None:
        return None
    if session.status is Status.WAITING:
        return sid
    lease = r.active.scores.get(sid)
    live = session.status is Status.ACTIVE and lease is not None and lease > now
    return sid if live else None
