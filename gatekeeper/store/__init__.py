"""State stores: `open_store(url)` picks the backend from the URL scheme."""

from __future__ import annotations

from gatekeeper.errors import ConfigError
from gatekeeper.store.base import Clock, Store
from gatekeeper.store.memory import MemoryStore


def open_store(
    url: str,
    *,
    key_prefix: str = "waiting-room",
    stream: str = "joins",
    pool_size: int = 64,
    connect_timeout_s: float = 0.5,
    socket_timeout_s: float = 0.5,
    clock: Clock | None = None,
) -> Store:
    """A store for `url`: empty or `memory://` → embedded; `redis://`, `rediss://`, `unix://`."""
    if url in ("", "memory://"):
        return MemoryStore(clock)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from gatekeeper.store.redis import RedisStore

        return RedisStore.from_url(
            url,
            key_prefix=key_prefix,
            stream=stream,
            pool_size=pool_size,
            connect_timeout_s=connect_timeout_s,
            socket_timeout_s=socket_timeout_s,
            clock=clock,
        )
    raise ConfigError(f"waitingroom.redis.url: unsupported scheme in {url!r}")
