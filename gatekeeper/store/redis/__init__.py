"""The Redis backend: one Redis or a Redis Cluster, every step one Lua script."""

from __future__ import annotations

from gatekeeper.store.redis.store import RedisKeys, RedisStore

__all__ = ["RedisKeys", "RedisStore"]
