"""Forgetting a room on Redis: the two steps (room set, then room keys) and the join between."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from gatekeeper.config.settings import RedisSettings
from gatekeeper.errors import StoreError
from gatekeeper.ids import new_session_id
from gatekeeper.store.base import RoomPolicy, Status
from gatekeeper.store.redis import RedisStore
from tests.conftest import FakeClock, unique_prefix

pytestmark = pytest.mark.redis

ROOM = "R"
POLICY = RoomPolicy(100, 10, 30_000, 10_000, 600_000, 120_000)


@pytest.fixture(params=["redis_url", "redis_cluster_url"])
async def replicas(
    request: pytest.FixtureRequest, clock: FakeClock
) -> AsyncIterator[tuple[RedisStore, RedisStore]]:
    """Two stores on the same keys, like two replicas (one Redis, or a Redis Cluster)."""
    settings = RedisSettings(url=request.getfixturevalue(request.param), key_prefix=unique_prefix())
    one, two = RedisStore.open(settings, clock=clock), RedisStore.open(settings, clock=clock)
    try:
        yield one, two
    finally:
        await one.aclose()
        await two.aclose()


async def _emptied(store: RedisStore, clock: FakeClock) -> None:
    sid = new_session_id(ROOM)
    await store.join(ROOM, sid, POLICY)
    await store.leave(sid, POLICY)
    clock.advance(1)


async def _take_off_the_list(store: RedisStore, clock: FakeClock) -> int:
    """Step one of `forget` alone (forget.lua), with a cutoff of now."""
    cutoff = repr(clock.now / 1000)
    return int(await store._forget(keys=[store._global.rooms], args=[ROOM, cutoff]))


async def test_a_join_between_the_two_steps_lists_the_room_again_at_once(
    replicas: tuple[RedisStore, RedisStore], clock: FakeClock
):
    forgetter, joiner = replicas
    await _emptied(joiner, clock)
    assert await _take_off_the_list(forgetter, clock) == 1
    assert await forgetter.rooms() == []
    # The joiner listed the room 1 ms ago (its throttle says wait 10 s), but this join found
    # the room empty: it lists it again at once.
    sid = new_session_id(ROOM)
    assert (await joiner.join(ROOM, sid, POLICY)).status is Status.ACTIVE
    assert await forgetter.rooms() == [ROOM]
    # Step two finds someone there and keeps the room whole.
    assert await forgetter.forget(ROOM, 0) is False
    assert await forgetter.rooms() == [ROOM]
    ticket = await forgetter.poll(sid, POLICY)
    assert ticket is not None and (ticket.status, ticket.active) == (Status.ACTIVE, 1)


async def test_a_join_right_after_the_release_is_listed_and_admitted(
    replicas: tuple[RedisStore, RedisStore], clock: FakeClock
):
    forgetter, joiner = replicas
    await _emptied(joiner, clock)
    assert await forgetter.forget(ROOM, 1) is True
    assert await forgetter.rooms() == []
    ticket = await joiner.join(ROOM, new_session_id(ROOM), POLICY)
    assert (ticket.status, ticket.active) == (Status.ACTIVE, 1)
    assert await forgetter.rooms() == [ROOM]


async def test_forget_racing_joins_never_leaves_a_visitor_off_the_list(
    replicas: tuple[RedisStore, RedisStore], clock: FakeClock
):
    forgetter, joiner = replicas
    rng = random.Random(7)
    forgotten = 0
    for _ in range(40):
        await _emptied(joiner, clock)
        sid = new_session_id(ROOM)
        delay = rng.random() / 500

        async def join_later(sid: str = sid, delay: float = delay) -> None:
            await asyncio.sleep(delay)
            await joiner.join(ROOM, sid, POLICY)

        answer, _ = await asyncio.gather(forgetter.forget(ROOM, 1), join_later())
        forgotten += answer
        assert ROOM in await forgetter.rooms()
        ticket = await forgetter.poll(sid, POLICY)
        assert ticket is not None and ticket.status is Status.ACTIVE
        await joiner.leave(sid, POLICY)
    # Both orders happened: some forgets won the race, some were answered no.
    assert 0 < forgotten


async def test_a_failed_release_puts_the_room_back(
    replicas: tuple[RedisStore, RedisStore], clock: FakeClock, monkeypatch: pytest.MonkeyPatch
):
    forgetter, joiner = replicas
    sid = new_session_id(ROOM)
    await joiner.join(ROOM, sid, POLICY)
    clock.advance(1)

    async def broken(keys: list[str], args: list[str | int]) -> int:
        raise OSError("connection reset")

    monkeypatch.setattr(forgetter, "_release", broken)
    with pytest.raises(StoreError):
        await forgetter.forget(ROOM, 1)
    assert await forgetter.rooms() == [ROOM]


async def test_release_frees_the_room_keys_but_keeps_its_controls(redis_url: str, clock: FakeClock):
    prefix = unique_prefix()
    store = RedisStore.open(RedisSettings(url=redis_url, key_prefix=prefix), clock=clock)
    admin = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        await store.set_controls(ROOM, {"capacity": "1"})
        waiter, holder = new_session_id(ROOM), new_session_id(ROOM)
        full = RoomPolicy(1, 1, 30_000, 10_000, 600_000, 120_000)
        await store.join(ROOM, holder, full)
        await store.join(ROOM, waiter, full)
        await store.leave(waiter, full)
        await store.leave(holder, full)
        before = set(await admin.keys(f"{prefix}:{{{ROOM}}}:*"))
        k = store.keys(ROOM)
        assert {k.stats, k.joins, k.control} <= before
        clock.advance(1)
        assert await store.forget(ROOM, 1)
        after = set(await admin.keys(f"{prefix}:{{{ROOM}}}:*"))
        assert after == {k.control, k.session(waiter), k.session(holder)}
        assert await admin.zscore(f"{prefix}:rooms", ROOM) is None
    finally:
        await admin.aclose()
        await store.aclose()
