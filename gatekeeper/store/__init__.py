"""State stores: `open_store(settings)` picks the backend from the URL scheme."""

from __future__ import annotations

from gatekeeper.clock import Clock
from gatekeeper.config.redis_url import CLUSTER_SCHEMES, SENTINEL_SCHEMES
from gatekeeper.config.settings import RedisSettings
from gatekeeper.errors import ConfigError
from gatekeeper.store.base import Store
from gatekeeper.store.memory import MemoryStore


def open_store(settings: RedisSettings, *, clock: Clock | None = None) -> Store:
    """A store for `settings.url`: empty or `memory://` → embedded; `redis://`, `rediss://`,
    `unix://` → one Redis; `redis+cluster://host:port[,host:port...]` (or `rediss+cluster://`)
    → a Redis Cluster."""
    url = settings.url
    if settings.in_memory:
        return MemoryStore(clock)
    bases = ("redis", "rediss", "unix", *CLUSTER_SCHEMES, *SENTINEL_SCHEMES)
    schemes = tuple(f"{s}://" for s in bases)
    if url.startswith(schemes):
        from gatekeeper.store.redis import RedisStore

        return RedisStore.open(settings, clock=clock)
    raise ConfigError(f"waitingroom.redis.url: unsupported scheme in {url!r}")
