"""The Redis store: every multi-key step is one Lua script; Redis errors become `StoreError`."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Coroutine
from importlib import resources
from typing import Any, ParamSpec, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError

from gatekeeper.errors import StoreError
from gatekeeper.store.base import (
    RATE_TAU_MS,
    REAP_LIMIT,
    SCAN_FACTOR,
    Clock,
    GrantReport,
    RoomCounts,
    RoomPolicy,
    Status,
    Ticket,
    grant_rate,
    room_of,
)

P = ParamSpec("P")
T = TypeVar("T")

# A join registers its room at most this often per process (the grant loop's work list).
_REGISTER_EVERY_S = 10.0


def _load_script(name: str) -> str:
    lua = resources.files("gatekeeper.store") / "lua"
    return (lua / "lib.lua").read_text() + "\n" + (lua / f"{name}.lua").read_text()


def _translated(fn: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await fn(*args, **kwargs)
        except RedisError as exc:
            raise StoreError(f"redis: {type(exc).__name__}: {exc}") from exc
        except OSError as exc:
            raise StoreError(f"redis: {exc}") from exc

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


class _Script:
    """A Lua script called by SHA; when Redis lost its script cache (restart, failover,
    SCRIPT FLUSH) the call falls back to EVAL, which runs and caches it in one atomic step."""

    def __init__(self, client: aioredis.Redis, name: str) -> None:
        self._client = client
        self._source = _load_script(name)
        self._sha = hashlib.sha1(self._source.encode()).hexdigest()

    async def __call__(self, keys: list[str], args: list[str | int]) -> Any:
        try:
            return await self._client.evalsha(self._sha, len(keys), *keys, *args)
        except NoScriptError:
            return await self._client.eval(self._source, len(keys), *keys, *args)


class RedisKeys:
    """Key names of one room; the `{room}` hash tag keeps a room in one cluster slot."""

    __slots__ = ("session_prefix", "joins", "cursor", "waiting", "active", "stats")

    def __init__(self, prefix: str, stream: str, room: str) -> None:
        base = f"{prefix}:{{{room}}}:"
        self.session_prefix = base + "session:"
        self.joins = base + stream
        self.cursor = base + "stream:last-id"
        self.waiting = base + "waiting"
        self.active = base + "active"
        self.stats = base + "stats"


class RedisStore:
    """`Store` on Redis (redis-py asyncio): state in hashes, a stream and sorted sets."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        key_prefix: str = "waiting-room",
        stream: str = "joins",
        clock: Clock | None = None,
    ) -> None:
        self._redis = client
        self._prefix = key_prefix
        self._stream = stream
        self._clock = clock
        self._keys: dict[str, RedisKeys] = {}
        self._registered: dict[str, float] = {}
        self._rooms_key = f"{key_prefix}:rooms"
        self._join = _Script(client, "join")
        self._poll = _Script(client, "poll")
        self._leave = _Script(client, "leave")
        self._grant = _Script(client, "grant")

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        key_prefix: str = "waiting-room",
        stream: str = "joins",
        pool_size: int = 64,
        connect_timeout_s: float = 0.5,
        socket_timeout_s: float = 0.5,
        clock: Clock | None = None,
    ) -> RedisStore:
        """A store with an explicit pool and timeouts: a slow Redis fails fast, never hangs."""
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=pool_size,
            timeout=socket_timeout_s,
            socket_timeout=socket_timeout_s,
            socket_connect_timeout=connect_timeout_s,
            decode_responses=True,
            # Scripts are idempotent per session id, so one quick retry is safe.
            retry=Retry(NoBackoff(), 1),
        )
        client = aioredis.Redis.from_pool(pool)
        return cls(client, key_prefix=key_prefix, stream=stream, clock=clock)

    def keys(self, room: str) -> RedisKeys:
        """Key names of a room (cached)."""
        keys = self._keys.get(room)
        if keys is None:
            keys = self._keys[room] = RedisKeys(self._prefix, self._stream, room)
        return keys

    def _now(self) -> str:
        return "" if self._clock is None else str(self._clock())

    def _ticket(self, sid: str, room: str, reply: list[Any]) -> Ticket:
        status, ahead, waiting, active, rsum, rat, rsince, now = reply
        rate = grant_rate(float(rsum), int(rat), int(rsince), int(now))
        return Ticket(sid, room, Status(status), int(ahead), int(waiting), int(active), rate)

    @_translated
    async def join(
        self, room: str, session_id: str, policy: RoomPolicy, *, user_id: str = ""
    ) -> Ticket:
        k = self.keys(room)
        keys = [k.session_prefix + session_id, k.joins, k.waiting, k.active, k.stats]
        args: list[str | int] = [
            self._now(),
            session_id,
            room,
            user_id,
            policy.capacity,
            policy.waiting_timeout_ms,
            policy.idle_timeout_ms,
            policy.retention_ms,
        ]
        reply = await self._join(keys=keys, args=args)
        await self._register(room)
        return self._ticket(session_id, room, reply)

    async def _register(self, room: str) -> None:
        now = time.monotonic()
        if now - self._registered.get(room, -_REGISTER_EVERY_S) >= _REGISTER_EVERY_S:
            await self._redis.zadd(self._rooms_key, {room: time.time()})
            self._registered[room] = now

    @_translated
    async def poll(self, session_id: str, policy: RoomPolicy) -> Ticket | None:
        room = room_of(session_id)
        if room is None:
            return None
        k = self.keys(room)
        keys = [k.session_prefix + session_id, k.waiting, k.active, k.stats]
        args: list[str | int] = [
            self._now(),
            session_id,
            policy.waiting_timeout_ms,
            policy.idle_timeout_ms,
            policy.retention_ms,
        ]
        reply = await self._poll(keys=keys, args=args)
        return None if reply is None else self._ticket(session_id, room, reply)

    @_translated
    async def leave(self, session_id: str, policy: RoomPolicy) -> bool:
        room = room_of(session_id)
        if room is None:
            return False
        k = self.keys(room)
        keys = [k.session_prefix + session_id, k.waiting, k.active]
        reply = await self._leave(keys=keys, args=[self._now(), session_id, policy.retention_ms])
        return bool(reply)

    @_translated
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
        ]
        keys = [k.joins, k.cursor, k.waiting, k.active, k.stats]
        granted, expired_active, expired_waiting, waiting, active = await self._grant(
            keys=keys, args=args
        )
        return GrantReport(
            tuple(granted), int(expired_active), int(expired_waiting), int(waiting), int(active)
        )

    @_translated
    async def rooms(self) -> list[str]:
        rooms = await self._redis.zrange(self._rooms_key, 0, -1)
        return sorted(str(r) for r in rooms)

    @_translated
    async def counts(self, room: str) -> RoomCounts:
        k = self.keys(room)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zcard(k.waiting)
            pipe.zcard(k.active)
            pipe.hmget(k.stats, "rs", "rat", "rsince")
            pipe.time()
            waiting, active, (rsum, rat, rsince), (sec, usec) = await pipe.execute()
        now = int(sec) * 1000 + int(usec) // 1000 if self._clock is None else self._clock()
        rate = grant_rate(float(rsum or 0), int(rat or 0), int(rsince or 0), now)
        return RoomCounts(room, int(waiting), int(active), rate)

    @_translated
    async def ping(self) -> None:
        await self._redis.ping()

    async def aclose(self) -> None:
        try:
            await self._redis.aclose()
        except RedisError:
            pass
