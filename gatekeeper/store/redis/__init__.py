"""The Redis backend: one Redis or a Redis Cluster, every step one Lua script."""

from __future__ import annotations

from gatekeeper.store.redis.keys import RedisKeys
from gatekeeper.store.redis.store import RedisStore

__all__ = ["RedisKeys", "RedisStore"]
