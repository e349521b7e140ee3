"""Clients of one Redis: redis-py on a blocking pool, and the lean RESP client for hot calls."""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from gatekeeper.config.settings import RedisSettings
from gatekeeper.store.redis.resp import RespClient, UnsupportedURL


def connect_standalone(settings: RedisSettings) -> tuple[aioredis.Redis, RespClient | None]:
    """redis-py with an explicit blocking pool, and the lean client when it reads the URL.

    Neither connects before first use.
    """
    socket_timeout_s = settings.socket_timeout_ms / 1000
    connect_timeout_s = settings.connect_timeout_ms / 1000
    pool = aioredis.BlockingConnectionPool.from_url(
        settings.url,
        max_connections=settings.pool_size,
        timeout=socket_timeout_s,
        socket_timeout=socket_timeout_s,
        socket_connect_timeout=connect_timeout_s,
        decode_responses=True,
        # Scripts are idempotent per session id, so one quick retry is safe.
        retry=Retry(NoBackoff(), 1),
    )
    # Scripts and PING go through the lean client. It pipelines, so one connection carries
    # any load, and carries it cheapest: the calls of a loop iteration share one write and
    # their replies one read (more connections split those batches; Redis runs one command
    # at a time anyway).
    try:
        lean: RespClient | None = RespClient.from_url(
            settings.url,
            connections=1,
            connect_timeout_s=connect_timeout_s,
            socket_timeout_s=socket_timeout_s,
        )
    except UnsupportedURL:
        lean = None  # URL options only redis-py knows: it serves every call
    return aioredis.Redis.from_pool(pool), lean
