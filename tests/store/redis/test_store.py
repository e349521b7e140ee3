"""Redis-specific behaviour: script cache loss, key layout, time from Redis, error translation."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from gatekeeper.config.settings import RedisSettings
from gatekeeper.errors import StoreError
from gatekeeper.ids import new_session_id
from gatekeeper.store.base import Control, Mode, RoomPolicy, Status
from gatekeeper.store.redis import RedisStore
from tests.conftest import FakeClock, unique_prefix
from tests.redis_server import RedisServer, free_port

pytestmark = pytest.mark.redis

POLICY = RoomPolicy(3, 5, 30_000, 10_000, 60_000, 120_000)
FULL = RoomPolicy(1, 5, 30_000, 10_000, 60_000, 120_000)  # one place: the second visitor waits


async def test_script_flush_mid_run_causes_no_error(redis_url: str):
    store = RedisStore.open(RedisSettings(url=redis_url, key_prefix=unique_prefix()))
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
    store = RedisStore.open(RedisSettings(url=redis_url, key_prefix=prefix))
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
    store = RedisStore.open(RedisSettings(url=redis_url, key_prefix=unique_prefix()))
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
    store = RedisStore.open(
        RedisSettings(
            url=f"redis://127.0.0.1:{free_port()}/0", connect_timeout_ms=200, socket_timeout_ms=200
        )
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
    store = RedisStore.open(
        RedisSettings(url=redis_server.url, connect_timeout_ms=200, socket_timeout_ms=200)
    )
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
    store = RedisStore.open(RedisSettings(url=redis_server.url))
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


# -- the waiter layout (issue P5): a waiting session has no hash of its own


async def _room_keys(admin: aioredis.Redis, prefix: str) -> set[str]:
    return {k async for k in admin.scan_iter(match=f"{prefix}:{{*", count=1000)}


async def test_a_waiter_has_no_session_hash_only_entries_in_room_keys(
    redis_url: str, clock: FakeClock
):
    prefix = unique_prefix()
    store = RedisStore.open(RedisSettings(url=redis_url, key_prefix=prefix), clock=clock)
    admin = aioredis.Redis.from_url(redis_url, decode_responses=True)
    k = store.keys("W")
    holder, waiter = new_session_id("W"), new_session_id("W")
    assert (await store.join("W", holder, FULL)).status is Status.ACTIVE
    assert (await store.join("W", waiter, FULL, user_id="U7")).status is Status.WAITING
    token = waiter.partition(".")[0]
    assert await _room_keys(admin, prefix) == {
        k.session_prefix + holder,
        k.joins,
        k.waiting,
        k.waiting_seq,
        k.active,
        k.stats,
    }
    assert await admin.zrange(k.waiting, 0, -1, withscores=True) == [(token, clock.now)]
    assert await admin.hgetall(k.waiting_seq) == {token: "2"}
    [(_, entry)] = await admin.xrange(k.joins)
    assert entry == {"sessionId": token, "eventId": "W", "userId": "U7", "joinedAt": str(clock.now)}
    # A retried join finds the waiter without a hash and changes nothing.
    clock.advance(1_000)
    again = await store.join("W", waiter, FULL, user_id="U7")
    assert (again.status, again.waiting) == (Status.WAITING, 1)
    assert await admin.xlen(k.joins) == 1
    assert await admin.hgetall(k.waiting_seq) == {token: "2"}
    assert await admin.zscore(k.waiting, token) == clock.now - 1_000
    await admin.aclose()
    await store.aclose()


async def _end_the_wait(
    how: str, store: RedisStore, holder: str, waiter: str, clock: FakeClock
) -> Status:
    """End `waiter`'s wait one way; returns the status it ends in."""
    if how == "granted":
        await store.leave(holder, FULL)
        assert (await store.grant("W", FULL)).granted == (waiter,)
        return Status.ACTIVE
    if how in ("left", "revoked"):
        assert await store.leave(waiter, FULL, revoke=how == "revoked") is True
        return Status.LEFT if how == "left" else Status.EXPIRED
    clock.advance(FULL.waiting_timeout_ms)
    await store.poll(holder, FULL)
    if how == "expired on poll":
        assert (await store.poll(waiter, FULL)).status is Status.EXPIRED  # type: ignore[union-attr]
    else:
        assert (await store.grant("W", FULL)).expired_waiting == 1
    return Status.EXPIRED


@pytest.mark.parametrize(
    "how", ["granted", "left", "revoked", "expired on poll", "expired by the grant loop"]
)
async def test_the_waiting_entries_go_when_the_wait_ends(
    redis_url: str, clock: FakeClock, how: str
):
    prefix = unique_prefix()
    store = RedisStore.open(RedisSettings(url=redis_url, key_prefix=prefix), clock=clock)
    admin = aioredis.Redis.from_url(redis_url, decode_responses=True)
    k = store.keys("W")
    holder, waiter = new_session_id("W"), new_session_id("W")
    await store.join("W", holder, FULL)
    joined_at = clock.now
    await store.join("W", waiter, FULL, user_id="U7")
    final = await _end_the_wait(how, store, holder, waiter, clock)
    assert await admin.exists(k.waiting, k.waiting_seq) == 0  # emptied keys are gone
    # The session hash exists from now on, with the join sequence number the wait had.
    session = await admin.hgetall(k.session_prefix + waiter)
    assert (session["status"], session["seq"], session["eventId"]) == (final, "2", "W")
    if final is Status.ACTIVE:
        assert session["userId"] == "U7" and session["joinedAt"] == str(joined_at)
        assert session["grantedAt"] == str(clock.now)
        assert 0 < await admin.pttl(k.session_prefix + waiter) <= 130_000
    else:
        assert session["endedAt"] == str(clock.now)
        assert 0 < await admin.pttl(k.session_prefix + waiter) <= FULL.retention_ms
    assert (await store.poll(waiter, FULL)).status is final  # type: ignore[union-attr]
    await admin.aclose()
    await store.aclose()


async def test_memory_per_waiter_stays_bounded(redis_server: RedisServer):
    """Issue P5: a waiter costs no key of its own and well under 300 B (measured ~267 B at 100k
    by `python -m bench --only P5`); here 2,000 waiters, so the room keys use their big-set
    encodings as at scale."""
    n = 2_000
    store = RedisStore.open(RedisSettings(url=redis_server.url))
    admin = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    await store.join("M", new_session_id("M"), FULL)
    await store.join("M", new_session_id("M"), FULL)  # the first waiter creates the room keys
    keys_before, before = await admin.dbsize(), (await admin.info("memory"))["used_memory"]
    for _ in range(n):
        await store.join("M", new_session_id("M"), FULL)
    after = (await admin.info("memory"))["used_memory"]
    assert await admin.dbsize() == keys_before
    k = store.keys("M")
    queue = (k.waiting, k.joins, k.waiting_seq)
    usage = [await admin.memory_usage(key, samples=0) for key in queue]
    assert sum(usage) / n < 300, usage  # 246 B when written
    assert (after - before) / n < 300, after - before  # 243 B when written
    await admin.aclose()
    await store.aclose()


async def test_waiters_queued_under_their_whole_id_are_still_granted_as_they_are(
    redis_url: str, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
):
    """Before `join` required ids of its room, other ids were queued under their whole id
    behind a '.' (`RedisKeys.member`); the scripts still decode such entries."""
    store = RedisStore.open(RedisSettings(url=redis_url, key_prefix=unique_prefix()), clock=clock)
    roomy = RoomPolicy(10, 10, 600_000, 600_000, 600_000, 600_000)
    await store.set_controls("W", {Control.MODE: Mode.PAUSED})
    odd = [new_session_id("E2"), "no-dot-at-all", "a" * 22, "x.y.W", new_session_id("W")]
    assert [store.keys("W").member(sid)[0] == "." for sid in odd] == [True] * 4 + [False]
    with monkeypatch.context() as m:
        m.setattr("gatekeeper.store.redis.store.require_room", lambda room, sid: None)
        for n, sid in enumerate(odd, 1):
            assert (await store.join("W", sid, roomy)).status is Status.WAITING
            assert (await store.join("W", sid, roomy)).waiting == n
    await store.set_controls("W", {Control.MODE: None})
    assert (await store.grant("W", roomy)).granted == tuple(odd)
    await store.aclose()
