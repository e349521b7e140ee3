"""Redis Sentinel: redis-py and the lean client both connect to the primary Sentinel names."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any
from urllib.parse import urlencode

import redis.asyncio as aioredis
from redis.asyncio.connection import BlockingConnectionPool
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import MasterNotFoundError, Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from gatekeeper.config.redis_url import SENTINEL_SCHEMES, SentinelURL, parse_sentinel_url
from gatekeeper.config.settings import RedisSettings
from gatekeeper.store.redis.resp import (
    Endpoint,
    RespClient,
    RespConnectionError,
    _Connection,
    parse_url,
)

_TRUE = ("1", "yes", "true", "y", "on")
_HEALTH_CHECK_S = 5.0  # how soon the watch notices a Sentinel that vanished without a word
_RETRY_S = 0.5  # between attempts to subscribe when no Sentinel answers

log = logging.getLogger(__name__)

Resolver = Callable[[], Awaitable[tuple[str, int]]]
"""Asks Sentinel where the primary is now: (host, port)."""


class SentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """redis-py's Sentinel pool, blocking like the standalone client's: a caller waits up to
    the pool timeout for a free connection instead of failing at once."""


class Sentinels(Sentinel):
    """redis-py's Sentinel client, with a failure message short enough for a log line."""

    async def discover_master(self, service_name: str) -> Any:
        try:
            return await super().discover_master(service_name)
        except MasterNotFoundError as exc:
            # redis-py's message holds the full repr of every Sentinel client tried.
            log.debug("sentinel: %s", exc)
            nodes = [s.connection_pool.connection_kwargs for s in self.sentinels]
            asked = ", ".join(f"{n['host']}:{n['port']}" for n in nodes)
            raise MasterNotFoundError(
                f"no primary for {service_name!r} from the Sentinels at {asked} (each is down,"
                " refused us, or sees the primary down)"
            ) from None


class SwitchWatch:
    """Listens for Sentinel's `+switch-master` of one service and then calls `on_switch`.

    A primary that Sentinel replaced while it was still up (`SENTINEL FAILOVER`, a partition
    that healed) keeps taking writes until Sentinel demotes it, about ten seconds later; those
    writes are lost. Connections dropped on the switch reconnect to the new primary at once.
    """

    def __init__(self, sentinel: Sentinel, service: str) -> None:
        self._sentinel = sentinel
        self._service = service
        self._task: asyncio.Task[None] | None = None
        self.on_switch: Callable[[], Awaitable[None]] | None = None

    def start(self) -> None:
        """Start listening (in the running loop), unless it does already."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        i = 0
        while True:
            sentinels = self._sentinel.sentinels
            node = sentinels[i % len(sentinels)].connection_pool.connection_kwargs
            i += 1
            kwargs = {**self._sentinel.sentinel_kwargs, "health_check_interval": _HEALTH_CHECK_S}
            client = aioredis.Redis(host=node["host"], port=node["port"], **kwargs)
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe("+switch-master")
                    while True:
                        message = await pubsub.get_message(True, timeout=_HEALTH_CHECK_S)
                        if message is not None:
                            await self._switched(message["data"])
            except (RedisError, OSError) as exc:
                log.debug("sentinel watch: %s", exc)
            finally:
                await client.aclose()
            await asyncio.sleep(_RETRY_S)

    async def _switched(self, data: bytes | str) -> None:
        text = data.decode() if isinstance(data, bytes) else data
        if text.split(" ", 1)[0] == self._service and self.on_switch is not None:
            log.warning("redis sentinel: new primary for %s", text)
            await self.on_switch()


class SentinelRedis(aioredis.Redis):
    """The redis-py client of the primary; closing it closes its Sentinel clients too."""

    sentinels: Sentinel | None = None
    switch_watch: SwitchWatch | None = None

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        if self.switch_watch is not None:
            await self.switch_watch.stop()
        if self.sentinels is not None:
            await self.sentinels.aclose()


class SentinelRespClient(RespClient):
    """The lean client, connecting wherever Sentinel says the primary is.

    Every new connection asks first, so a connection that broke (the primary died) or that
    the store dropped (a READONLY reply: `RedisStore.reconnect`) comes back on the current
    primary.
    """

    def __init__(
        self, endpoint: Endpoint, resolve: Resolver, watch: SwitchWatch | None, **kwargs: Any
    ) -> None:
        super().__init__(endpoint, **kwargs)
        self._resolve = resolve
        self._watch = watch

    async def _open(self, i: int) -> _Connection:
        if self._watch is not None:
            self._watch.start()  # here: the first place that runs in the store's loop
        try:
            host, port = await self._resolve()
        except RedisError as exc:
            self._opening[i] = None  # the base class clears it only once it has run
            raise RespConnectionError(str(exc)) from exc
        except BaseException:
            self._opening[i] = None
            raise
        # Read synchronously by the base class before its first await: no race between slots.
        self.endpoint = replace(self.endpoint, host=host, port=port)
        return await super()._open(i)


def is_sentinel_url(url: str) -> bool:
    """True for `redis+sentinel://` and `rediss+sentinel://` URLs."""
    return url.startswith(tuple(f"{scheme}://" for scheme in SENTINEL_SCHEMES))


def _tls(parsed: SentinelURL) -> dict[str, Any]:
    """redis-py's TLS arguments for the URL (for Sentinels and data nodes alike)."""
    if not parsed.ssl:
        return {}
    kwargs: dict[str, Any] = {"ssl": True, **dict(parsed.tls)}
    if "ssl_check_hostname" in kwargs:
        kwargs["ssl_check_hostname"] = kwargs["ssl_check_hostname"].lower() in _TRUE
    return kwargs


def _endpoint(parsed: SentinelURL) -> Endpoint:
    """The lean client's credentials, database and TLS; the address comes from Sentinel."""
    # TLS options read exactly as for a rediss:// URL.
    scheme = "rediss" if parsed.ssl else "redis"
    base = parse_url(f"{scheme}://localhost/?{urlencode(parsed.tls)}")
    return replace(base, username=parsed.username, password=parsed.password, db=parsed.db)


def connect_sentinel(settings: RedisSettings) -> tuple[SentinelRedis, SentinelRespClient]:
    """redis-py on a blocking pool and the lean client, both asking the Sentinels of
    `settings.url` for the primary whenever they open a connection.

    Neither connects before first use.
    """
    parsed = parse_sentinel_url(settings.url)
    socket_timeout_s = settings.socket_timeout_ms / 1000
    connect_timeout_s = settings.connect_timeout_ms / 1000
    timeouts = {"socket_timeout": socket_timeout_s, "socket_connect_timeout": connect_timeout_s}
    tls = _tls(parsed)
    sentinel = Sentinels(
        parsed.sentinels,
        sentinel_kwargs={
            **timeouts,
            **tls,
            "username": parsed.sentinel_username,
            "password": parsed.sentinel_password,
        },
    )
    client = sentinel.master_for(
        parsed.service,
        redis_class=SentinelRedis,
        connection_pool_class=SentinelPool,
        max_connections=settings.pool_size,
        timeout=socket_timeout_s,
        **timeouts,
        **tls,
        username=parsed.username,
        password=parsed.password,
        db=parsed.db,
        decode_responses=True,
        # Scripts are idempotent per session id, so one quick retry is safe; a retried
        # connect asks Sentinel again.
        retry=Retry(NoBackoff(), 1),
    )
    client.sentinels = sentinel

    watch = client.switch_watch = SwitchWatch(sentinel, parsed.service)

    async def primary() -> tuple[str, int]:
        # Skips Sentinels that are down or see the primary down (subjectively or objectively)
        # and asks the one that answered first next time.
        host, port = await sentinel.discover_master(parsed.service)
        return str(host), int(port)

    lean = SentinelRespClient(
        _endpoint(parsed),
        primary,
        watch,
        connections=1,
        connect_timeout_s=connect_timeout_s,
        socket_timeout_s=socket_timeout_s,
    )

    async def switched() -> None:
        # As `RedisStore.reconnect`: every connection goes, the next calls ask Sentinel.
        lean.disconnect()
        await client.connection_pool.disconnect()

    watch.on_switch = switched
    return client, lean
