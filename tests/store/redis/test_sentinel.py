"""Redis Sentinel: the store follows the primary through a failover, and the cap holds."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

from gatekeeper.config.settings import RedisSettings
from gatekeeper.errors import StoreError
from gatekeeper.ids import new_session_id, room_of
from gatekeeper.store.base import RoomPolicy, Status
from gatekeeper.store.redis import RedisKeys, RedisStore
from gatekeeper.store.redis.sentinel import connect_sentinel, is_sentinel_url
from tests.conftest import unique_prefix
from tests.processes import gatekeeper_process
from tests.redis_sentinel import SentinelRig

CAPACITY = 3
POLICY = RoomPolicy(CAPACITY, 10, 60_000, 30_000, 60_000, 120_000)
ROOM = "default"
T = TypeVar("T")


def recovery_bound_s(rig: SentinelRig) -> float:
    """The documented bound (docs/operations.md, "Redis Sentinel"): `down-after-milliseconds`,
    then the election and promotion (one retried election: 2 × `failover-timeout`), then a
    reconnect of about one socket timeout."""
    return (rig.down_after_ms + 2 * rig.failover_timeout_ms) / 1000 + 1.0


@pytest.fixture
def rig() -> Iterator[SentinelRig]:
    rig = SentinelRig().start()
    try:
        yield rig
    finally:
        rig.stop()


@pytest.fixture
async def store(rig: SentinelRig) -> AsyncIterator[RedisStore]:
    settings = RedisSettings(url=rig.url(), key_prefix=unique_prefix())
    client, lean = connect_sentinel(settings)
    store = RedisStore(client, settings, lean=lean)
    try:
        yield store
    finally:
        await store.aclose()


async def until_ok(call: Callable[[], Awaitable[T]], limit_s: float) -> tuple[T, int]:
    """The first result of `call` that is not a StoreError, and how many failed before."""
    deadline = time.monotonic() + limit_s
    failures = 0
    while True:
        try:
            return await call(), failures
        except StoreError:
            failures += 1
            assert time.monotonic() < deadline, f"still failing after {limit_s} s"
            await asyncio.sleep(0.05)


def active_on(rig: SentinelRig, port: int, key: str) -> int:
    with rig.data_client(port) as client:
        return int(client.zcard(key))


def role(rig: SentinelRig, port: int) -> str:
    with rig.data_client(port) as client:
        return str(client.info("replication")["role"])


def replicated(rig: SentinelRig) -> None:
    """Wait until the replica has every write (so what the test checks is not a race)."""
    with rig.data_client(rig.primary.port) as client:
        assert client.execute_command("WAIT", 1, 5000) == 1


def test_sentinel_urls_are_told_apart() -> None:
    assert is_sentinel_url("redis+sentinel://h/m")
    assert is_sentinel_url("rediss+sentinel://h/m")
    assert not is_sentinel_url("redis+cluster://h")
    assert not is_sentinel_url("redis://h")


async def test_the_lean_client_takes_credentials_database_and_tls_from_the_url() -> None:
    url = "rediss+sentinel://u:p%40ss@s1,s2:26380/svc/4?ssl_cert_reqs=none&sentinel_password=sp"
    client, lean = connect_sentinel(RedisSettings(url=url))
    try:
        ep = lean.endpoint
        assert (ep.username, ep.password, ep.db) == ("u", "p@ss", 4)
        assert ep.ssl is not None and ep.ssl.verify_mode == ssl.CERT_NONE
        kwargs = client.connection_pool.connection_kwargs
        assert (kwargs["username"], kwargs["password"], kwargs["db"]) == ("u", "p@ss", 4)
        assert client.sentinels is not None
        sentinels = client.sentinels.sentinels
        hosts = [s.connection_pool.connection_kwargs["host"] for s in sentinels]
        ports = [s.connection_pool.connection_kwargs["port"] for s in sentinels]
        assert (hosts, ports) == (["s1", "s2"], [26379, 26380])
        assert sentinels[0].connection_pool.connection_kwargs["password"] == "sp"
    finally:
        await client.aclose()
        await lean.aclose()


@pytest.mark.redis
async def test_killed_primary_the_store_recovers_on_the_promoted_replica_within_the_bound(
    rig: SentinelRig, store: RedisStore, record_property: Callable[[str, object], None]
) -> None:
    tickets = [await store.join(ROOM, new_session_id(ROOM), POLICY) for _ in range(8)]
    assert [t.status for t in tickets].count(Status.ACTIVE) == CAPACITY
    old = rig.primary.port
    assert store._lean is not None and store._lean.endpoint.port == old
    replicated(rig)

    killed = time.monotonic()
    rig.primary.kill()
    polled, failures = await until_ok(
        lambda: store.poll(tickets[0].session_id, POLICY), recovery_bound_s(rig)
    )
    recovered_s = time.monotonic() - killed
    record_property("recovery_s", round(recovered_s, 2))
    print(f"recovered in {recovered_s:.2f} s after {failures} failed polls")

    new = rig.replica.port
    assert rig.wait_promoted(old) == new
    assert polled is not None and polled.status is Status.ACTIVE  # replicated before the kill
    assert store._lean.endpoint.port == new  # scripts go over the lean client, to the new primary
    assert await store.rooms() == [ROOM]  # and redis-py's pool found it too
    await store.set_rate_ms(150)
    assert await store.rate_ms() == 150

    # The cap is the active set on whichever node is primary: it holds there.
    active = store.keys(ROOM).active
    assert active_on(rig, new, active) == CAPACITY
    more = [await store.join(ROOM, new_session_id(ROOM), POLICY) for _ in range(4)]
    assert all(t.status is Status.WAITING for t in more)
    for t in tickets[:2]:
        assert await store.leave(t.session_id, POLICY)
    report = await store.grant(ROOM, POLICY)
    assert len(report.granted) == 2
    assert active_on(rig, new, active) == CAPACITY
    assert (await store.counts(ROOM)).active == CAPACITY


@pytest.mark.redis
async def test_a_replaced_primary_that_is_still_up_is_left_at_once(
    rig: SentinelRig, store: RedisStore
) -> None:
    sid = new_session_id(ROOM)
    await store.join(ROOM, sid, POLICY)
    old = rig.primary.port
    replicated(rig)
    # A coordinated failover: the old primary stays up, as a replica (READONLY to writes).
    new = rig.fail_over(old)
    # Sentinel demotes the old primary only about ten seconds later; until then it would take
    # writes and lose them. The store leaves it on Sentinel's +switch-master, at once.
    deadline = time.monotonic() + 2
    while store._lean is None or store._lean.endpoint.port != new:
        assert time.monotonic() < deadline, "the lean client still talks to the old primary"
        assert await store.poll(sid, POLICY) is not None
        await asyncio.sleep(0.02)
    assert role(rig, old) == "master"  # not yet demoted: only the switch message moved us
    await store.set_rate_ms(120)  # a redis-py write: its pool moved to the new primary as well
    with rig.data_client(new) as client:
        assert client.hget(f"{store._prefix}:control", "rate-ms") == b"120"
    with rig.data_client(old) as client:
        assert client.hget(f"{store._prefix}:control", "rate-ms") is None


@pytest.mark.redis
async def test_a_demoted_primary_costs_at_most_one_failed_call(
    rig: SentinelRig, store: RedisStore
) -> None:
    sid = new_session_id(ROOM)
    await store.join(ROOM, sid, POLICY)
    old = rig.primary.port
    replicated(rig)
    # Without the switch message (a watch that missed it): the old primary is demoted, and
    # its READONLY reply (or dropped connection) sends the store to Sentinel again.
    watch = getattr(store._redis, "switch_watch", None)
    assert watch is not None
    watch.on_switch = None
    new = rig.fail_over(old)
    deadline = time.monotonic() + 30
    while role(rig, old) != "slave":
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    polled, failures = await until_ok(lambda: store.poll(sid, POLICY), 10)
    assert polled is not None and polled.status is Status.ACTIVE
    assert failures <= 1
    assert store._lean is not None and store._lean.endpoint.port == new


@pytest.mark.redis
async def test_passwords_for_data_nodes_and_sentinels() -> None:
    rig = SentinelRig(password="data-secret", sentinel_password="sentinel-secret").start()
    try:
        good = rig.url(suffix="/0?sentinel_password=sentinel-secret")
        bad = rig.url(suffix="?sentinel_password=wrong")
        for url, works in ((good, True), (bad, False)):
            settings = RedisSettings(url=url, key_prefix=unique_prefix())
            client, lean = connect_sentinel(settings)
            store = RedisStore(client, settings, lean=lean)
            try:
                if works:
                    ticket = await store.join(ROOM, new_session_id(ROOM), POLICY)
                    assert ticket.status is Status.ACTIVE
                    assert await store.rooms() == [ROOM]
                else:
                    with pytest.raises(StoreError, match="Sentinel|master"):
                        await store.join(ROOM, new_session_id(ROOM), POLICY)
            finally:
                await store.aclose()
    finally:
        rig.stop()


@pytest.mark.redis
async def test_gatekeeper_run_serves_joins_again_after_the_primary_is_killed(
    rig: SentinelRig, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    prefix = unique_prefix()
    env = {
        "WAITINGROOM_PROCESSING_CAPACITY": str(CAPACITY),
        "WAITINGROOM_PROCESSING_RATE_MS": "50",
        "WAITINGROOM_REDIS_KEY_PREFIX": prefix,
    }
    api = "/api/waiting-room/sessions"
    with gatekeeper_process(["--redis-url", rig.url()], env, tmp_path / "gk.log") as (base, _):
        async with httpx.AsyncClient(base_url=base, timeout=5) as client:
            joins = [await client.post(api, json={"eventId": "E1"}) for _ in range(8)]
            ids = [r.json()["sessionId"] for r in joins]
            statuses = [r.json()["status"] for r in joins]
            assert statuses.count("ACTIVE") == CAPACITY
            active_key = RedisKeys(prefix, "joins", str(room_of(ids[0]))).active
            replicated(rig)

            old = rig.primary.port
            killed = time.monotonic()
            rig.primary.kill()
            refused = 0
            while (r := await client.post(api, json={"eventId": "E1"})).status_code == 503:
                refused += 1  # store_unavailable: the failure policy's answer meanwhile
                assert time.monotonic() - killed < recovery_bound_s(rig), r.text
                await asyncio.sleep(0.05)
            recovered_s = time.monotonic() - killed
            assert r.status_code in (200, 202), r.text
            record_property("process_recovery_s", round(recovered_s, 2))
            print(f"gatekeeper run recovered in {recovered_s:.2f} s after {refused} 503s")
            new = rig.wait_promoted(old)

            # Two leave; the grant loop fills their places from the line, never more.
            for sid in [s for s, st in zip(ids, statuses, strict=True) if st == "ACTIVE"][:2]:
                assert (await client.post(f"{api}/{sid}:leave")).status_code == 204
            deadline = time.monotonic() + 10
            seen: list[int] = []
            while time.monotonic() < deadline:
                seen.append(active_on(rig, new, active_key))
                polls = [await client.get(f"{api}/{s}") for s in ids]
                if sum(p.json()["status"] == "ACTIVE" for p in polls) == CAPACITY:
                    break
                await asyncio.sleep(0.05)
            assert max(seen) <= CAPACITY
            assert active_on(rig, new, active_key) == CAPACITY
