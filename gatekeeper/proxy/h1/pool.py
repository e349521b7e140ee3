"""The bounded pool of connections to one origin: idle connections, waiters, idle expiry."""

from __future__ import annotations

import asyncio
import ssl
from collections import deque

from gatekeeper.config.settings import ProxySettings
from gatekeeper.errors import OriginTimeout, OriginUnavailable
from gatekeeper.proxy.h1.connection import Connection

# Idle connections are closed before common servers' 5 s keep-alive (uvicorn, nginx defaults),
# so a request is never sent on a connection the origin is about to close.
_IDLE_S = 4.0


class Pool:
    """At most `proxy.pool-size` connections to one origin; waiters get one in arrival order."""

    def __init__(
        self, host: str, port: int, context: ssl.SSLContext | None, settings: ProxySettings
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._host = host
        self._port = port
        self._ssl = context
        self._limit = settings.pool_size
        self._connect_timeout = settings.connect_timeout
        self._read_timeout = settings.read_timeout
        self._max_head = settings.max_response_head_bytes
        self._pool_timeout = settings.pool_timeout
        self._size = 0  # connections open or opening, busy or idle
        self._idle: deque[Connection] = deque()  # oldest first
        # A waiter is handed a connection, or None: a slot is reserved for it to connect.
        self._waiters: deque[asyncio.Future[Connection | None]] = deque()
        self._all: set[Connection] = set()
        self._sweep: asyncio.TimerHandle | None = None
        self._closed = False

    async def acquire(self) -> Connection:
        """A connection for one exchange: an idle one, a new one, or the next one released."""
        idle = self._idle
        if idle:
            now = self._loop.time()
            while idle:
                conn = idle.pop()  # the most recently used: the others can expire
                if conn.closed or now - conn.idle_since >= _IDLE_S:
                    self.discard(conn)
                    continue
                conn.busy = conn.reused = True
                return conn
        if self._closed:
            raise OriginUnavailable("the proxy's connection pool is closed")
        if self._size < self._limit and not self._waiters:
            self._size += 1
            return await self._open()
        waiter: asyncio.Future[Connection | None] = self._loop.create_future()
        self._waiters.append(waiter)
        try:
            # `proxy.pool-timeout`: a request waits that long for a connection, then gets a 504.
            async with asyncio.timeout(self._pool_timeout):
                given = await waiter
        except (asyncio.CancelledError, TimeoutError) as exc:
            if not waiter.cancelled():
                # Handed a connection or a slot just as the client gave up: pass it on.
                late = waiter.result()
                if late is None:
                    self._free_slot()
                else:
                    self.release(late)
            else:
                self._waiters.remove(waiter)
            if isinstance(exc, TimeoutError):
                why = f"no free connection to the origin within {self._pool_timeout:g} s"
                raise OriginTimeout(why) from None
            raise
        return given if given is not None else await self._open()

    async def _open(self) -> Connection:
        """Connect within a slot already counted in `_size`, freeing it on failure."""
        loop = self._loop
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, conn = await loop.create_connection(
                    lambda: Connection(loop, self._read_timeout, self._max_head, self.lost_idle),
                    self._host,
                    self._port,
                    ssl=self._ssl,
                    server_hostname=self._host if self._ssl is not None else None,
                )
        except BaseException as exc:
            self._free_slot()
            if isinstance(exc, TimeoutError):
                raise OriginTimeout("the origin did not accept a connection in time") from exc
            if isinstance(exc, OSError):
                raise OriginUnavailable(f"the origin is unreachable: {exc!r}") from exc
            raise
        if self._closed:
            self.discard(conn)
            raise OriginUnavailable("the proxy's connection pool is closed")
        self._all.add(conn)
        return conn

    async def reconnect(self, conn: Connection) -> Connection:
        """Replace a dead connection by a fresh one, keeping its slot."""
        conn.close()
        conn.slot = False
        self._all.discard(conn)
        return await self._open()

    def release(self, conn: Connection) -> None:
        """Take back a connection whose exchange ended cleanly."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                conn.reused = True
                waiter.set_result(conn)
                return
        conn.busy = False
        conn.idle_since = self._loop.time()
        self._idle.append(conn)
        if self._sweep is None:
            self._schedule_sweep()

    def discard(self, conn: Connection) -> None:
        """Close a connection that must not be reused and free its slot."""
        conn.close()
        self._free(conn)

    def lost_idle(self, conn: Connection) -> None:
        """An idle connection was closed by the origin."""
        try:
            self._idle.remove(conn)
        except ValueError:
            pass
        self._free(conn)

    def _free(self, conn: Connection) -> None:
        if conn.slot:
            conn.slot = False
            self._all.discard(conn)
            self._free_slot()

    def _free_slot(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes to the first waiter
                return
        self._size -= 1

    def _schedule_sweep(self) -> None:
        if self._idle:
            self._sweep = self._loop.call_at(self._idle[0].idle_since + _IDLE_S, self._expire)

    def _expire(self) -> None:
        self._sweep = None
        idle, now = self._idle, self._loop.time()
        while idle and now - idle[0].idle_since >= _IDLE_S:
            self.discard(idle.popleft())
        self._schedule_sweep()

    def close(self) -> None:
        """Close every connection, idle or busy, and fail every waiter."""
        self._closed = True
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        self._idle.clear()
        for conn in list(self._all):
            conn.close()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(OriginUnavailable("the proxy's connection pool is closed"))
