"""Several store clients, each with its own grant loop, racing on one Redis."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import pytest
import redis.asyncio as aioredis

from gatekeeper.store.base import RoomPolicy, Status, new_session_id
from gatekeeper.store.redis import RedisStore
from tests.conftest import unique_prefix

pytestmark = pytest.mark.redis

ROOM = "flash"
POLICY = RoomPolicy(
    capacity=25,
    batch_size=7,
    waiting_timeout_ms=30_000,
    claim_window_ms=10_000,
    idle_timeout_ms=60_000,
    retention_ms=120_000,
)
VISITORS = 500
GRANTERS = 3


async def test_capacity_never_exceeded_and_no_double_grant(redis_url: str):
    prefix = unique_prefix()
    stores = [RedisStore.from_url(redis_url, key_prefix=prefix) for _ in range(GRANTERS)]
    sampler = aioredis.Redis.from_url(redis_url)
    active_key = stores[0].keys(ROOM).active
    granted: list[str] = []
    samples: list[int] = []
    done = asyncio.Event()

    async def grant_loop(store: RedisStore) -> None:
        while not done.is_set():
            report = await store.grant(ROOM, POLICY)
            granted.extend(report.granted)
            assert report.active <= POLICY.capacity
            await asyncio.sleep(random.uniform(0.001, 0.005))

    async def sample() -> None:
        while not done.is_set():
            samples.append(await sampler.zcard(active_key))
            await asyncio.sleep(0.002)

    async def visitor(i: int) -> Status:
        store = stores[i % GRANTERS]
        sid = new_session_id(ROOM)
        await asyncio.sleep(random.uniform(0, 0.5))
        ticket = await store.join(ROOM, sid, POLICY)
        quitter = i % 10 == 0
        while ticket is not None and ticket.status is Status.WAITING:
            if quitter and random.random() < 0.3:
                await store.leave(sid, POLICY)
                return Status.LEFT
            await asyncio.sleep(random.uniform(0.005, 0.03))
            ticket = await store.poll(sid, POLICY)
        assert ticket is not None and ticket.status is Status.ACTIVE
        await asyncio.sleep(random.uniform(0.02, 0.08))
        assert await store.leave(sid, POLICY)
        assert await store.leave(sid, POLICY)
        final = await store.poll(sid, POLICY)
        assert final is not None
        return final.status

    loops = [asyncio.create_task(grant_loop(s)) for s in stores]
    sampler_task = asyncio.create_task(sample())
    statuses = await asyncio.wait_for(
        asyncio.gather(*(visitor(i) for i in range(VISITORS))), timeout=120
    )
    done.set()
    await asyncio.gather(*loops, sampler_task)

    assert Counter(statuses) == {Status.LEFT: VISITORS}
    assert len(samples) > 100
    assert max(samples) <= POLICY.capacity
    assert max(samples) == POLICY.capacity, "the run never filled the room"
    duplicates = [sid for sid, n in Counter(granted).items() if n > 1]
    assert duplicates == []
    assert await sampler.zcard(active_key) == 0
    await sampler.aclose()
    for s in stores:
        await s.aclose()
