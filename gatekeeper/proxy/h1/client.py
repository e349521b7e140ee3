"""H1Upstream, the proxy's own HTTP/1.1 client: request heads, retries, the streamed response."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

from gatekeeper.asgi import Headers
from gatekeeper.config.settings import ProxySettings
from gatekeeper.errors import OriginUnavailable
from gatekeeper.proxy.h1.connection import Connection, NotSent
from gatekeeper.proxy.h1.pool import Pool
from gatekeeper.proxy.upstream import UpstreamResponse

# Safe to send again after a reused connection died before any answer (RFC 9110, 9.2.2);
# only without a body, which was consumed by the first attempt.
_RETRYABLE = frozenset({"GET", "HEAD", "OPTIONS"})
# Like aiohttp, every other bodiless request says Content-Length: 0: some servers (nginx)
# answer 411 to a POST without framing.
_BODILESS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
_CHUNKED = b"Transfer-Encoding: chunked\r\n"
_EMPTY = b"Content-Length: 0\r\n"


class _H1Response:
    """The response whose head has arrived; iterating it yields the body."""

    __slots__ = ("status", "headers", "_conn", "_pool")

    def __init__(self, conn: Connection, pool: Pool) -> None:
        self.status = conn.status
        self.headers = conn.headers
        self._conn: Connection | None = conn
        self._pool = pool

    def body(self) -> AsyncIterator[bytes]:
        return self

    @property
    def ended(self) -> bool:
        return self._conn is None

    def __aiter__(self) -> _H1Response:
        return self

    async def __anext__(self) -> bytes:
        conn = self._conn
        if conn is None:
            raise StopAsyncIteration
        chunk = await conn.read()
        # The connection is freed as soon as the body is in, before the proxy finishes its own
        # response: the client's next request finds it idle.
        if conn.drained:
            self._finish()
        if chunk:
            return chunk
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
        self._pool: Pool | None = None

    @property
    def is_open(self) -> bool:
        """Whether the connection pool currently exists."""
        return self._pool is not None

    async def open(self) -> None:
        """Create the pool now rather than on the first request (needs the running loop)."""
        self._connect()

    def _connect(self) -> Pool:
        if self._pool is None:
            context = ssl.create_default_context() if self._tls else None
            self._pool = Pool(self._host, self._port, context, self._settings)
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
        if content_length is not None:
            framing = b"Content-Length: %d\r\n" % content_length
        elif body is not None:
            framing = _CHUNKED
        else:
            framing = b"" if method in _BODILESS else _EMPTY
        head = self._head(method, target, headers, framing)
        chunked = framing is _CHUNKED
        idempotent = body is None and method in _RETRYABLE
        retry = True
        conn = await pool.acquire()
        while True:
            try:
                await conn.request(head, body, chunked, method)
            except OriginUnavailable as exc:
                stale = conn.reused and not conn.got_bytes
                if retry and (isinstance(exc, NotSent) or (stale and idempotent)):
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
            return _H1Response(conn, pool)

    def _head(self, method: str, target: str, headers: Headers, framing: bytes) -> bytes:
        """The request head; `framing` is its Content-Length or Transfer-Encoding line, if any."""
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
        if framing:
            parts.append(framing)
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
