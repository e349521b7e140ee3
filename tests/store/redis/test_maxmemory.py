"""Redis at maxmemory (noeviction): joins fail with `StoreFull`, every other step keeps working."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterator
from typing import Any, cast

import pytest
import redis.asyncio as aioredis

from gatekeeper.config.settings import RedisSettings
from gatekeeper.errors import StoreError, StoreFull
from gatekeeper.ids import new_session_id
from gatekeeper.store.base import Control, Mode, RoomPolicy, Status
from gatekeeper.store.redis import RedisStore
from gatekeeper.store.redis.scripts import Script, ScriptName, load_script, redis_source
from gatekeeper.store.redis.standalone import connect_standalone
from tests.conftest import FakeClock, unique_prefix
from tests.redis_cluster import RedisClusterProcesses
from tests.redis_server import RedisServer

pytestmark = pytest.mark.redis

ROOM = "M"


@pytest.fixture
def server() -> Iterator[RedisServer]:
    """A private Redis that refuses writes at maxmemory instead of evicting (as operated)."""
    started = RedisServer(None, "--maxmemory-policy", "noeviction").start()
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
async def admin(server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(server.url, decode_responses=True)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture(params=["lean", "redis-py"])
async def store(
    request: pytest.FixtureRequest, server: RedisServer, clock: FakeClock
) -> AsyncIterator[RedisStore]:
    """Both standalone paths: scripts over the lean RESP client, or all over redis-py."""
    settings = RedisSettings(url=server.url, key_prefix=unique_prefix())
    client, lean = connect_standalone(settings)
    if request.param == "redis-py":
        if lean is not None:
            await lean.aclose()
        lean = None
    opened = RedisStore(client, settings, clock=clock, lean=lean)
    try:
        yield opened
    finally:
        await opened.aclose()


async def fill(admin: aioredis.Redis) -> None:
    """Redis is over maxmemory from now on: any used memory exceeds one byte."""
    await admin.config_set("maxmemory", 1)
    memory = await admin.info("memory")
    assert memory["used_memory"] > 1


async def seat(store: RedisStore, policy: RoomPolicy) -> tuple[list[str], list[str]]:
    """Two admitted visitors and two waiters (the policy has two places)."""
    assert policy.capacity == 2
    sessions = [new_session_id(ROOM) for _ in range(4)]
    statuses = [(await store.join(ROOM, sid, policy)).status for sid in sessions]
    assert statuses == [Status.ACTIVE, Status.ACTIVE, Status.WAITING, Status.WAITING]
    return sessions[:2], sessions[2:]


def test_join_alone_is_refused_at_maxmemory_and_counts_only_reads():
    assert redis_source(ScriptName.JOIN) == "#!lua\n" + load_script(ScriptName.JOIN)
    assert redis_source(ScriptName.COUNTS).startswith("#!lua flags=no-writes\n")
    for name in set(ScriptName) - {ScriptName.JOIN, ScriptName.COUNTS}:
        assert redis_source(name) == "#!lua flags=allow-oom\n" + load_script(name)
    assert issubclass(StoreFull, StoreError)


def test_the_sha_is_of_the_source_with_its_flags_line():
    script = Script(cast(Any, None), ScriptName.POLL)
    source = redis_source(ScriptName.POLL)
    assert script._sha == hashlib.sha1(source.encode()).hexdigest()


async def test_at_maxmemory_joins_fail_and_the_admitted_and_the_waiting_carry_on(
    store: RedisStore, admin: aioredis.Redis, clock: FakeClock, policy: RoomPolicy
):
    (a1, a2), (w1, w2) = await seat(store, policy)
    await fill(admin)

    with pytest.raises(StoreFull, match="maxmemory"):
        await store.join(ROOM, new_session_id(ROOM), policy)
    # Refused whole, before it ran: even a retried join of a known session.
    with pytest.raises(StoreFull):
        await store.join(ROOM, a1, policy)

    # Polls renew the admitted visitor's lease and keep the waiters' places (heartbeats
    # 25 s apart, within the 30 s waiting timeout).
    clock.advance(20_000)
    renewed = await store.poll(a1, policy)
    assert renewed is not None and renewed.status is Status.ACTIVE
    lease = await admin.zscore(store.keys(ROOM).active, a1)
    assert lease == clock.now + policy.idle_timeout_ms
    for _ in range(2):
        for waiter in (w1, w2):
            ticket = await store.poll(waiter, policy)
            assert ticket is not None and ticket.status is Status.WAITING
        clock.advance(25_000)

    # At 70 s a2's lease (60 s) ran out, a1's renewed one (80 s) did not: the grant step
    # frees a2's place for w1.
    report = await store.grant(ROOM, policy)
    assert (report.expired_active, report.granted) == (1, (w1,))
    still = await store.poll(a1, policy)
    assert still is not None and still.status is Status.ACTIVE

    # A leave frees a place, and the next grant gives it to the other waiter.
    assert await store.leave(a1, policy)
    assert (await store.grant(ROOM, policy)).granted == (w2,)
    admitted = await store.poll(w2, policy)
    assert admitted is not None and admitted.status is Status.ACTIVE

    # Operators keep control, and the room's figures stay readable.
    await store.set_controls(ROOM, {Control.MODE: Mode.PAUSED.value})
    assert (await store.controls(ROOM))[Control.MODE] == Mode.PAUSED.value
    counts = await store.counts(ROOM)
    assert (counts.waiting, counts.active) == (0, 2)

    # Memory back: joins work again.
    await admin.config_set("maxmemory", 0)
    ticket = await store.join(ROOM, new_session_id(ROOM), policy)
    assert ticket.status is Status.WAITING  # the room is paused


async def test_at_maxmemory_a_lost_script_cache_is_refilled_by_eval(
    store: RedisStore, admin: aioredis.Redis, policy: RoomPolicy
):
    (a1, _), _ = await seat(store, policy)
    await fill(admin)
    # EVAL reads the flags from the source it is given, as EVALSHA does from the cache.
    await admin.script_flush()
    with pytest.raises(StoreFull):
        await store.join(ROOM, new_session_id(ROOM), policy)
    ticket = await store.poll(a1, policy)
    assert ticket is not None and ticket.status is Status.ACTIVE
    assert (await store.counts(ROOM)).active == 2


async def test_at_maxmemory_a_plain_write_outside_the_scripts_is_refused_as_full(
    store: RedisStore, admin: aioredis.Redis
):
    await fill(admin)
    with pytest.raises(StoreFull):
        await store.audit({"action": "test"})
    assert await store.rate_ms() is None  # reads still work


@pytest.fixture
def full_cluster(redis_cluster: RedisClusterProcesses) -> Iterator[RedisClusterProcesses]:
    """The session's cluster with every node over maxmemory; emptied again after the test."""
    try:
        yield redis_cluster
    finally:
        for port in redis_cluster.ports:
            with redis_cluster.client(port) as node:
                node.config_set("maxmemory", 0)


async def test_at_maxmemory_on_a_cluster_only_joins_fail(
    full_cluster: RedisClusterProcesses, clock: FakeClock, policy: RoomPolicy
):
    store = RedisStore.open(
        RedisSettings(url=full_cluster.url, key_prefix=unique_prefix()), clock=clock
    )
    try:
        (a1, _), (w1, _) = await seat(store, policy)
        for port in full_cluster.ports:
            with full_cluster.client(port) as node:
                assert node.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
                node.config_set("maxmemory", 1)
        with pytest.raises(StoreFull):
            await store.join(ROOM, new_session_id(ROOM), policy)
        ticket = await store.poll(w1, policy)
        assert ticket is not None and ticket.status is Status.WAITING
        assert await store.leave(a1, policy)
        assert (await store.grant(ROOM, policy)).granted == (w1,)
        await store.set_controls(ROOM, {Control.MODE: Mode.PAUSED.value})
        assert (await store.counts(ROOM)).active == 2
    finally:
        await store.aclose()
