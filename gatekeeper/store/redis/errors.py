"""Redis errors become the store's: `StoreError`, or `StoreFull` when Redis is at maxmemory."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from redis.exceptions import OutOfMemoryError, ReadOnlyError, RedisClusterException, RedisError

import gatekeeper.store.redis.resp as resp
from gatekeeper.errors import StoreError, StoreFull

P = ParamSpec("P")
T = TypeVar("T")


def translated(fn: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """Redis and lean-client errors of a store method become `StoreError` (the only place);
    an OOM reply (Redis at maxmemory) becomes `StoreFull`."""

    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await fn(*args, **kwargs)
        except (ReadOnlyError, resp.ReadOnlyError) as exc:
            # A failover demoted the server these connections reach: drop them all, so the
            # next calls reconnect (through DNS or a proxy) to the new primary.
            reconnect = getattr(args[0], "reconnect", None)
            if reconnect is not None:
                await reconnect()
            raise StoreError(f"redis: {type(exc).__name__}: {exc}") from exc
        except (RedisError, RedisClusterException, resp.RespError) as exc:
            # redis-py names the OOM reply; the lean client passes Redis's message on as is.
            if isinstance(exc, OutOfMemoryError) or (
                isinstance(exc, resp.RespError) and str(exc).startswith("OOM")
            ):
                raise StoreFull(f"redis is at maxmemory: {type(exc).__name__}: {exc}") from exc
            raise StoreError(f"redis: {type(exc).__name__}: {exc}") from exc
        except OSError as exc:
            raise StoreError(f"redis: {exc}") from exc

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper
