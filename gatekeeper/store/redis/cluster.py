"""The Redis Cluster client: a redis-py `RedisCluster` that queues for connections like a pool."""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import MaxConnectionsError
from redis.typing import EncodableT

from gatekeeper.config.redis_url import CLUSTER_SCHEMES, parse_cluster_url
from gatekeeper.config.settings import RedisSettings


class ClusterClient(RedisCluster):
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


def is_cluster_url(url: str) -> bool:
    """True for `redis+cluster://` and `rediss+cluster://` URLs."""
    return url.startswith(tuple(f"{scheme}://" for scheme in CLUSTER_SCHEMES))


def connect_cluster(settings: RedisSettings) -> ClusterClient:
    """A client for the cluster `settings.url` names; the nodes listed are where discovery
    starts. It connects on first use."""
    parsed = parse_cluster_url(settings.url)
    socket_timeout_s = settings.socket_timeout_ms / 1000
    return ClusterClient(
        startup_nodes=[ClusterNode(host, port) for host, port in parsed.nodes],
        pool_size=settings.pool_size,
        pool_timeout_s=socket_timeout_s,
        socket_timeout=socket_timeout_s,
        socket_connect_timeout=settings.connect_timeout_ms / 1000,
        username=parsed.username,
        password=parsed.password,
        ssl=parsed.ssl,
        decode_responses=True,
        # Retries after connection errors and CLUSTERDOWN, rediscovering the topology first
        # (MOVED/ASK redirects are followed without counting as retries).
        retry=Retry(NoBackoff(), 1),
    )
