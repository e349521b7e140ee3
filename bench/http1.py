"""A lean HTTP/1.1 keep-alive client (asyncio + httptools) for simulating many cheap visitors.

aiohttp costs ~150 µs of client CPU per request; at flash-crowd rates one client core then
saturates and its own event-loop lag shows up as server latency. This client does only what
the crowd needs: one host, keep-alive pooling, Content-Length or chunked bodies, timeouts.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import cast

import httptools

# The benchmark servers close keep-alive connections idle for 30 s (gatekeeper's default);
# never reuse one idle nearly that long.
MAX_IDLE_S = 25.0


@dataclass(slots=True)
class Response:
    """Status, the Set-Cookie values, and the body of one answer."""

    status: int
    cookies: list[str] = field(default_factory=list)
    body: bytes = b""


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one request in flight at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.WriteTransport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[Response] | None = None
        self.response = Response(0)
        self.chunks: list[bytes] = []
        self.reusable = True
        self.idle_since = time.monotonic()

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.WriteTransport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.reusable = False
        self._fail(exc or ConnectionResetError("connection closed by the server"))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"set-cookie":
            self.response.cookies.append(value.decode("latin-1"))

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        self.response.status = self.parser.get_status_code()
        self.response.body = b"".join(self.chunks)
        self.reusable = self.parser.should_keep_alive()
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(self.response)

    def _fail(self, exc: BaseException) -> None:
        self.reusable = False
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def send(self, raw: bytes) -> asyncio.Future[Response]:
        assert self.transport is not None
        self.response, self.chunks = Response(0), []
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return self.waiter

    def close(self) -> None:
        self.reusable = False
        if self.transport is not None:
            self.transport.close()


class Client:
    """A pool of keep-alive connections to one host:port."""

    def __init__(self, host: str, port: int, *, limit: int = 1000, timeout: float = 30.0) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(limit)
        self._host_header = f"{host}:{port}".encode()

    async def request(
        self, method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b""
    ) -> Response:
        """Send one request; raises OSError or TimeoutError on transport failures."""
        lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: " + self._host_header]
        for name, value in (headers or {}).items():
            lines.append(f"{name}: {value}".encode("latin-1"))
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append(b"Content-Length: %d" % len(body))
        raw = b"\r\n".join(lines) + b"\r\n\r\n" + body
        # asyncio.timeout, not wait_for: in 3.11 wait_for can swallow a cancellation that
        # arrives together with the answer, and the crowd cancels thousands of visitors at once.
        async with self._slots, asyncio.timeout(self.timeout):
            conn = await self._checkout()
            try:
                response = await conn.send(raw)
            except BaseException:
                conn.close()
                raise
            self._checkin(conn)
        return response

    async def _checkout(self) -> _Connection:
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if conn.reusable and now - conn.idle_since < MAX_IDLE_S:
                return conn
            conn.close()
        _, conn = await asyncio.get_running_loop().create_connection(
            _Connection, self.host, self.port
        )
        return conn

    def _checkin(self, conn: _Connection) -> None:
        if conn.reusable:
            conn.idle_since = time.monotonic()
            self._idle.append(conn)
        else:
            conn.close()

    def close(self) -> None:
        """Close every idle connection."""
        for conn in self._idle:
            conn.close()
        self._idle.clear()
