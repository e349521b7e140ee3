"""The Redis store: every multi-key step is one Lua script; Redis errors become `StoreError`."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable, Coroutine
from importlib import resources
from typing import Any, ParamSpec, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import (
    MaxConnectionsError,
    NoScriptError,
    ReadOnlyError,
    RedisClusterException,
    RedisError,
)
from redis.typing import EncodableT

from gatekeeper.clock import Clock
from gatekeeper.config.redis_url import CLUSTER_SCHEMES, parse_cluster_url
from gatekeeper.errors import StoreError
from gatekeeper.ids import room_of
from gatekeeper.store.base import (
    RATE_TAU_MS,
    REAP_LIMIT,
    SCAN_FACTOR,
    GrantReport,
    RoomCounts,
    RoomPolicy,
    Status,
    Ticket,
    grant_rate,
)
from gatekeeper.store.redis import resp

P = ParamSpec("P")
T = TypeVar("T")

AUDIT_LIMIT = 10_000

# A join registers its room at most this often per process (the grant loop's work list).
_REGISTER_EVERY_S = 10.0

# Clear, then set, fields of a room's controls hash in one atomic step. A script rather than a
# MULTI/EXEC pipeline: it runs the same on one Redis and on a cluster (routed by its key).
# KEYS: 1 room controls hash. ARGV: 1 number of fields to clear, those fields, then
# field/value pairs to set.
_SET_CONTROLS = """
local n = tonumber(ARGV[1])
if n > 0 then redis.call('HDEL', KEYS[1], unpack(ARGV, 2, n + 1)) end
if #ARGV > n + 1 then redis.call('HSET', KEYS[1], unpack(ARGV, n + 2)) end
return 0
"""


def _load_script(name: str) -> str:
    lua = resources.files("gatekeeper.store") / "lua"
    return (lua / "lib.lua").read_text() + "\n" + (lua / f"{name}.lua").read_text()


def _translated(fn: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await fn(*args, **kwargs)
        except (ReadOnlyError, resp.ReadOnlyError) as exc:
            # A failover demoted the server these connections reach: drop them all, so the
            # next calls reconnect (through DNS or a proxy) to the new primary.
            store = args[0]
            if isinstance(store, RedisStore):
                await store._reconnect()
            raise StoreError(f"redis: {type(exc).__name__}: {exc}") from exc
        except (RedisError, RedisClusterException, resp.RespError) as exc:
            raise StoreError(f"redis: {type(exc).__name__}: {exc}") from exc
        except OSError as exc:
            raise StoreError(f"redis: {exc}") from exc

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


class _Cluster(RedisCluster):
    """A `RedisCluster` that behaves like the standalone client's blocking pool.

    Every command first makes sure the cluster topology is known: concurrent first calls
    wait for one discovery instead of racing it (an uninitialised client routes EVALSHA
    blindly: redis-py #3935). At most `pool_size` commands are in flight; more wait up to
    `pool_timeout_s` for a turn instead of failing with `MaxConnectionsError` at once (each
    node's pool holds `pool_size` connections, so a turn always finds one).
    """

    def __init__(self, *, pool_size: int, pool_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(max_connections=pool_size, **kwargs)
        self._turns = asyncio.Semaphore(pool_size)
        self._pool_timeout_s = pool_timeout_s

    async def execute_command(self, *args: EncodableT, **kwargs: Any) -> Any:
        try:
            async with asyncio.timeout(self._pool_timeout_s):
                await self._turns.acquire()
        except TimeoutError:
            raise MaxConnectionsError("no Redis connection free within the timeout") from None
        try:
            await self.initialize()  # a no-op once initialised; after a failure, rediscovers
            return await super().execute_command(*args, **kwargs)
        finally:
            self._turns.release()


Client = aioredis.Redis | RedisCluster


class _Script:
    """A Lua script called by SHA; when Redis lost its script cache (restart, failover,
    SCRIPT FLUSH) the call falls back to EVAL, which runs and caches it in one atomic step.

    With `lean` (a standalone Redis) the call goes through the lean pipelined client, which
    costs far less CPU per call than redis-py's; otherwise through `client`.
    """

    def __init__(
        self,
        client: Client,
        name: str,
        source: str | None = None,
        *,
        lean: resp.RespClient | None = None,
    ) -> None:
        self._client = client
        self._lean = lean
        self._source = _load_script(name) if source is None else source
        self._sha = hashlib.sha1(self._source.encode()).hexdigest()

    def __call__(self, keys: list[str], args: list[str | int]) -> Awaitable[Any]:
        # A plain function handing back the awaitable: one coroutine frame less per call.
        if self._lean is not None:
            return self._lean.script(self._sha, self._source, keys, args)
        return self._redis_py(keys, args)

    async def _redis_py(self, keys: list[str], args: list[str | int]) -> Any:
        try:
            return await self._client.evalsha(self._sha, len(keys), *keys, *args)
        except NoScriptError:
            return await self._client.eval(self._source, len(keys), *keys, *args)


class RedisKeys:
    """Key names of one room; the `{room}` hash tag keeps a room in one cluster slot."""

    __slots__ = (
        "room",
        "session_prefix",
        "joins",
        "cursor",
        "waiting",
        "waiting_seq",
        "active",
        "stats",
        "control",
    )

    def __init__(self, prefix: str, stream: str, room: str) -> None:
        base = f"{prefix}:{{{room}}}:"
        self.room = room
        self.session_prefix = base + "session:"
        self.joins = base + stream
        self.cursor = base + "stream:last-id"
        self.waiting = base + "waiting"
        self.waiting_seq = base + "waiting-seq"
        self.active = base + "active"
        self.stats = base + "stats"
        self.control = base + "control"

    def member(self, session_id: str) -> str:
        """How a waiter is named in the room's waiting set, waiting-seq hash and stream.

        The bare token of a `<token>.<room>` id (the room is in every key already: this saves
        memory per waiter); any other id whole behind a '.', which no token contains, so the
        scripts can always tell the two apart (`session_of` in lib.lua).
        """
        if room_of(session_id) == self.room:
            return session_id.partition(".")[0]
        return "." + session_id


class RedisStore:
    """`Store` on Redis (redis-py asyncio): state in hashes, a stream and sorted sets.

    One Redis, or a Redis Cluster: every key of a room carries the `{room}` hash tag, so each
    script's keys share a slot; the global keys (rooms, control, audit) are single-key
    commands that may live on any node.
    """

    def __init__(
        self,
        client: Client,
        *,
        key_prefix: str = "waiting-room",
        stream: str = "joins",
        clock: Clock | None = None,
        lean: resp.RespClient | None = None,
    ) -> None:
        self._redis = client
        # The hot calls (scripts, PING) on a standalone Redis; None on a cluster.
        self._lean = lean
        self._prefix = key_prefix
        self._stream = stream
        self._clock = clock
        self._keys: dict[str, RedisKeys] = {}
        self._registered: dict[str, float] = {}
        self._rooms_key = f"{key_prefix}:rooms"
        self._control_key = f"{key_prefix}:control"
        self._audit_key = f"{key_prefix}:audit"
        self._join = _Script(client, "join", lean=lean)
        self._poll = _Script(client, "poll", lean=lean)
        self._leave = _Script(client, "leave", lean=lean)
        self._grant = _Script(client, "grant", lean=lean)
        self._counts = _Script(client, "counts", lean=lean)
        self._set_controls = _Script(client, "set_controls", _SET_CONTROLS, lean=lean)

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
        """A store with an explicit pool and timeouts: a slow Redis fails fast, never hangs.

        `redis+cluster://host:port[,host:port...]` (or `rediss+cluster://`) selects a Redis
        Cluster; the nodes listed are where discovery starts.
        """
        if url.startswith(tuple(f"{scheme}://" for scheme in CLUSTER_SCHEMES)):
            parsed = parse_cluster_url(url)
            cluster = _Cluster(
                startup_nodes=[ClusterNode(host, port) for host, port in parsed.nodes],
                pool_size=pool_size,
                pool_timeout_s=socket_timeout_s,
                socket_timeout=socket_timeout_s,
                socket_connect_timeout=connect_timeout_s,
                username=parsed.username,
                password=parsed.password,
                ssl=parsed.ssl,
                decode_responses=True,
                # Retries after connection errors and CLUSTERDOWN, rediscovering the topology
                # first (MOVED/ASK redirects are followed without counting as retries).
                retry=Retry(NoBackoff(), 1),
            )
            return cls(cluster, key_prefix=key_prefix, stream=stream, clock=clock)
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
        # Scripts and PING go through the lean client. It pipelines, so one connection carries
        # any load, and carries it cheapest: the calls of a loop iteration share one write and
        # their replies one read (more connections split those batches; Redis runs one
        # command at a time anyway).
        try:
            lean: resp.RespClient | None = resp.RespClient.from_url(
                url,
                connections=1,
                connect_timeout_s=connect_timeout_s,
                socket_timeout_s=socket_timeout_s,
            )
        except resp.UnsupportedURL:
            lean = None  # URL options only redis-py knows: it serves every call
        return cls(client, key_prefix=key_prefix, stream=stream, clock=clock, lean=lean)

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
        keys = [
            k.session_prefix + session_id,
            k.joins,
            k.waiting,
            k.active,
            k.stats,
            k.control,
            k.waiting_seq,
        ]
        args: list[str | int] = [
            self._now(),
            session_id,
            room,
            user_id,
            policy.capacity,
            policy.waiting_timeout_ms,
            policy.idle_timeout_ms,
            policy.retention_ms,
            policy.per_minute,
            k.member(session_id),
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
        keys = [k.session_prefix + session_id, k.waiting, k.active, k.stats, k.waiting_seq]
        args: list[str | int] = [
            self._now(),
            session_id,
            policy.waiting_timeout_ms,
            policy.idle_timeout_ms,
            policy.retention_ms,
            k.member(session_id),
            room,
        ]
        reply = await self._poll(keys=keys, args=args)
        return None if reply is None else self._ticket(session_id, room, reply)

    @_translated
    async def leave(self, session_id: str, policy: RoomPolicy, *, revoke: bool = False) -> bool:
        room = room_of(session_id)
        if room is None:
            return False
        k = self.keys(room)
        keys = [k.session_prefix + session_id, k.waiting, k.active, k.waiting_seq]
        final = Status.EXPIRED if revoke else Status.LEFT
        args: list[str | int] = [
            self._now(),
            session_id,
            policy.retention_ms,
            final.value,
            k.member(session_id),
            room,
        ]
        reply = await self._leave(keys=keys, args=args)
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
            policy.per_minute,
            room,
        ]
        keys = [k.joins, k.cursor, k.waiting, k.active, k.stats, k.control, k.waiting_seq]
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
        keys = [k.waiting, k.active, k.stats, k.joins, k.cursor, k.waiting_seq]
        reply = await self._counts(keys=keys, args=[self._now()])
        waiting, active, rsum, rat, rsince, now, oldest = reply
        rate = grant_rate(float(rsum), int(rat), int(rsince), int(now))
        return RoomCounts(room, int(waiting), int(active), rate, int(oldest))

    @_translated
    async def controls(self, room: str) -> dict[str, str]:
        found = await self._redis.hgetall(self.keys(room).control)
        return {str(k): str(v) for k, v in found.items()}

    @_translated
    async def set_controls(self, room: str, changes: dict[str, str | None]) -> None:
        cleared = [field for field, value in changes.items() if value is None]
        updates = [x for f, v in changes.items() if v is not None for x in (f, v)]
        if cleared or updates:
            args: list[str | int] = [len(cleared), *cleared, *updates]
            await self._set_controls(keys=[self.keys(room).control], args=args)

    @_translated
    async def rate_ms(self) -> int | None:
        value = await self._redis.hget(self._control_key, "rate-ms")
        return None if value is None else int(value)

    @_translated
    async def set_rate_ms(self, ms: int | None) -> None:
        if ms is None:
            await self._redis.hdel(self._control_key, "rate-ms")
        else:
            await self._redis.hset(self._control_key, "rate-ms", str(ms))

    @_translated
    async def audit(self, entry: dict[str, str]) -> None:
        fields: dict[Any, Any] = {"ts": self._now() or str(time.time_ns() // 1_000_000)}
        fields.update(entry)
        await self._redis.xadd(self._audit_key, fields, maxlen=AUDIT_LIMIT, approximate=True)

    @_translated
    async def audit_log(self, limit: int) -> list[dict[str, str]]:
        entries: list[Any] = await self._redis.xrevrange(self._audit_key, count=limit) or []
        return [{str(k): str(v) for k, v in fields.items()} for _, fields in entries]

    @_translated
    async def ping(self) -> None:
        # On a cluster PING goes to one node: a node that is down fails its own rooms (with
        # StoreError), but readiness must not take every replica out of rotation for it.
        if self._lean is not None:
            await self._lean.execute("PING", retry=True)
        else:
            await self._redis.ping()

    async def _reconnect(self) -> None:
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
