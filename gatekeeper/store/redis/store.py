"""The Redis store: every multi-key step is one Lua script; Redis errors become `StoreError`."""

from __future__ import annotations

import time
from typing import Any, ParamSpec, TypeVar

from redis.exceptions import (
    RedisClusterException,
    RedisError,
)

import gatekeeper.store.redis.resp as resp
from gatekeeper.clock import Clock, wall_clock
from gatekeeper.config.settings import RedisSettings
from gatekeeper.ids import room_of
from gatekeeper.store.base import (
    AUDIT_LIMIT,
    NO_ENTRY,
    RATE_TAU_MS,
    REAP_LIMIT,
    REGISTER_EVERY_MS,
    SCAN_FACTOR,
    EndReason,
    Entry,
    GrantReport,
    RoomCounts,
    RoomPolicy,
    Status,
    Ticket,
    grant_rate,
    refusal,
    require_room,
)
from gatekeeper.store.ranks import rank_key
from gatekeeper.store.redis.cluster import connect_cluster, is_cluster_url
from gatekeeper.store.redis.errors import translated
from gatekeeper.store.redis.keys import GlobalKeys, RedisKeys, session_of
from gatekeeper.store.redis.scripts import Call, Client, Script, ScriptName
from gatekeeper.store.redis.sentinel import connect_sentinel, is_sentinel_url
from gatekeeper.store.redis.standalone import connect_standalone

P = ParamSpec("P")
T = TypeVar("T")

# Per-room caches (key names, registration times) are emptied beyond this many rooms: rooms
# that were forgotten elsewhere must not grow them for ever (an entry is cheap to make again).
_CACHE_ROOMS = 50_000

# The first field of join.lua's answer when it turned the join away.
_REFUSED = "REFUSED"
_RANK = "RANK"  # a shuffled pre-queue join without its rank key: here is the seed
_HELD_BY = 11  # join.lua's twelfth reply field: the session that holds the user's place
_STATUS = {s.value: s for s in Status}  # a dict lookup is cheaper than Status(value)

# The field of the global control hash that holds the live grant-loop interval.
_RATE_MS_FIELD = "rate-ms"


def _rate(fields: list[Any]) -> float:
    """The grant rate from the rate sum, rate time, rate start and now a script returns."""
    rate_sum, rate_at, rate_since, now = fields
    return grant_rate(float(rate_sum), int(rate_at), int(rate_since), int(now))


class RedisStore:
    """`Store` on Redis (redis-py asyncio): state in hashes, a stream and sorted sets.

    One Redis, or a Redis Cluster: every key of a room carries the `{room}` hash tag, so each
    script's keys share a slot; the global keys (rooms, control, audit) are single-key
    commands that may live on any node.
    """

    def __init__(
        self,
        client: Client,
        settings: RedisSettings | None = None,
        *,
        clock: Clock | None = None,
        lean: resp.RespClient | None = None,
    ) -> None:
        settings = settings or RedisSettings()
        self._redis = client
        # The hot calls (scripts, PING) on a standalone Redis; None on a cluster.
        self._lean = lean
        self._prefix = settings.key_prefix
        self._stream = settings.stream
        self._clock = clock
        self._keys: dict[str, RedisKeys] = {}
        # Per room: the policy its poll and join calls were prepared for, and the calls.
        self._calls: dict[str, tuple[RoomPolicy, Call, Call]] = {}
        self._registered: dict[str, int] = {}
        self._global = GlobalKeys(settings.key_prefix)
        self._join = Script(client, ScriptName.JOIN, lean=lean)
        self._poll = Script(client, ScriptName.POLL, lean=lean)
        self._leave = Script(client, ScriptName.LEAVE, lean=lean)
        self._grant = Script(client, ScriptName.GRANT, lean=lean)
        self._counts = Script(client, ScriptName.COUNTS, lean=lean)
        self._set_controls = Script(client, ScriptName.SET_CONTROLS, lean=lean)
        self._forget = Script(client, ScriptName.FORGET, lean=lean)
        self._release = Script(client, ScriptName.RELEASE, lean=lean)
        self._list = Script(client, ScriptName.LIST, lean=lean)
        self._seed = Script(client, ScriptName.SEED, lean=lean)

    @classmethod
    def open(cls, settings: RedisSettings, *, clock: Clock | None = None) -> RedisStore:
        """A store with an explicit pool and timeouts: a slow Redis fails fast, never hangs.

        `redis+cluster://host:port[,host:port...]` (or `rediss+cluster://`) selects a Redis
        Cluster; the nodes listed are where discovery starts. Nothing connects before first use.
        """
        if is_cluster_url(settings.url):
            return cls(connect_cluster(settings), settings, clock=clock)
        if is_sentinel_url(settings.url):
            primary, follower = connect_sentinel(settings)
            return cls(primary, settings, clock=clock, lean=follower)
        client, lean = connect_standalone(settings)
        return cls(client, settings, clock=clock, lean=lean)

    def keys(self, room: str) -> RedisKeys:
        """Key names of a room (cached)."""
        keys = self._keys.get(room)
        if keys is None:
            if len(self._keys) >= _CACHE_ROOMS:
                self._keys.clear()
            keys = self._keys[room] = RedisKeys(self._prefix, self._stream, room)
        return keys

    def _now(self) -> str:
        return "" if self._clock is None else str(self._clock())

    def _prepared(self, room: str, policy: RoomPolicy) -> tuple[RoomPolicy, Call, Call]:
        """The room's poll and join calls for `policy` (see `scripts.Call`): their keys and
        the policy's figures are packed once, not on every call."""
        found = self._calls.get(room)
        if found is not None and found[0] is policy:
            return found
        if found is None or found[0] != policy:
            if len(self._calls) >= _CACHE_ROOMS:
                self._calls.clear()
            k = self.keys(room)
            poll = self._poll.call(
                [None, k.waiting, k.active, k.stats, k.waiting_seq, k.control, k.prequeue,
                 k.prequeue_rank],
                [None, None, policy.waiting_timeout_ms, policy.idle_timeout_ms,
                 policy.retention_ms, None, room, policy.max_session_ms],
            )  # fmt: skip
            join = self._join.call(
                [None, k.joins, k.waiting, k.active, k.stats, k.control, k.waiting_seq, None,
                 k.prequeue, k.prequeue_rank, k.users],
                [None, None, room, None, policy.capacity, policy.waiting_timeout_ms,
                 policy.idle_timeout_ms, policy.retention_ms, policy.per_minute, None, None,
                 policy.max_waiting, None, policy.client_join_burst, policy.claim_window_ms,
                 None, policy.max_session_ms, None, k.session_prefix, None],
            )  # fmt: skip
            found = (policy, poll, join)
        else:  # an equal policy: the next lookup finds it by identity
            found = (policy, found[1], found[2])
        self._calls[room] = found
        return found

    def _ticket(self, sid: str, room: str, reply: list[Any]) -> Ticket:
        status, ahead, waiting, active = reply[:4]
        reason = EndReason(reply[8]) if reply[8] else None
        ends = int(reply[10]) if reply[10] != "" else None
        ticket = Ticket(sid, room, _STATUS[status], int(ahead), int(waiting), int(active),
                        _rate(reply[4:8]), reason, ends, int(reply[9]) == 1)  # fmt: skip
        return ticket

    @translated
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
        k = self.keys(room)
        join = self._prepared(room, policy)[2]
        limited = bool(entry.client) and policy.client_joins_per_minute > 0
        # The slots of `_prepared`'s join call, in order: two keys, then the arguments.
        values = [
            k.session(session_id),
            k.client(entry.client),
            self._now(),
            session_id,
            user_id,
            k.member(session_id),
            "1" if entry.lazy else "",
            str(policy.client_joins_per_minute if limited else 0),
            entry.rank,
            entry.user,
            str(entry.priority),
        ]
        reply = await join(*values)
        if reply[0] == _RANK:
            values[8] = rank_key(str(reply[1]), session_id)
            reply = await join(*values)
        if reply[0] == _REFUSED:
            raise refusal(str(reply[1]), int(reply[2]))
        # A user's place held by another session: that session answers (join.lua).
        held = str(reply[_HELD_BY]) if len(reply) > _HELD_BY else session_id
        ticket = self._ticket(held, room, reply)
        if not (entry.lazy and ticket.status is Status.WAITING):
            await self._register(room, fresh=ticket.waiting + ticket.active == 1)
        return ticket

    def _wall_ms(self) -> int:
        return wall_clock() if self._clock is None else self._clock()

    async def _register(self, room: str, *, fresh: bool) -> None:
        """List the room: at once when the join found it empty (it may have just been
        forgotten, see `forget`), else at most every REGISTER_EVERY_MS per store."""
        now = int(time.monotonic() * 1000) if self._clock is None else self._clock()
        last = self._registered.get(room)
        if fresh or last is None or now - last >= REGISTER_EVERY_MS:
            await self._relist(room, self._wall_ms())
            if len(self._registered) >= _CACHE_ROOMS:
                self._registered.clear()
            self._registered[room] = now

    @translated
    async def poll(self, session_id: str, policy: RoomPolicy) -> Ticket | None:
        room = room_of(session_id)
        if room is None:
            return None
        k = self.keys(room)
        poll = self._prepared(room, policy)[1]
        member = k.own_member(session_id)  # its room is room_of(session_id)
        reply = await poll(k.session(session_id), self._now(), session_id, member)
        return None if reply is None else self._ticket(session_id, room, reply)

    @translated
    async def leave(self, session_id: str, policy: RoomPolicy, *, revoke: bool = False) -> bool:
        room = room_of(session_id)
        if room is None:
            return False
        k = self.keys(room)
        keys = [k.session(session_id), k.waiting, k.active, k.waiting_seq]
        keys += [k.prequeue, k.prequeue_rank]
        reason = EndReason.REVOKED if revoke else EndReason.LEFT
        args: list[str | int] = [
            self._now(),
            session_id,
            policy.retention_ms,
            reason.value,
            k.member(session_id),
            room,
        ]
        reply = await self._leave(keys=keys, args=args)
        return bool(reply)

    @translated
    async def grant(self, room: str, policy: RoomPolicy) -> GrantReport:
        k = self.keys(room)
        args: list[str | int] = [
            self._now(),
            k.session_prefix,
            policy.capacity,
            policy.batch_size,
            policy.waiting_timeout_ms,
            policy.claim_window_ms,
            policy.retention_ms,
            REAP_LIMIT,
            SCAN_FACTOR,
            RATE_TAU_MS,
            policy.per_minute,
            room,
            policy.max_session_ms,
        ]
        keys = [k.joins, k.cursor, k.waiting, k.active, k.stats, k.control, k.waiting_seq]
        keys += [k.prequeue, k.prequeue_rank]
        granted, *figures = await self._grant(keys=keys, args=args)
        return GrantReport(tuple(granted), *map(int, figures))

    @translated
    async def rooms(self) -> list[str]:
        rooms = await self._redis.zrange(self._global.rooms, 0, -1)
        return sorted(str(r) for r in rooms)

    @translated
    async def forget(self, room: str, idle_ms: int) -> bool:
        # Two scripts, as a cluster keeps the room set and the room's keys in different slots:
        # off the list when old (forget.lua), then back on when anyone is there (release.lua).
        # A join in between that found the room empty lists it again itself (`_register`).
        now = self._wall_ms()
        cutoff = repr((now - idle_ms) / 1000)
        if not await self._forget(keys=[self._global.rooms], args=[room, cutoff]):
            return False
        k = self.keys(room)
        keys = [k.waiting, k.active, k.stats, k.joins, k.cursor, k.waiting_seq]
        keys += [k.prequeue, k.prequeue_rank, k.users]
        try:
            released = await self._release(keys=keys, args=[])
        except Exception:
            await self._relist(room, now)
            raise
        if not released:
            await self._relist(room, now)
            return False
        self._registered.pop(room, None)
        self._keys.pop(room, None)
        self._calls.pop(room, None)
        return True

    async def _relist(self, room: str, now_ms: int) -> None:
        await self._list(keys=[self._global.rooms], args=[room, repr(now_ms / 1000)])

    @translated
    async def counts(self, room: str) -> RoomCounts:
        k = self.keys(room)
        keys = [k.waiting, k.active, k.stats, k.joins, k.cursor, k.waiting_seq]
        reply = await self._counts(keys=keys, args=[self._now()])
        waiting, active, oldest = reply[0], reply[1], reply[6]
        return RoomCounts(room, int(waiting), int(active), _rate(reply[2:6]), int(oldest))

    @translated
    async def controls(self, room: str) -> dict[str, str]:
        found = await self._redis.hgetall(self.keys(room).control)
        return {str(k): str(v) for k, v in found.items()}

    @translated
    async def set_controls(self, room: str, changes: dict[str, str | None]) -> None:
        cleared = [field for field, value in changes.items() if value is None]
        updates = [x for f, v in changes.items() if v is not None for x in (f, v)]
        if cleared or updates:
            args: list[str | int] = [len(cleared), *cleared, *updates]
            await self._set_controls(keys=[self.keys(room).control], args=args)

    @translated
    async def ensure_seed(self, room: str, seed: str, commitment: str) -> str:
        return str(await self._seed(keys=[self.keys(room).control], args=[seed, commitment]))

    @translated
    async def prequeue(self, room: str, offset: int, limit: int) -> tuple[int, list[str]]:
        k = self.keys(room)
        total = int(await self._redis.zcard(k.prequeue))
        items = await self._redis.zrange(k.prequeue, offset, offset + limit - 1)
        return total, [session_of(str(item).partition(":")[2], room) for item in items]

    @translated
    async def rate_ms(self) -> int | None:
        value = await self._redis.hget(self._global.control, _RATE_MS_FIELD)
        return None if value is None else int(value)

    @translated
    async def set_rate_ms(self, ms: int | None) -> None:
        if ms is None:
            await self._redis.hdel(self._global.control, _RATE_MS_FIELD)
        else:
            await self._redis.hset(self._global.control, _RATE_MS_FIELD, str(ms))

    @translated
    async def audit(self, entry: dict[str, str]) -> None:
        fields: dict[Any, Any] = {"ts": self._now() or str(wall_clock())}
        fields.update(entry)
        await self._redis.xadd(self._global.audit, fields, maxlen=AUDIT_LIMIT, approximate=True)

    @translated
    async def audit_log(self, limit: int) -> list[dict[str, str]]:
        entries: list[Any] = await self._redis.xrevrange(self._global.audit, count=limit) or []
        return [{str(k): str(v) for k, v in fields.items()} for _, fields in entries]

    @translated
    async def ping(self) -> None:
        # On a cluster PING goes to one node: a node that is down fails its own rooms (with
        # StoreError), but readiness must not take every replica out of rotation for it.
        if self._lean is not None:
            await self._lean.execute("PING", retry=True)
        else:
            await self._redis.ping()

    async def reconnect(self) -> None:
        """Drop every pooled connection: the next calls connect again (after a failover)."""
        if self._lean is not None:
            self._lean.disconnect()
        pool = getattr(self._redis, "connection_pool", None)
        if pool is not None:
            await pool.disconnect()

    async def aclose(self) -> None:
        if self._lean is not None:
            await self._lean.aclose()
        try:
            await self._redis.aclose()
        except (RedisError, RedisClusterException):
            pass
