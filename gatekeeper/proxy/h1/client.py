"""The proxy's own HTTP/1.1 client: asyncio protocols, httptools parsing, a bounded pool."""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import AsyncIterator
from typing import cast
from urllib.parse import urlsplit

import httptools

from gatekeeper.asgi import Headers
from gatekeeper.config.settings import ProxySettings
from gatekeeper.errors import OriginError, OriginTimeout, OriginUnavailable
from gatekeeper.proxy.upstream import UpstreamResponse

# Idle connections are closed before common servers' 5 s keep-alive (uvicorn, nginx defaults),
# so a request is never sent on a connection the origin is about to close.
_IDLE_S = 4.0
# Above this many buffered body bytes the origin is no longer read until the proxy catches up.
_HIGH_WATER = 256 * 1024
# Safe to send again after a reused connection died before any answer (RFC 9110, 9.2.2);
# only without a body, which was consumed by the first attempt.
_RETRYABLE = frozenset({"GET", "HEAD", "OPTIONS"})
# Like aiohttp, every other bodiless request says Content-Length: 0: some servers (nginx)
# answer 411 to a POST without framing.
_BODILESS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


class _Connection(asyncio.Protocol):
    """One keep-alive connection to the origin, carrying one exchange at a time."""

    __slots__ = (
        "_loop",
        "_pool",
        "_transport",
        "_parser",
        "_waiter",
        "_chunks",
        "_buffered",
        "_reading_paused",
        "_writing_paused",
        "_head_only",
        "_stale_parser",
        "slot",
        "busy",
        "closed",
        "reused",
        "idle_since",
        "status",
        "headers",
        "head_done",
        "complete",
        "keep_alive",
        "body_cut",
        "got_bytes",
        "error",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, pool: _Pool) -> None:
        self._loop = loop
        self._pool = pool
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[bool] | None = None
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._reading_paused = self._writing_paused = False
        self._head_only = self._stale_parser = False
        self.slot = True  # counted in the pool's size until discarded
        self.busy = True  # carrying an exchange (not idle in the pool)
        self.closed = self.reused = False
        self.idle_since = 0.0
        self.status = 0
        self.headers: Headers = []
        self.head_done = self.complete = self.keep_alive = self.body_cut = False
        self.got_bytes = False
        self.error: OriginError | None = None

    @property
    def reusable(self) -> bool:
        """Whether the exchange ended cleanly on the wire and the origin keeps the connection."""
        return self.complete and self.keep_alive and not (self.closed or self.body_cut)

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()

    # -- one exchange ------------------------------------------------------------------------

    async def request(
        self,
        head: bytes,
        body: AsyncIterator[bytes] | None,
        chunked: bool,
        head_only: bool,
        method: str,
        timeout: float,
    ) -> None:
        """Send one request and return once the final response head has arrived."""
        if self._stale_parser:
            # After a HEAD answer the parser still waits for the body its headers announced.
            self._parser = httptools.HttpResponseParser(self)
            self._stale_parser = False
        if self._reading_paused:
            self._resume_reading()
        self._chunks.clear()
        self._buffered = 0
        self._head_only = head_only
        self.status = 0
        self.headers = []
        self.head_done = self.complete = self.keep_alive = self.body_cut = False
        self.got_bytes = False
        self.error = None
        if self.closed or self._transport is None or self._transport.is_closing():
            raise _NotSent("the origin closed the pooled connection")
        self._transport.write(head)
        if body is not None:
            await self._send_body(body, chunked, timeout)
        deadline = self._loop.time() + timeout
        while not self.head_done:
            if self.error is not None:
                raise self.error
            if not await self._wait(deadline):
                raise OriginTimeout(f"the origin did not answer {method} in time")

    async def _send_body(self, body: AsyncIterator[bytes], chunked: bool, timeout: float) -> None:
        transport = self._transport
        assert transport is not None
        async for chunk in body:
            if self.closed or self.head_done:
                # The origin answered or hung up before taking the whole body: stop sending,
                # and never reuse a connection whose request was cut short.
                self.body_cut = True
                return
            if not chunk:
                continue  # an empty chunk would end a chunked body
            if chunked:
                transport.writelines((b"%x\r\n" % len(chunk), chunk, b"\r\n"))
            else:
                transport.write(chunk)
            if self._writing_paused:
                await self._drain(timeout)
        if chunked and not self.closed:
            transport.write(b"0\r\n\r\n")

    async def _drain(self, timeout: float) -> None:
        deadline = self._loop.time() + timeout
        while self._writing_paused and not (self.closed or self.head_done):
            if not await self._wait(deadline):
                raise OriginTimeout("the origin stopped reading the request body")

    async def read(self, timeout: float) -> bytes:
        """The body bytes buffered so far, waiting for some if none are; b"" at the end."""
        deadline = 0.0
        while True:
            if self._chunks:
                return self._take()
            if self.complete:
                return b""
            if self.error is not None:
                raise self.error
            if not deadline:
                deadline = self._loop.time() + timeout
            if not await self._wait(deadline):
                raise OriginTimeout("the origin stopped sending the response body")

    def _take(self) -> bytes:
        chunks = self._chunks
        data = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self._buffered = 0
        if self._reading_paused and not self.closed:
            self._resume_reading()
        return data

    def _resume_reading(self) -> None:
        self._reading_paused = False
        if self._transport is not None and not self.closed:
            self._transport.resume_reading()

    async def _wait(self, deadline: float) -> bool:
        """Wait for the protocol to report progress; False when `deadline` passed first."""
        waiter: asyncio.Future[bool] = self._loop.create_future()
        self._waiter = waiter
        timer = self._loop.call_at(deadline, _expire, waiter)
        try:
            return await waiter
        finally:
            timer.cancel()
            self._waiter = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(True)

    def _fail(self, error: OriginError) -> None:
        if not self.complete and self.error is None:
            self.error = error
        self.keep_alive = False
        self.close()
        self._wake()

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if not self.busy:
            # Bytes nobody asked for: the connection's framing can no longer be trusted.
            self.close()
            return
        self.got_bytes = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(OriginUnavailable("the origin switched protocols unasked"))
        except httptools.HttpParserError as exc:
            self._fail(OriginUnavailable(f"the origin sent an invalid response: {exc!r}"))

    def eof_received(self) -> bool | None:
        self.closed = True  # nothing more may be written: the transport closes itself now
        return None  # connection_lost decides what the EOF meant for the response

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.busy:
            self._pool.lost_idle(self)
            return
        if not self.complete and self.error is None:
            if not self.head_done:
                why = f"the origin closed the connection before answering: {exc!r}"
                self.error = OriginUnavailable(why)
            elif self._until_close():
                self.complete = True
            else:
                self.error = OriginUnavailable(f"the origin dropped the response body: {exc!r}")
        self.keep_alive = False
        self._wake()

    def _until_close(self) -> bool:
        """Whether the body is delimited by the connection closing (no length, not chunked)."""
        for name, value in self.headers:
            name = name.lower()
            if name == b"content-length" or (
                name == b"transfer-encoding" and b"chunked" in value.lower()
            ):
                return False
        return True

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._wake()

    # -- httptools callbacks -------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.complete:
            # A second response to one request: stop parsing; the connection is closed.
            raise _Unexpected

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.head_done:  # trailers are dropped, as aiohttp does
            self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status < 200:
            if status == 101:
                raise _Unexpected  # never asked for: Upgrade is not forwarded
            self.headers = []  # informational (100 Continue, 103 Early Hints): the answer follows
            return
        self.status = status
        self.head_done = True
        if self._head_only:
            # A HEAD answer has no body whatever its headers say; httptools cannot be told.
            self.keep_alive = self._parser.should_keep_alive()
            self.complete = self._stale_parser = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        if self.complete:
            raise _Unexpected  # body bytes after a HEAD answer
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > _HIGH_WATER and not self._reading_paused:
            self._reading_paused = True
            assert self._transport is not None
            self._transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self.head_done and not self.complete:
            self.keep_alive = self._parser.should_keep_alive()
            self.complete = True
            self._wake()


class _NotSent(OriginUnavailable):
    """The connection closed before any of the request was written: safe to resend."""


class _Unexpected(Exception):
    """Raised from a parser callback to stop parsing bytes the origin should not have sent."""


def _expire(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(False)


class _Pool:
    """At most `limit` connections to one origin; waiters get a free one in arrival order."""

    def __init__(
        self,
        host: str,
        port: int,
        context: ssl.SSLContext | None,
        limit: int,
        connect_timeout: float,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._host = host
        self._port = port
        self._ssl = context
        self._limit = limit
        self._connect_timeout = connect_timeout
        self._size = 0  # connections open or opening, busy or idle
        self._idle: deque[_Connection] = deque()  # oldest first
        # A waiter is handed a connection, or None: a slot is reserved for it to connect.
        self._waiters: deque[asyncio.Future[_Connection | None]] = deque()
        self._all: set[_Connection] = set()
        self._sweep: asyncio.TimerHandle | None = None
        self._closed = False

    async def acquire(self) -> _Connection:
        idle = self._idle
        if idle:
            now = self._loop.time()
            while idle:
                conn = idle.pop()  # the most recently used: the others can expire
                if conn.closed or now - conn.idle_since >= _IDLE_S:
                    conn.close()
                    self._free(conn)
                    continue
                conn.busy = conn.reused = True
                return conn
        if self._closed:
            raise OriginUnavailable("the proxy's connection pool is closed")
        if self._size < self._limit and not self._waiters:
            self._size += 1
            return await self._open()
        waiter: asyncio.Future[_Connection | None] = self._loop.create_future()
        self._waiters.append(waiter)
        try:
            given = await waiter
        except asyncio.CancelledError:
            if not waiter.cancelled():
                # Handed a connection or a slot just as the client gave up: pass it on.
                late = waiter.result()
                if late is None:
                    self._free_slot()
                else:
                    self.release(late)
            else:
                self._waiters.remove(waiter)
            raise
        return given if given is not None else await self._open()

    async def _open(self) -> _Connection:
        """Connect within a slot already counted in `_size`, freeing it on failure."""
        loop = self._loop
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, conn = await loop.create_connection(
                    lambda: _Connection(loop, self),
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
            conn.close()
            self._free(conn)
            raise OriginUnavailable("the proxy's connection pool is closed")
        self._all.add(conn)
        return conn

    async def reconnect(self, conn: _Connection) -> _Connection:
        """Replace a dead connection by a fresh one, keeping its slot."""
        conn.close()
        conn.slot = False
        self._all.discard(conn)
        return await self._open()

    def release(self, conn: _Connection) -> None:
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

    def discard(self, conn: _Connection) -> None:
        """Close a connection that must not be reused and free its slot."""
        conn.close()
        self._free(conn)

    def lost_idle(self, conn: _Connection) -> None:
        """An idle connection was closed by the origin."""
        try:
            self._idle.remove(conn)
        except ValueError:
            pass
        self._free(conn)

    def _free(self, conn: _Connection) -> None:
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
            conn = idle.popleft()
            conn.close()
            self._free(conn)
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


class _H1Response:
    """The response whose head has arrived; iterating it yields the body."""

    __slots__ = ("status", "headers", "_conn", "_pool", "_timeout")

    def __init__(self, conn: _Connection, pool: _Pool, timeout: float) -> None:
        self.status = conn.status
        self.headers = conn.headers
        self._conn: _Connection | None = conn
        self._pool = pool
        self._timeout = timeout

    def body(self) -> AsyncIterator[bytes]:
        return self

    def __aiter__(self) -> _H1Response:
        return self

    async def __anext__(self) -> bytes:
        conn = self._conn
        if conn is None:
            raise StopAsyncIteration
        chunk = await conn.read(self._timeout)
        if chunk:
            return chunk
        self._finish()  # free the connection before the proxy finishes its own response
        raise StopAsyncIteration

    async def aclose(self) -> None:
        self._finish()

    def _finish(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            if conn.reusable:
                self._pool.release(conn)
            else:
                self._pool.discard(conn)


class H1Upstream:
    """`Upstream` over asyncio + httptools: adds Host (when absent) and framing, nothing else."""

    def __init__(self, origin: str, settings: ProxySettings) -> None:
        parts = urlsplit(origin)
        self._tls = parts.scheme == "https"
        default_port = 443 if self._tls else 80
        self._host = parts.hostname or ""
        self._port = parts.port or default_port
        host = f"[{self._host}]" if ":" in self._host else self._host
        if parts.port not in (None, default_port):
            host = f"{host}:{parts.port}"
        self._host_line = b"Host: %s\r\n" % host.encode("ascii" if host.isascii() else "idna")
        self._prefix = parts.path.rstrip("/").encode("latin-1")
        self._settings = settings
        self._pool: _Pool | None = None

    @property
    def is_open(self) -> bool:
        """Whether the connection pool currently exists."""
        return self._pool is not None

    async def open(self) -> None:
        """Create the pool now rather than on the first request (needs the running loop)."""
        self._connect()

    def _connect(self) -> _Pool:
        if self._pool is None:
            s = self._settings
            context = ssl.create_default_context() if self._tls else None
            self._pool = _Pool(self._host, self._port, context, s.pool_size, s.connect_timeout)
        return self._pool

    async def send(
        self,
        method: str,
        target: str,
        headers: Headers,
        body: AsyncIterator[bytes] | None,
        content_length: int | None,
    ) -> UpstreamResponse:
        """Send one request and return once the response head has arrived."""
        pool = self._pool or self._connect()
        head = self._head(method, target, headers, body, content_length)
        chunked = body is not None and content_length is None
        head_only = method == "HEAD"
        timeout = self._settings.read_timeout
        idempotent = body is None and method in _RETRYABLE
        retry = True
        conn = await pool.acquire()
        while True:
            try:
                await conn.request(head, body, chunked, head_only, method, timeout)
            except OriginUnavailable as exc:
                stale = conn.reused and not conn.got_bytes
                if retry and (isinstance(exc, _NotSent) or (stale and idempotent)):
                    # A keep-alive connection the origin closed as we reused it: once more on
                    # a new one, unless the origin may have acted on what we sent.
                    retry = False
                    conn = await pool.reconnect(conn)
                    continue
                pool.discard(conn)
                raise
            except BaseException:
                pool.discard(conn)
                raise
            return _H1Response(conn, pool, timeout)

    def _head(
        self,
        method: str,
        target: str,
        headers: Headers,
        body: AsyncIterator[bytes] | None,
        content_length: int | None,
    ) -> bytes:
        parts = [method.encode("latin-1"), b" ", self._prefix, target.encode("latin-1")]
        parts.append(b" HTTP/1.1\r\n")
        has_host = False
        for name, value in headers:
            parts += (name, b": ", value, b"\r\n")
            has_host = has_host or name.lower() == b"host"
        lines = len(headers) + 2
        if not has_host:
            parts.insert(5, self._host_line)
            lines += 1
        if content_length is not None:
            parts.append(b"Content-Length: %d\r\n" % content_length)
            lines += 1
        elif body is not None:
            parts.append(b"Transfer-Encoding: chunked\r\n")
            lines += 1
        elif method not in _BODILESS:
            parts.append(b"Content-Length: 0\r\n")
            lines += 1
        parts.append(b"\r\n")
        head = b"".join(parts)
        if head.count(b"\n") != lines or head.count(b"\r") != lines:
            # A CR or LF inside the target or a header would smuggle in another header.
            raise ValueError("CR or LF in the request target or a header")
        return head

    async def aclose(self) -> None:
        """Close the pool; a later request opens a new one."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()
