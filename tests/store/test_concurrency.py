"""Several store clients, each with its own grant loop, racing on one Redis or one cluster."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import Counter

import pytest
import redis
from redis.crc import key_slot

from gatekeeper.config.settings import RedisSettings
from gatekeeper.ids import new_session_id
from gatekeeper.store.base import RoomPolicy, Status
from gatekeeper.store.redis import RedisStore
from tests.conftest import unique_prefix
from tests.redis_cluster import RedisClusterProcesses

pytestmark = pytest.mark.redis

POLICY = RoomPolicy(
    capacity=25,
    batch_size=7,
    waiting_timeout_ms=30_000,
    claim_window_ms=10_000,
    idle_timeout_ms=60_000,
    retention_ms=120_000,
)
VISITORS = 600
GRANTERS = 3


def _rooms() -> tuple[str, ...]:
    """Three rooms whose hash tags fall in different thirds of the slot space: on a
    3-master cluster made by `redis-cli --cluster create`, one room per node."""
    rooms: dict[int, str] = {}
    i = 0
    while len(rooms) < 3:
        room = f"flash-{i}"
        rooms.setdefault(key_slot(f"{{{room}}}".encode()) * 3 // 16384, room)
        i += 1
    return tuple(rooms[third] for third in sorted(rooms))


ROOMS = _rooms()


@pytest.mark.parametrize("backend", ["redis", "cluster"])
async def test_capacity_never_exceeded_and_no_double_grant(
    request: pytest.FixtureRequest, backend: str
):
    sampler: redis.Redis | redis.RedisCluster
    if backend == "cluster":
        cluster: RedisClusterProcesses = request.getfixturevalue("redis_cluster")
        url = cluster.url
        assert len({cluster.owner(f"{{{room}}}") for room in ROOMS}) == 3, "not one per node"
        sampler = redis.RedisCluster(host="127.0.0.1", port=cluster.ports[0])
    else:
        url = request.getfixturevalue("redis_url")
        sampler = redis.Redis.from_url(url)
    prefix = unique_prefix()
    # Generous timeouts: this test checks invariants, and a busy 2-core machine may starve it.
    stores = [
        RedisStore.open(
            RedisSettings(
                url=url, key_prefix=prefix, connect_timeout_ms=5000, socket_timeout_ms=5000
            )
        )
        for _ in range(GRANTERS)
    ]
    active_keys = [stores[0].keys(room).active for room in ROOMS]
    granted: list[str] = []
    samples: dict[str, list[int]] = {room: [] for room in ROOMS}
    done = asyncio.Event()
    sampled = threading.Event()

    async def grant_loop(store: RedisStore) -> None:
        try:
            while not done.is_set():
                for room in ROOMS:
                    report = await store.grant(room, POLICY)
                    granted.extend(report.granted)
                    assert report.active <= POLICY.capacity
                await asyncio.sleep(random.uniform(0.001, 0.005))
        finally:
            done.set()  # should a loop fail, waiters stop waiting for grants

    def sample() -> None:
        """In a thread, so that the busy event loop does not slow the sampling down."""
        while not sampled.is_set():
            for room, key in zip(ROOMS, active_keys, strict=True):
                samples[room].append(sampler.zcard(key))
            time.sleep(0.002)

    async def visitor(i: int) -> Status:
        store = stores[i % GRANTERS]
        room = ROOMS[i // GRANTERS % len(ROOMS)]
        sid = new_session_id(room)
        await asyncio.sleep(random.uniform(0, 0.5))
        ticket = await store.join(room, sid, POLICY)
        quitter = i % 10 == 0
        while ticket is not None and ticket.status is Status.WAITING:
            # Stop on our own rather than rely on cancellation alone: Python 3.11's
            # asyncio.wait_for (inside redis-py) can swallow a cancel, and a waiter that
            # missed it would poll forever once the grant loops are gone.
            assert not done.is_set(), "the grant loops stopped while visitors waited"
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

    async def crowd() -> list[Status]:
        try:
            return list(await asyncio.gather(*(visitor(i) for i in range(VISITORS))))
        finally:
            done.set()
            sampled.set()

    deadline = asyncio.get_running_loop().call_later(100, done.set)
    try:
        # A task group: should a grant loop fail, the test fails at once instead of waiting.
        async with asyncio.timeout(120), asyncio.TaskGroup() as tasks:
            visitors = tasks.create_task(crowd())
            for s in stores:
                tasks.create_task(grant_loop(s))
            tasks.create_task(asyncio.to_thread(sample))

        assert Counter(visitors.result()) == {Status.LEFT: VISITORS}
        for room in ROOMS:
            assert len(samples[room]) > 100
            assert max(samples[room]) <= POLICY.capacity
            assert max(samples[room]) == POLICY.capacity, f"the run never filled {room}"
        duplicates = [sid for sid, n in Counter(granted).items() if n > 1]
        assert duplicates == []
        assert [sampler.zcard(key) for key in active_keys] == [0] * len(ROOMS)
    finally:
        deadline.cancel()
        sampled.set()
        sampler.close()
        for s in stores:
            await s.aclose()
