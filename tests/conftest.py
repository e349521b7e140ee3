"""Shared fixtures: an injectable clock, real Redis servers, and one store per backend."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any, cast

import pytest

from gatekeeper.config.settings import RedisSettings
from gatekeeper.store.base import RoomPolicy, Store
from gatekeeper.store.memory import MemoryStore
from gatekeeper.store.redis import RedisStore
from tests.redis_cluster import HOW_TO_GET_CLUSTER, RedisClusterProcesses
from tests.redis_server import (
    HOW_TO_GET_REDIS,
    RedisServer,
    external_redis_url,
    testcontainers_url,
)


class FakeClock:
    """A clock tests move by hand (milliseconds since the epoch)."""

    def __init__(self, start_ms: int = 1_800_000_000_000) -> None:
        self.now = start_ms

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> None:
        self.now += ms


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def policy() -> RoomPolicy:
    return RoomPolicy(
        capacity=2,
        batch_size=10,
        waiting_timeout_ms=30_000,
        claim_window_ms=10_000,
        idle_timeout_ms=60_000,
        retention_ms=120_000,
    )


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real Redis for the whole run: our own redis-server, else REDIS_URL, else Docker."""
    url = external_redis_url()
    if url:
        yield url
        return
    if shutil.which("redis-server"):
        server = RedisServer().start()
        try:
            yield server.url
        finally:
            server.stop()
        return
    started = testcontainers_url()
    if started is None:
        pytest.fail(HOW_TO_GET_REDIS, pytrace=False)
    url, container = started
    try:
        yield url
    finally:
        cast(Any, container).stop()


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A private redis-server the test may kill and restart."""
    if not shutil.which("redis-server"):
        pytest.fail(HOW_TO_GET_REDIS, pytrace=False)
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterProcesses]:
    """A local 3-master Redis Cluster for the whole run (started once, on first use)."""
    if not (shutil.which("redis-server") and shutil.which("redis-cli")):
        pytest.fail(HOW_TO_GET_CLUSTER, pytrace=False)
    try:
        cluster = RedisClusterProcesses(masters=3).start()
    except RuntimeError:  # a port taken between picking it and binding it: once more
        cluster = RedisClusterProcesses(masters=3).start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def redis_cluster_url(redis_cluster: RedisClusterProcesses) -> str:
    """`redis+cluster://` URL of the session's local Redis Cluster."""
    return redis_cluster.url


def unique_prefix() -> str:
    """Keys of one test never meet another's, even on a shared REDIS_URL."""
    return f"gkt-{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=["memory", "redis", "cluster"])
async def store(request: pytest.FixtureRequest, clock: FakeClock) -> AsyncIterator[Store]:
    """The same contract, run against every backend."""
    if request.param == "memory":
        yield MemoryStore(clock)
        return
    name = "redis_cluster_url" if request.param == "cluster" else "redis_url"
    url = request.getfixturevalue(name)
    s = RedisStore.open(RedisSettings(url=url, key_prefix=unique_prefix()), clock=clock)
    try:
        yield s
    finally:
        await s.aclose()
