"""The embedded in-memory store: one process, no setup, the same behaviour as Redis.

It is also the executable reference model the Redis scripts are tested against, so each method
mirrors its Lua script step by step. Every method runs without awaiting, which makes it atomic
under asyncio.

Its layout is simpler than Redis's: every session is a `SessionState` here, while in Redis a
WAITING session has no hash of its own (see join.lua); what the two can answer is the same. The
room list (`rooms()`) is like the Redis sorted set `<prefix>:rooms` (`_register`).
"""

from __future__ import annotations

import itertools
from collections import deque

from gatekeeper.clock import Clock, wall_clock
from gatekeeper.errors import Refusal
from gatekeeper.ids import room_of
from gatekeeper.store.base import (
    AUDIT_LIMIT,
    NO_ENTRY,
    REAP_LIMIT,
    REGISTER_EVERY_MS,
    SCAN_FACTOR,
    TERMINAL,
    Control,
    EndReason,
    Entry,
    EventField,
    GrantReport,
    Mode,
    RoomCounts,
    RoomPolicy,
    Status,
    Ticket,
    grant_rate,
    refusal,
    require_room,
)
from gatekeeper.store.memory_operations import MemoryOperations
from gatekeeper.store.memory_state import (
    ADMITTING,
    ClientLimit,
    RoomState,
    ScoredSet,
    SessionState,
    Walk,
    bucket,
    capped,
    controls_of,
    event_phase,
    holder,
    prequeue_rank,
    record_grants,
    spend,
    timed_out,
)


class MemoryStore(MemoryOperations):
    """`Store` backed by Python dicts; see the Lua scripts for the rules it mirrors."""

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock = clock or wall_clock
        self._sessions: dict[str, SessionState] = {}
        self._rooms: dict[str, RoomState] = {}
        # Room → last registration (ms): the Redis room set; and this store's throttle of it.
        self._listed: dict[str, int] = {}
        self._registered: dict[str, int] = {}
        self._retired: deque[tuple[int, str, int]] = deque()
        self._rate_ms: int | None = None
        self._audit: deque[dict[str, str]] = deque(maxlen=AUDIT_LIMIT)

    def _ticket(
        self, sid: str, room_id: str, session: SessionState | None, now: int, ended: bool = False
    ) -> Ticket:
        """The ticket of a session (`ticket` in lib.lua); None: a lazy join that wrote nothing
        (WAITING, not in line, so everyone is ahead)."""
        # A forgotten room has no state; its retained (ended) sessions read it as empty.
        room = self._rooms.get(room_id) or RoomState()
        waiting, active = len(room.waiting), len(room.active)
        status = Status.WAITING if session is None else session.status
        ahead = 0
        if session is None:
            ahead = waiting
        elif status is Status.WAITING:
            # `waiter` in lib.lua: the ordered line's rank, else behind the priority line too.
            rank = room.prequeue.rank(sid)
            if rank is None:
                ahead = session.seq - room.head - 1 + room.prequeue.priority
                rank = max(0, min(ahead, waiting - 1))
            ahead = rank
        rate = grant_rate(room.rate_sum, room.rate_at, room.rate_since, now)
        reason = None if session is None else session.reason
        ends = session.ends_at if session is not None and status is Status.ACTIVE else None
        return Ticket(sid, room_id, status, ahead, waiting, active, rate, reason, ends, ended)

    def _session(self, session_id: str) -> SessionState | None:
        """The session an id names, looked up in the room the id names (`room_of`)."""
        session = self._sessions.get(session_id)
        if session is None or session.room != room_of(session_id):
            return None
        return session

    def _finish(
        self, sid: str, session: SessionState, reason: EndReason, now: int, retention: int
    ) -> None:
        # `finish` in lib.lua: the status follows from the reason.
        session.status, session.reason = reason.status, reason
        session.ended_at = now
        self._retired.append((now + retention, sid, now))

    async def join(
        self,
        room: str,
        session_id: str,
        policy: RoomPolicy,
        *,
        user_id: str = "",
        entry: Entry = NO_ENTRY,
    ) -> Ticket:
        require_room(room, session_id)
        now = self._clock()
        r = self._rooms.get(room) or RoomState()
        held = holder(r, self._sessions, entry.user, now) if entry.user else None
        if held is not None:
            session_id = held  # one place per user: the session holding it answers
        current = self._sessions.get(session_id)
        if current is not None:
            ticket = self._ticket(session_id, room, current, now)
            self._register(room, ticket, now)
            return ticket
        # Looked at, not made: a join turned away or left lazy writes nothing (join.lua).
        capacity, _, per_minute, mode = controls_of(r, policy)
        phase, _ = event_phase(r.controls, now)
        if mode == Mode.CLOSED or phase == "closed":
            raise refusal(Refusal.ROOM_CLOSED, 0)
        prequeue = phase == "prequeue"
        tokens = bucket(r, now, per_minute)
        at_once = (
            mode in ADMITTING
            and (tokens is None or tokens >= 1000)
            and not r.waiting
            and len(r.active) < capacity
            and not prequeue
        )
        if not at_once:
            if 0 < policy.max_waiting <= len(r.waiting):
                raise refusal(Refusal.QUEUE_FULL, 0)
            if entry.lazy:
                return self._ticket(session_id, room, None, now)
        if entry.client and policy.client_joins_per_minute > 0:
            limit = ClientLimit(policy.client_joins_per_minute, policy.client_join_burst)
            retry_ms = limit.take(r.clients, entry.client, now)
            if retry_ms:
                raise refusal(Refusal.RATE_LIMITED, retry_ms)
        r = self._rooms.setdefault(room, r)
        if entry.user:
            r.users[entry.user] = session_id
        r.seq += 1
        session = SessionState(room, Status.WAITING, r.seq, user_id, now)
        if at_once:
            spend(r, now, tokens, 1)
            r.head = r.seq
            # A lazy join's place is claimed by its first poll; any other from the start.
            session.claimed = not entry.lazy
            lease = policy.idle_timeout_ms if session.claimed else policy.claim_window_ms
            r.active.add(session_id, session.admit(now, lease, policy.max_session_ms))
        elif prequeue or entry.priority:
            # Not in the joins stream: in the ordered line, by rank key (or arrival order).
            r.waiting.add(session_id, now)
            r.prequeue.add(session_id, prequeue_rank(r.controls, session_id, entry, r.seq))
        else:
            # Redis: a waiting-set member, a waiting-seq entry and a stream entry; no hash.
            r.waiting.add(session_id, now)
            r.joins.append(session_id)
        self._sessions[session_id] = session
        ticket = self._ticket(session_id, room, session, now)
        self._register(room, ticket, now)
        return ticket

    def _register(self, room: str, ticket: Ticket, now: int) -> None:
        """List the room: at once when this join found it empty, else at most every 10 s."""
        fresh = ticket.waiting + ticket.active == 1
        if fresh or now - self._registered.get(room, now - REGISTER_EVERY_MS) >= REGISTER_EVERY_MS:
            self._listed[room] = self._registered[room] = now

    async def poll(self, session_id: str, policy: RoomPolicy) -> Ticket | None:
        now = self._clock()
        session = self._session(session_id)
        if session is None:
            return None
        room = self._rooms.get(session.room) or RoomState()
        ended = False
        if session.status is Status.WAITING:
            seen = room.waiting.scores.get(session_id)
            alive = seen is not None and seen + policy.waiting_timeout_ms > now
            closed = room.controls.get(Control.MODE) == Mode.CLOSED
            if alive and not (closed or event_phase(room.controls, now)[0] == "closed"):
                room.waiting.add(session_id, now)
            else:
                room.waiting.remove(session_id)
                room.prequeue.remove(session_id)
                reason = EndReason.CLOSED if alive else EndReason.WAITING_TIMEOUT
                self._finish(session_id, session, reason, now, policy.retention_ms)
                ended = True
        elif session.status is Status.ACTIVE:
            lease = room.active.scores.get(session_id)
            at_end = session.ends_at is not None and now >= session.ends_at
            if lease is not None and lease > now and not at_end:
                renewed = max(lease, now + policy.idle_timeout_ms)
                room.active.add(session_id, capped(renewed, session.ends_at))
                session.claimed = True
            else:
                room.active.remove(session_id)
                reason = timed_out(session, now)
                self._finish(session_id, session, reason, now, policy.retention_ms)
                ended = True
        elif session.ended_at + policy.retention_ms <= now:
            del self._sessions[session_id]
            return None
        return self._ticket(session_id, session.room, session, now, ended)

    async def leave(self, session_id: str, policy: RoomPolicy, *, revoke: bool = False) -> bool:
        now = self._clock()
        session = self._session(session_id)
        if session is None:
            return False
        room = self._rooms.get(session.room) or RoomState()
        if session.status is Status.WAITING:
            room.waiting.remove(session_id)
            room.prequeue.remove(session_id)
        elif session.status is Status.ACTIVE:
            room.active.remove(session_id)
        elif session.ended_at + policy.retention_ms <= now:
            del self._sessions[session_id]
            return False
        if session.status not in TERMINAL:
            reason = EndReason.REVOKED if revoke else EndReason.LEFT
            self._finish(session_id, session, reason, now, policy.retention_ms)
        return True

    def _reap(
        self, scored: ScoredSet, max_score: int, status: Status, now: int, ret: int
    ) -> list[EndReason]:
        """End the sessions of `scored` due by `max_score` (at most REAP_LIMIT) that are still
        `status`; the reasons they ended for."""
        ended = []
        for sid in scored.due(max_score, REAP_LIMIT):
            session = self._sessions.get(sid)
            if session is not None and session.status is status:
                reason = timed_out(session, now)
                self._finish(sid, session, reason, now, ret)
                ended.append(reason)
                if status is Status.WAITING:
                    self._rooms[session.room].prequeue.remove(sid)
            scored.remove(sid)
        return ended

    def _forget_retired(self, now: int) -> None:
        # Reads hide retired sessions on time; this only reclaims their memory.
        while self._retired and self._retired[0][0] <= now:
            _, sid, ended_at = self._retired.popleft()
            session = self._sessions.get(sid)
            if session is not None and session.status in TERMINAL and session.ended_at == ended_at:
                del self._sessions[sid]

    def _settle(self, r: RoomState, sid: str, walk: Walk) -> None:
        """End one waiter's wait (`settle` in grant.lua): admitted, or expired."""
        session = self._sessions.get(sid)
        if session is None or session.status is not Status.WAITING:
            return
        seen = r.waiting.scores.get(sid)
        r.waiting.remove(sid)
        ret = walk.policy.retention_ms
        if seen is None or seen + walk.policy.waiting_timeout_ms <= walk.now:
            self._finish(sid, session, EndReason.WAITING_TIMEOUT, walk.now, ret)
            walk.expired += 1
        elif walk.closing:
            self._finish(sid, session, EndReason.CLOSED, walk.now, ret)
            walk.expired += 1
            walk.closed += 1
        else:
            # Not claimed yet: the first poll claims it.
            p = walk.policy
            r.active.add(sid, session.admit(walk.now, p.claim_window_ms, p.max_session_ms))
            walk.granted.append(sid)

    async def grant(self, room: str, policy: RoomPolicy) -> GrantReport:
        now = self._clock()
        r = self._rooms.get(room)
        if r is None:
            # Nobody ever joined (or the room was forgotten): nothing to do, no state made.
            self._forget_retired(now)
            return GrantReport((), 0, 0, 0, 0)
        walk, ret = Walk(policy, now), policy.retention_ms
        lapsed = self._reap(r.active, now, Status.ACTIVE, now, ret)
        stale = self._reap(r.waiting, now - policy.waiting_timeout_ms, Status.WAITING, now, ret)
        capacity, batch, per_minute, mode = controls_of(r, policy)
        phase, drawn = event_phase(r.controls, now)
        if phase == "closed":
            mode = Mode.CLOSED
        if phase == "open" and not drawn:
            r.controls[EventField.DRAWN] = str(now)  # the draw (grant.lua)
        want = min(capacity - len(r.active), batch)
        if mode not in ADMITTING or phase == "prequeue":
            want = 0
        tokens = None
        if want > 0:
            tokens = bucket(r, now, per_minute)
            if tokens is not None:
                want = min(want, tokens // 1000)
        walk.closing = mode == Mode.CLOSED
        # How many waiters the walk may end its wait for: admitted, or sent away (closed).
        walk.quota = REAP_LIMIT if walk.closing else want
        walked = False
        if walk.quota > 0 and r.prequeue and phase != "prequeue":
            # The ordered line first (priority, then drawn order); the stream once it is empty.
            walked = True
            for _ in range(min(walk.quota * SCAN_FACTOR, len(r.prequeue))):
                self._settle(r, r.prequeue.pop(1)[0], walk)
                if walk.done:
                    break
        if not walk.done and not r.prequeue and r.waiting:
            walked = True
            head: int | None = None
            for _ in range(min(walk.left * SCAN_FACTOR, len(r.joins))):
                sid = r.joins.popleft()
                session = self._sessions.get(sid)
                if session is not None:
                    head = session.seq
                    self._settle(r, sid, walk)
                if walk.done:
                    break
            if head is not None:
                r.head = head
        granted, closed = walk.granted, walk.closed
        expired_waiting = len(stale) + walk.expired
        if walked:
            spend(r, now, tokens, len(granted))
            record_grants(r, now, len(granted))
        self._forget_retired(now)
        unclaimed = lapsed.count(EndReason.CLAIM_TIMEOUT)
        limited = lapsed.count(EndReason.SESSION_LIMIT)
        waiting, active = len(r.waiting), len(r.active)
        return GrantReport(
            tuple(granted),
            len(lapsed),
            expired_waiting,
            waiting,
            active,
            unclaimed,
            closed,
            limited,
        )

    async def rooms(self) -> list[str]:
        return sorted(self._listed)

    async def forget(self, room: str, idle_ms: int) -> bool:
        # The steps of RedisStore.forget: off the list when old, then back when anyone is there.
        now = self._clock()
        seen = self._listed.get(room)
        if seen is None or seen > now - idle_ms:
            return False
        del self._listed[room]
        r = self._rooms.get(room)
        if r is not None and (r.waiting or r.active):
            self._listed[room] = now
            return False
        self._registered.pop(room, None)
        if r is not None:
            # Release: like release.lua, only the live controls an operator set stay.
            if r.controls:
                self._rooms[room] = RoomState(controls=r.controls)
            else:
                del self._rooms[room]
        return True

    async def counts(self, room: str) -> RoomCounts:
        r = self._rooms.get(room) or RoomState()
        rate = grant_rate(r.rate_sum, r.rate_at, r.rate_since, self._clock())
        oldest = 0
        for sid in itertools.islice(r.joins, 10):
            session = self._sessions.get(sid)
            if session is not None and session.status is Status.WAITING:
                oldest = session.joined_at
                break
        return RoomCounts(room, len(r.waiting), len(r.active), rate, oldest)

    async def ping(self) -> None:
        return None

    async def aclose(self) -> None:
        return None
