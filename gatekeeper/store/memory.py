"""The embedded in-memory store: one process, no setup, the same behaviour as Redis.

It is also the executable reference model the Redis scripts are tested against, so each method
mirrors its Lua script step by step. Every method runs without awaiting, which makes it atomic
under asyncio.

Its layout is simpler than Redis's: every session is a `_Session` here, while in Redis a WAITING
session has no hash of its own (for memory, see join.lua) and is known by its entries in the
room's waiting set, waiting-seq hash and stream; `_Session.seq` of a waiter is that waiting-seq
entry. What the two can answer is the same.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import deque
from dataclasses import dataclass, field

from gatekeeper.clock import Clock, wall_clock
from gatekeeper.ids import room_of
from gatekeeper.store.base import (
    AUDIT_LIMIT,
    RATE_TAU_MS,
    REAP_LIMIT,
    SCAN_FACTOR,
    TERMINAL,
    Control,
    GrantReport,
    Mode,
    RoomCounts,
    RoomPolicy,
    Status,
    Ticket,
    grant_rate,
    require_room,
)

_ADMITTING = (Mode.OPEN, Mode.PASSTHROUGH)


def _controls(r: _Room, policy: RoomPolicy) -> tuple[int, int, int, str]:
    """Capacity, batch size, per-minute limit and mode: live controls over the policy."""
    c = r.controls
    return (
        int(c.get(Control.CAPACITY, policy.capacity)),
        int(c.get(Control.BATCH_SIZE, policy.batch_size)),
        int(c.get(Control.PER_MINUTE, policy.per_minute)),
        c.get(Control.MODE, Mode.OPEN),
    )


def _bucket(r: _Room, now: int, per_minute: int) -> int | None:
    """Milli-tokens of the per-minute admission budget (None: no limit); see lib.lua."""
    if per_minute <= 0:
        return None
    burst = max(1, math.ceil(per_minute / 12)) * 1000
    tokens = burst if r.tokens is None else r.tokens
    elapsed = now - (now if r.tokens_at is None else r.tokens_at)
    if elapsed > 0:
        tokens = min(burst, tokens + math.floor(elapsed * per_minute / 60))
    return tokens


def _spend(r: _Room, now: int, tokens: int | None, used: int) -> None:
    if tokens is not None:
        r.tokens, r.tokens_at = tokens - used * 1000, now


class _ScoredSet:
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
class _Session:
    room: str
    status: Status
    seq: int
    user_id: str
    joined_at: int
    ended_at: int = 0


@dataclass(slots=True)
class _Room:
    seq: int = 0
    head: int = 0
    granted: int = 0
    rate_sum: float = 0.0
    rate_at: int = 0
    rate_since: int = 0
    tokens: int | None = None
    tokens_at: int | None = None
    controls: dict[str, str] = field(default_factory=dict)
    joins: deque[str] = field(default_factory=deque)
    waiting: _ScoredSet = field(default_factory=_ScoredSet)
    active: _ScoredSet = field(default_factory=_ScoredSet)


class MemoryStore:
    """`Store` backed by Python dicts; see the Lua scripts for the rules it mirrors."""

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock = clock or wall_clock
        self._sessions: dict[str, _Session] = {}
        self._rooms: dict[str, _Room] = {}
        self._retired: deque[tuple[int, str, int]] = deque()
        self._rate_ms: int | None = None
        self._audit: deque[dict[str, str]] = deque(maxlen=AUDIT_LIMIT)

    def _ticket(self, sid: str, room_id: str, status: Status, seq: int, now: int) -> Ticket:
        room = self._rooms[room_id]
        waiting, active = len(room.waiting), len(room.active)
        ahead = 0
        if status is Status.WAITING:
            ahead = max(0, min(seq - room.head - 1, waiting - 1))
        rate = grant_rate(room.rate_sum, room.rate_at, room.rate_since, now)
        return Ticket(sid, room_id, status, ahead, waiting, active, rate)

    def _session(self, session_id: str) -> _Session | None:
        """The session an id names, looked up in the room the id names (`room_of`)."""
        session = self._sessions.get(session_id)
        if session is None or session.room != room_of(session_id):
            return None
        return session

    def _finish(
        self, sid: str, session: _Session, status: Status, now: int, retention: int
    ) -> None:
        session.status = status
        session.ended_at = now
        self._retired.append((now + retention, sid, now))

    async def join(
        self, room: str, session_id: str, policy: RoomPolicy, *, user_id: str = ""
    ) -> Ticket:
        require_room(room, session_id)
        now = self._clock()
        r = self._rooms.setdefault(room, _Room())
        current = self._sessions.get(session_id)
        if current is not None:
            return self._ticket(session_id, room, current.status, current.seq, now)
        r.seq += 1
        capacity, _, per_minute, mode = _controls(r, policy)
        tokens = _bucket(r, now, per_minute)
        if (
            mode in _ADMITTING
            and (tokens is None or tokens >= 1000)
            and not r.waiting
            and len(r.active) < capacity
        ):
            status = Status.ACTIVE
            _spend(r, now, tokens, 1)
            r.head = r.seq
            r.active.add(session_id, now + policy.idle_timeout_ms)
        else:
            # Redis: a waiting-set member, a waiting-seq entry and a stream entry; no hash.
            status = Status.WAITING
            r.waiting.add(session_id, now)
            r.joins.append(session_id)
        self._sessions[session_id] = _Session(room, status, r.seq, user_id, now)
        return self._ticket(session_id, room, status, r.seq, now)

    async def poll(self, session_id: str, policy: RoomPolicy) -> Ticket | None:
        now = self._clock()
        session = self._session(session_id)
        if session is None:
            return None
        room = self._rooms[session.room]
        if session.status is Status.WAITING:
            seen = room.waiting.scores.get(session_id)
            if seen is not None and seen + policy.waiting_timeout_ms > now:
                room.waiting.add(session_id, now)
            else:
                room.waiting.remove(session_id)
                self._finish(session_id, session, Status.EXPIRED, now, policy.retention_ms)
        elif session.status is Status.ACTIVE:
            lease = room.active.scores.get(session_id)
            if lease is not None and lease > now:
                room.active.add(session_id, max(lease, now + policy.idle_timeout_ms))
            else:
                room.active.remove(session_id)
                self._finish(session_id, session, Status.EXPIRED, now, policy.retention_ms)
        elif session.ended_at + policy.retention_ms <= now:
            del self._sessions[session_id]
            return None
        return self._ticket(session_id, session.room, session.status, session.seq, now)

    async def leave(self, session_id: str, policy: RoomPolicy, *, revoke: bool = False) -> bool:
        now = self._clock()
        session = self._session(session_id)
        if session is None:
            return False
        room = self._rooms[session.room]
        if session.status is Status.WAITING:
            room.waiting.remove(session_id)
        elif session.status is Status.ACTIVE:
            room.active.remove(session_id)
        elif session.ended_at + policy.retention_ms <= now:
            del self._sessions[session_id]
            return False
        if session.status not in TERMINAL:
            final = Status.EXPIRED if revoke else Status.LEFT
            self._finish(session_id, session, final, now, policy.retention_ms)
        return True

    def _reap(self, scored: _ScoredSet, max_score: int, status: Status, now: int, ret: int) -> int:
        count = 0
        for sid in scored.due(max_score, REAP_LIMIT):
            session = self._sessions.get(sid)
            if session is not None and session.status is status:
                self._finish(sid, session, Status.EXPIRED, now, ret)
                count += 1
            scored.remove(sid)
        return count

    def _forget_retired(self, now: int) -> None:
        # Reads hide retired sessions on time; this only reclaims their memory.
        while self._retired and self._retired[0][0] <= now:
            _, sid, ended_at = self._retired.popleft()
            session = self._sessions.get(sid)
            if session is not None and session.status in TERMINAL and session.ended_at == ended_at:
                del self._sessions[sid]

    async def grant(self, room: str, policy: RoomPolicy) -> GrantReport:
        now = self._clock()
        r = self._rooms.setdefault(room, _Room())
        ret = policy.retention_ms
        expired_active = self._reap(r.active, now, Status.ACTIVE, now, ret)
        expired_waiting = self._reap(
            r.waiting, now - policy.waiting_timeout_ms, Status.WAITING, now, ret
        )
        granted: list[str] = []
        capacity, batch, per_minute, mode = _controls(r, policy)
        want = min(capacity - len(r.active), batch)
        if mode not in _ADMITTING:
            want = 0
        tokens = None
        if want > 0:
            tokens = _bucket(r, now, per_minute)
            if tokens is not None:
                want = min(want, tokens // 1000)
        if want > 0 and r.waiting:
            head: int | None = None
            for _ in range(min(want * SCAN_FACTOR, len(r.joins))):
                sid = r.joins.popleft()
                session = self._sessions.get(sid)
                if session is not None:
                    head = session.seq
                    if session.status is Status.WAITING:
                        seen = r.waiting.scores.get(sid)
                        r.waiting.remove(sid)
                        if seen is not None and seen + policy.waiting_timeout_ms > now:
                            session.status = Status.ACTIVE
                            r.active.add(sid, now + policy.claim_window_ms)
                            granted.append(sid)
                        else:
                            self._finish(sid, session, Status.EXPIRED, now, ret)
                            expired_waiting += 1
                if len(granted) >= want:
                    break
            if head is not None:
                r.head = head
            _spend(r, now, tokens, len(granted))
            if granted:
                decayed = (
                    r.rate_sum * math.exp(-(now - r.rate_at) / RATE_TAU_MS) if r.rate_at else 0.0
                )
                r.rate_sum, r.rate_at = decayed + len(granted), now
                r.rate_since = r.rate_since or now
                r.granted += len(granted)
        self._forget_retired(now)
        return GrantReport(
            tuple(granted), expired_active, expired_waiting, len(r.waiting), len(r.active)
        )

    async def rooms(self) -> list[str]:
        return sorted(self._rooms)

    async def counts(self, room: str) -> RoomCounts:
        r = self._rooms.get(room) or _Room()
        rate = grant_rate(r.rate_sum, r.rate_at, r.rate_since, self._clock())
        oldest = 0
        for sid in itertools.islice(r.joins, 10):
            session = self._sessions.get(sid)
            if session is not None and session.status is Status.WAITING:
                oldest = session.joined_at
                break
        return RoomCounts(room, len(r.waiting), len(r.active), rate, oldest)

    async def controls(self, room: str) -> dict[str, str]:
        r = self._rooms.get(room)
        return dict(r.controls) if r is not None else {}

    async def set_controls(self, room: str, changes: dict[str, str | None]) -> None:
        controls = self._rooms.setdefault(room, _Room()).controls
        for key, value in changes.items():
            if value is None:
                controls.pop(key, None)
            else:
                controls[key] = value

    async def rate_ms(self) -> int | None:
        return self._rate_ms

    async def set_rate_ms(self, ms: int | None) -> None:
        self._rate_ms = ms

    async def audit(self, entry: dict[str, str]) -> None:
        self._audit.append({"ts": str(self._clock()), **entry})

    async def audit_log(self, limit: int) -> list[dict[str, str]]:
        return list(reversed(self._audit))[:limit]

    async def ping(self) -> None:
        return None

    async def aclose(self) -> None:
        return None
