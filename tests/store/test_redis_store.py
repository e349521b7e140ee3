"""Redis-specific behaviour: script cache loss, key layout, time from Redis, error translation."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from gatekeeper.errors import StoreError
from gatekeeper.store.base import RoomPolicy, Status, new_session_id
from gatekeeper.store.redis import RedisStore
from tests.conftest import unique_prefix
from tests.redis_server import RedisServer, free_port

pytestmark = pytest.mark.redis

POLICY = RoomPolicy(3, 5, 30_000, 10_000, 60_000, 120_000)


async def test_script_flush_mid_run_causes_no_error(redis_url: str):
    store = RedisStore.from_url(redis_url, key_prefix=unique_prefix())
    admin = aioredis.Redis.from_url(redis_url)
    errors: list[BaseException] = []
    stop = asyncio.Event()

    async def churn() -> None:
        while not stop.is_set():
            sid = new_session_id("R")
            try:
                await store.join("R", sid, POLICY)
                await store.poll(sid, POLICY)
                await store.grant("R", POLICY)
                await store.leave(sid, POLICY)
            except BaseException as exc:
                errors.append(exc)
                return

    workers = [asyncio.create_task(churn()) for _ in range(4)]
    for _ in range(20):
        await admin.script_flush()
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.gather(*workers)
    await admin.aclose()
    await store.aclose()
    assert errors == []


async def test_all_keys_of_a_room_share_one_hash_tag(redis_url: str):
    prefix = unique_prefix()
    store = RedisStore.from_url(redis_url, key_prefix=prefix)
    for _ in range(5):
        await store.join("E9", new_session_id("E9"), POLICY)
    await store.grant("E9", POLICY)
    admin = aioredis.Redis.from_url(redis_url, decode_responses=True)
    keys = [k async for k in admin.scan_iter(match=f"{prefix}:*")]
    room_keys = [k for k in keys if k != f"{prefix}:rooms"]
    assert room_keys and all(k.startswith(f"{prefix}:{{E9}}:") for k in room_keys)
    assert {f"{prefix}:{{E9}}:joins", f"{prefix}:{{E9}}:active"} <= set(keys)
    # The joins stream is trimmed behind the grant cursor: only waiters remain.
    assert await admin.xlen(f"{prefix}:{{E9}}:joins") <= 2
    ttl = await admin.pttl(next(k for k in keys if ":session:" in k))
    assert 0 < ttl <= POLICY.idle_timeout_ms + POLICY.retention_ms
    await admin.aclose()
    await store.aclose()


async def test_time_comes_from_redis_when_no_clock_is_injected(redis_url: str):
    store = RedisStore.from_url(redis_url, key_prefix=unique_prefix())
    sid = new_session_id("T")
    ticket = await store.join("T", sid, POLICY)
    assert ticket.status is Status.ACTIVE
    admin = aioredis.Redis.from_url(redis_url, decode_responses=True)
    sec, _ = await admin.time()
    joined = int(await admin.hget(store.keys("T").session_prefix + sid, "joinedAt"))
    assert abs(joined - sec * 1000) < 5_000
    await admin.aclose()
    await store.aclose()


async def test_unreachable_redis_raises_store_error_fast():
    store = RedisStore.from_url(
        f"redis://127.0.0.1:{free_port()}/0", connect_timeout_s=0.2, socket_timeout_s=0.2
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(StoreError):
        await store.join("R", new_session_id("R"), POLICY)
    with pytest.raises(StoreError):
        await store.ping()
    assert loop.time() - started < 3
    await store.aclose()


async def test_store_recovers_when_redis_comes_back(redis_server: RedisServer):
    store = RedisStore.from_url(redis_server.url, connect_timeout_s=0.2, socket_timeout_s=0.2)
    await store.join("R", new_session_id("R"), POLICY)
    redis_server.kill()
    with pytest.raises(StoreError):
        await store.join("R", new_session_id("R"), POLICY)
    redis_server.start()
    # A restarted Redis has an empty script cache: NOSCRIPT is handled by reloading.
    ticket = await store.join("R", new_session_id("R"), POLICY)
    assert ticket.status is Status.ACTIVE
    await store.aclose()


async def test_readonly_replica_after_failover_drops_the_pool(redis_server: RedisServer):
    store = RedisStore.from_url(redis_server.url)
    await store.join("R", new_session_id("R"), POLICY)
    admin = aioredis.Redis.from_url(redis_server.url)
    # Make the server a replica of a dead primary: writes now fail with READONLY.
    await admin.execute_command("REPLICAOF", "127.0.0.1", str(free_port()))
    with pytest.raises(StoreError, match="ReadOnly"):
        await store.join("R", new_session_id("R"), POLICY)
    # The failed call dropped the pooled connections, so none is left pointing at the replica.
    assert store._redis.connection_pool._in_use_connections == set()  # type: ignore[attr-defined]
    await admin.execute_command("REPLICAOF", "NO", "ONE")
    ticket = await store.join("R", new_session_id("R"), POLICY)
    assert ticket.status in (Status.ACTIVE, Status.WAITING)
    await admin.aclose()
    await store.aclose()
