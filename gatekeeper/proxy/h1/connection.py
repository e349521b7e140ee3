"""One origin connection: an asyncio protocol parsing with httptools, back-pressure both ways."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import cast

import httptools

from gatekeeper.asgi import Headers
from gatekeeper.errors import OriginError, OriginTimeout, OriginUnavailable

# Above this many buffered body bytes the origin is no longer read until the proxy catches up.
_HIGH_WATER = 256 * 1024


class Connection(asyncio.Protocol):
    """One keep-alive connection to the origin, carrying one exchange at a time."""

    __slots__ = (
        "_loop",
        "_timeout",
        "_max_head",
        "_head_bytes",
        "_on_lost_idle",
        "_transport",
        "_parser",
        "_waiter",
        "_deadline",
        "_timer",
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

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        timeout: float,
        max_head: int,
        on_lost_idle: Callable[[Connection], None],
    ) -> None:
        self._loop = loop
        self._timeout = timeout  # the read timeout: for the answer, each body chunk, each drain
        # `proxy.max-response-head-bytes`: an origin cannot make the proxy buffer a huge head.
        self._max_head = max_head
        self._head_bytes = 0
        self._on_lost_idle = on_lost_idle
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[bool] | None = None
        # One timer per connection, re-armed when it fires early, rather than one per wait:
        # deadlines only move forward, so the armed timer is never late.
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None
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

    @property
    def drained(self) -> bool:
        """Whether the response is complete and every body byte was read."""
        return self.complete and not self._chunks

    def close(self) -> None:
        """Close the transport; the connection is never used again."""
        self.closed = True
        self._cancel_timer()
        if self._transport is not None:
            self._transport.close()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def request(
        self, head: bytes, body: AsyncIterator[bytes] | None, chunked: bool, method: str
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
        self._head_only = method == "HEAD"
        self.status = 0
        self.headers = []
        self.head_done = self.complete = self.keep_alive = self.body_cut = False
        self.got_bytes = False
        self.error = None
        if self.closed or self._transport is None or self._transport.is_closing():
            raise NotSent("the origin closed the pooled connection")
        self._transport.write(head)
        if body is not None:
            await self._send_body(body, chunked)
        deadline = self._loop.time() + self._timeout
        while not self.head_done:
            if self.error is not None:
                raise self.error
            if not await self._wait(deadline):
                raise OriginTimeout(f"the origin did not answer {method} in time")

    async def _send_body(self, body: AsyncIterator[bytes], chunked: bool) -> None:
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
                await self._drain()
        if chunked and not self.closed:
            transport.write(b"0\r\n\r\n")

    async def _drain(self) -> None:
        deadline = self._loop.time() + self._timeout
        while self._writing_paused and not (self.closed or self.head_done):
            if not await self._wait(deadline):
                raise OriginTimeout("the origin stopped reading the request body")

    async def read(self) -> bytes:
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
                deadline = self._loop.time() + self._timeout
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
        self._deadline = deadline
        if self._timer is None:
            self._timer = self._loop.call_at(deadline, self._on_timer)
        try:
            return await waiter
        finally:
            self._waiter = None

    def _on_timer(self) -> None:
        self._timer = None
        waiter = self._waiter
        if waiter is None or waiter.done():
            return  # nobody waits: the next wait arms a timer again
        if self._loop.time() >= self._deadline:
            waiter.set_result(False)
        else:
            self._timer = self._loop.call_at(self._deadline, self._on_timer)

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

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if not self.busy:
            # Bytes nobody asked for: the connection's framing can no longer be trusted.
            self.close()
            return
        self.got_bytes = True
        if not self.head_done:
            self._head_bytes += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(OriginUnavailable("the origin switched protocols unasked"))
        except httptools.HttpParserError as exc:
            self._fail(OriginUnavailable(f"the origin sent an invalid response: {exc!r}"))
        else:
            # Still in the head after this chunk: every byte so far was head.
            if not self.head_done and self._head_bytes > self._max_head:
                self._fail(self._head_too_large())

    def _head_too_large(self) -> OriginUnavailable:
        return OriginUnavailable(f"the origin's response head exceeds {self._max_head} bytes")

    def eof_received(self) -> bool | None:
        self.closed = True  # nothing more may be written: the transport closes itself now
        return None  # connection_lost decides what the EOF meant for the response

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._cancel_timer()
        if not self.busy:
            self._on_lost_idle(self)
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

    # The httptools parser calls the on_* methods below while feed_data runs.

    def on_message_begin(self) -> None:
        if self.complete:
            # A second response to one request: stop parsing; the connection is closed.
            raise _Unexpected

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.head_done:  # trailers are dropped, as aiohttp does
            self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        if sum(len(k) + len(v) + 4 for k, v in self.headers) > self._max_head:
            self._fail(self._head_too_large())
            raise _Unexpected
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


class NotSent(OriginUnavailable):
    """The connection closed before any of the request was written: safe to resend."""


class _Unexpected(Exception):
    """Raised from a parser callback to stop parsing bytes the origin should not have sent."""
