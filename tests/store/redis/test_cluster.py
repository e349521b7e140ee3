"""Redis Cluster: rooms spread over nodes, per-node script caches, redirects, cluster errors."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, NodesManager
from redis.crc import key_slot
from redis.exceptions import (
    ClusterDownError,
    ConnectionError,
    MovedError,
    SlotNotCoveredError,
    TimeoutError,
    TryAgainError,
)

from gatekeeper.config import load_config
from gatekeeper.config.redis_url import parse_cluster_url
from gatekeeper.config.settings import RedisSettings
from gatekeeper.errors import ConfigError, StoreError
from gatekeeper.ids import new_session_id
from gatekeeper.store import open_store
from gatekeeper.store.base import RoomPolicy, Status
from gatekeeper.store.redis import RedisStore
from tests.conftest import unique_prefix
from tests.redis_cluster import RedisClusterProcesses
from tests.redis_server import free_port

pytestmark = pytest.mark.redis

POLICY = RoomPolicy(3, 5, 30_000, 10_000, 60_000, 120_000)
T = TypeVar("T")


def cluster_slot(room: str) -> int:
    return key_slot(f"{{{room}}}".encode())


def rooms_by_node(cluster: RedisClusterProcesses, per_node: int) -> dict[int, list[str]]:
    """`per_node` room names served by each node (port → rooms), found by their hash tag."""
    found: dict[int, list[str]] = {port: [] for port in cluster.ports}
    i = 0
    while any(len(rooms) < per_node for rooms in found.values()):
        room = f"room-{i}"
        rooms = found[cluster.owner(f"{{{room}}}")]
        if len(rooms) < per_node:
            rooms.append(room)
        i += 1
    return found


@pytest.fixture
async def closing() -> AsyncIterator[Callable[[T], T]]:
    """Track stores and clients; closed after the test even when it fails (no leaked sockets)."""
    opened: list[Any] = []

    def track(thing: T) -> T:
        opened.append(thing)
        return thing

    yield track
    for thing in reversed(opened):
        await thing.aclose()


@pytest.fixture
def cluster(redis_cluster: RedisClusterProcesses) -> Iterator[RedisClusterProcesses]:
    """The session's cluster; a test that broke it leaves it healthy again for the next."""
    yield redis_cluster
    for node in redis_cluster.nodes:
        if node.proc is None or node.proc.poll() is not None:
            node.start()
    redis_cluster.wait_ok()


async def test_rooms_spread_over_the_nodes_and_each_room_stays_on_one(
    cluster: RedisClusterProcesses, closing: Callable[[Any], Any]
):
    prefix = unique_prefix()
    store = closing(RedisStore.open(RedisSettings(url=cluster.url, key_prefix=prefix)))
    placed = rooms_by_node(cluster, per_node=2)
    for rooms in placed.values():
        for room in rooms:
            for _ in range(POLICY.capacity + 2):  # some active, some waiting
                await store.join(room, new_session_id(room), POLICY)
            await store.grant(room, POLICY)
            await store.set_controls(room, {"mode": "open"})
            assert (await store.counts(room)).waiting == 2
    await store.audit({"action": "test"})
    await store.set_rate_ms(250)

    seen: dict[str, int] = {}  # key → port of the node holding it
    for port in cluster.ports:
        with cluster.client(port) as node:
            seen.update((key, port) for key in node.scan_iter(match=f"{prefix}:*"))
    for port, rooms in placed.items():
        for room in rooms:
            keys = [k for k in seen if k.startswith(f"{prefix}:{{{room}}}:")]
            assert {
                f"{prefix}:{{{room}}}:{name}"
                for name in ("joins", "waiting", "waiting-seq", "active")
            } <= set(keys)
            # Only the admitted have a session hash: a waiter is its entries in room keys.
            assert sum(":session:" in k for k in keys) == POLICY.capacity
            assert {seen[k] for k in keys} == {port}, f"room {room} is split over nodes"
    room_nodes = {seen[k] for k in seen if ":{" in k}
    assert room_nodes == set(cluster.ports), "rooms did not spread over every node"
    # The global keys are single-key commands: wherever their slot is, they work.
    assert {f"{prefix}:rooms", f"{prefix}:control", f"{prefix}:audit"} <= set(seen)
    assert sorted(await store.rooms()) == sorted(r for rooms in placed.values() for r in rooms)
    assert await store.rate_ms() == 250
    assert (await store.audit_log(5))[0]["action"] == "test"
    await store.ping()


async def test_first_concurrent_calls_on_a_fresh_client_do_not_race(
    cluster: RedisClusterProcesses, closing: Callable[[Any], Any]
):
    """redis-py #3935: many concurrent script calls on a not-yet-initialised RedisCluster."""
    admins = [closing(aioredis.Redis(port=p, decode_responses=True)) for p in cluster.ports]
    for admin in admins:
        await admin.script_flush()
    rooms = [r for rs in rooms_by_node(cluster, per_node=2).values() for r in rs]

    async def stats() -> Counter[str]:
        """Topology discoveries and MOVED replies so far, summed over the nodes."""
        total = Counter[str]()
        for admin in admins:
            info = await admin.info("all")
            total["discoveries"] += info.get("cmdstat_cluster|slots", {}).get("calls", 0)
            total["moved"] += info.get("errorstat_MOVED", {}).get("count", 0)
        return total

    before = await stats()
    # A small pool: 300 concurrent calls must queue for a connection, not fail.
    store = closing(
        RedisStore.open(RedisSettings(url=cluster.url, key_prefix=unique_prefix(), pool_size=4))
    )

    async def visit(i: int) -> Status:
        room = rooms[i % len(rooms)]
        sid = new_session_id(room)
        await store.join(room, sid, POLICY)
        ticket = await store.poll(sid, POLICY)
        assert ticket is not None
        return ticket.status

    statuses = await asyncio.gather(*(visit(i) for i in range(300)))
    assert Counter(statuses) == {
        Status.ACTIVE: 3 * len(rooms),
        Status.WAITING: 300 - 3 * len(rooms),
    }
    after = await stats()
    # One discovery, shared by every first call; no call was sent to a node blindly.
    assert after["discoveries"] - before["discoveries"] == 1
    assert after["moved"] - before["moved"] == 0


async def test_script_flush_on_every_node_mid_run_causes_no_error(
    cluster: RedisClusterProcesses, closing: Callable[[Any], Any]
):
    store = closing(RedisStore.open(RedisSettings(url=cluster.url, key_prefix=unique_prefix())))
    admins = [closing(aioredis.Redis(port=p)) for p in cluster.ports]
    rooms = [r for rs in rooms_by_node(cluster, per_node=1).values() for r in rs]
    errors: list[BaseException] = []
    stop = asyncio.Event()
    rounds = Counter[str]()

    async def churn(room: str) -> None:
        while not stop.is_set():
            sid = new_session_id(room)
            try:
                await store.join(room, sid, POLICY)
                await store.poll(sid, POLICY)
                await store.grant(room, POLICY)
                await store.counts(room)
                await store.set_controls(room, {"capacity": "3"})
                await store.leave(sid, POLICY)
            except BaseException as exc:
                errors.append(exc)
                return
            rounds[room] += 1

    workers = [asyncio.create_task(churn(room)) for room in rooms for _ in range(2)]
    for _ in range(15):
        await asyncio.gather(*(admin.script_flush() for admin in admins))
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.gather(*workers)
    assert errors == []
    assert set(rounds) == set(rooms)


async def test_node_restart_empties_its_script_cache_and_the_store_recovers(
    cluster: RedisClusterProcesses, closing: Callable[[Any], Any]
):
    store = closing(
        RedisStore.open(
            RedisSettings(
                url=cluster.url,
                key_prefix=unique_prefix(),
                connect_timeout_ms=200,
                socket_timeout_ms=200,
            )
        )
    )
    placed = rooms_by_node(cluster, per_node=1)
    port, room = next((p, rs[0]) for p, rs in placed.items())
    other = next(rs[0] for p, rs in placed.items() if p != port)
    for r in (room, other):
        await store.join(r, new_session_id(r), POLICY)
    node = next(n for n in cluster.nodes if n.port == port)

    node.kill()
    with pytest.raises(StoreError, match="ConnectionError"):
        await store.join(room, new_session_id(room), POLICY)
    # Rooms on the other nodes carry on while one node is down, and the cluster still answers
    # a ping (one node answering is enough: a readiness probe must not take every replica
    # out of rotation because one node's rooms are unavailable).
    await store.ping()
    assert (await store.join(other, new_session_id(other), POLICY)).status is Status.ACTIVE

    node.start()  # same port and nodes.conf: it rejoins with its slots, but no data or scripts
    with cluster.client(port) as c:
        assert c.script_exists(store._join._sha) == [False]
    # A restarted master refuses commands for a moment (CLUSTERDOWN) before it rejoins.
    with pytest.raises(StoreError, match="ClusterDown"):
        await store.join(room, new_session_id(room), POLICY)
    cluster.wait_ok()
    sid = new_session_id(room)
    assert (await store.join(room, sid, POLICY)).status is Status.ACTIVE  # NOSCRIPT → EVAL
    with cluster.client(port) as c:
        assert c.script_exists(store._join._sha) == [True]
    await store.ping()


async def test_a_room_follows_its_slot_when_it_is_resharded(
    cluster: RedisClusterProcesses, closing: Callable[[Any], Any]
):
    store = closing(RedisStore.open(RedisSettings(url=cluster.url, key_prefix=unique_prefix())))
    room = rooms_by_node(cluster, per_node=1)[cluster.ports[0]][0]
    holders = [new_session_id(room) for _ in range(POLICY.capacity)]
    waiters = [new_session_id(room) for _ in range(4)]
    for sid in holders + waiters:
        await store.join(room, sid, POLICY)
    slot = cluster_slot(room)
    cluster.move_slot(slot, cluster.ports[1])
    assert cluster.owner(f"{{{room}}}") == cluster.ports[1]
    # The client still maps the slot to the old node: MOVED sends it to the new one.
    ticket = await store.poll(waiters[0], POLICY)
    assert ticket is not None and ticket.status is Status.WAITING and ticket.waiting == 4
    for sid in holders[:2]:
        await store.leave(sid, POLICY)
    assert (await store.grant(room, POLICY)).granted == tuple(waiters[:2])
    with cluster.client(cluster.ports[1]) as c:
        assert c.execute_command("CLUSTER COUNTKEYSINSLOT", slot) > 0


@pytest.mark.parametrize(
    "error",
    [
        ClusterDownError("The cluster is down"),
        TryAgainError("Multiple keys request during rehashing of slot"),
        ConnectionError("connection reset"),
        TimeoutError("timed out"),
        "moved-storm",
        "slot-not-covered",
    ],
    ids=lambda e: e if isinstance(e, str) else type(e).__name__,
)
async def test_cluster_errors_surface_as_store_error_only(
    cluster: RedisClusterProcesses,
    closing: Callable[[Any], Any],
    monkeypatch: pytest.MonkeyPatch,
    error: Any,
):
    store = closing(RedisStore.open(RedisSettings(url=cluster.url, key_prefix=unique_prefix())))
    room = "err"
    await store.join(room, new_session_id(room), POLICY)
    real = ClusterNode.execute_command

    async def failing(self: ClusterNode, *args: Any, **kwargs: Any) -> Any:
        if args[0] in ("EVALSHA", "EVAL"):
            if error == "moved-storm":  # always redirected to the node that redirects back
                raise MovedError(f"{cluster_slot(room)} {self.host}:{self.port}")
            raise error
        return await real(self, *args, **kwargs)

    if error == "slot-not-covered":

        def uncovered(*args: Any, **kwargs: Any) -> Any:
            raise SlotNotCoveredError("slot not covered")

        monkeypatch.setattr(NodesManager, "get_node_from_slot", uncovered)
    else:
        monkeypatch.setattr(ClusterNode, "execute_command", failing)
    with pytest.raises(StoreError):
        await store.join(room, new_session_id(room), POLICY)
    monkeypatch.undo()
    assert (await store.join(room, new_session_id(room), POLICY)).status is Status.ACTIVE


async def test_unreachable_cluster_raises_store_error_fast(closing: Callable[[Any], Any]):
    url = f"redis+cluster://127.0.0.1:{free_port()},127.0.0.1:{free_port()}"
    store = closing(
        RedisStore.open(RedisSettings(url=url, connect_timeout_ms=200, socket_timeout_ms=200))
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(StoreError):
        await store.join("R", new_session_id("R"), POLICY)
    with pytest.raises(StoreError):
        await store.ping()
    assert loop.time() - started < 3


async def test_a_cluster_url_naming_a_standalone_redis_raises_store_error(
    redis_url: str, closing: Callable[[Any], Any]
):
    host_port = redis_url.removeprefix("redis://").partition("/")[0]
    store = closing(RedisStore.open(RedisSettings(url=f"redis+cluster://{host_port}")))
    with pytest.raises(StoreError, match="[Cc]luster"):
        await store.ping()


async def test_aclose_is_safe_before_first_use_and_twice(
    cluster: RedisClusterProcesses, closing: Callable[[Any], Any]
):
    store = closing(RedisStore.open(RedisSettings(url=cluster.url)))
    await store.aclose()
    store = closing(RedisStore.open(RedisSettings(url=cluster.url)))
    await store.ping()
    await store.aclose()
    await store.aclose()


def test_cluster_urls_parse_and_validate():
    parsed = parse_cluster_url("rediss+cluster://u:p%40ss@a:7000,[::1]:7001,b/0")
    assert parsed.nodes == (("a", 7000), ("::1", 7001), ("b", 6379))
    assert (parsed.ssl, parsed.username, parsed.password) == (True, "u", "p@ss")
    assert not parse_cluster_url("redis+cluster://h:1").ssl
    for bad in (
        "redis+cluster://",
        "redis+cluster://h:1,",
        "redis+cluster://h:99999",
        "redis+cluster://h:1/1",
        "redis+cluster://h:1?x=1",
        "redis+cluster://h:x",
    ):
        with pytest.raises(ValueError):
            parse_cluster_url(bad)
        with pytest.raises(ConfigError, match="redis.url"):
            load_config(environ={"WAITINGROOM_REDIS_URL": bad})
    url = "redis+cluster://127.0.0.1:7000,127.0.0.1:7001"
    assert load_config(environ={"WAITINGROOM_REDIS_URL": url}).redis.url == url
    assert isinstance(open_store(RedisSettings(url=url)), RedisStore)
