"""uvicorn's request-response cycle answering in one write: the head leaves with the body."""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import (
    HEADER_RE,
    HEADER_VALUE_RE,
    STATUS_LINE,
    RequestResponseCycle,
)

from gatekeeper.asgi import Message


class OneWriteCycle(RequestResponseCycle):
    """uvicorn's request-response cycle, answering in fewer writes: the head waits for the
    first body message and leaves with it in one write (or at the end of the loop turn, for
    an app that streams), and header names and values are checked in one regex pass each."""

    _pending = b""

    async def send(self, message: Message) -> None:  # type: ignore[override]
        if self.response_started or self.access_log or message["type"] != "http.response.start":
            if self._pending:
                await self._send_body(message)
            else:
                await super().send(message)  # type: ignore[arg-type]
            return
        if self.flow.write_paused and not self.disconnected:
            await self.flow.drain()
        if self.disconnected:
            return
        self.response_started = True
        self.waiting_for_100_continue = False
        self._pending = self._head(message)
        asyncio.get_running_loop().call_soon(self._flush)

    def _head(self, message: Message) -> bytes:
        """The response head, with uvicorn's checks and framing decisions."""
        status: int = message["status"]
        content = [STATUS_LINE[status]]
        has_close = False
        for name, value in (*self.default_headers, *message.get("headers", ())):
            name = name.lower()
            if name == b"content-length" and self.chunked_encoding is None:
                self.expected_content_length = int(value.decode())
                self.chunked_encoding = False
            elif name == b"transfer-encoding" and value.lower() == b"chunked":
                self.expected_content_length = 0
                self.chunked_encoding = True
            elif name == b"connection":
                if b"close" in [token.lower().strip() for token in value.split(b",")]:
                    self.keep_alive = False
                    has_close = True
            content += (name, b": ", value, b"\r\n")
        # Any bad byte in any name (value) is a bad byte in all of them joined.
        if HEADER_RE.search(b"".join(content[1::4])):
            raise RuntimeError("Invalid HTTP header name.")
        if HEADER_VALUE_RE.search(b"".join(content[3::4])):
            raise RuntimeError("Invalid HTTP header value.")
        if not self.keep_alive and not has_close:
            content.append(b"connection: close\r\n")
        unframed = self.chunked_encoding is None and status not in (204, 304)
        if unframed and self.scope["method"] != "HEAD":
            self.chunked_encoding = True
            content.append(b"transfer-encoding: chunked\r\n")
        content.append(b"\r\n")
        return b"".join(content)

    def _flush(self) -> None:
        """Write a head no body message followed within the loop turn."""
        head, self._pending = self._pending, b""
        if head and not self.transport.is_closing():
            self.transport.write(head)

    async def _send_body(self, message: Message) -> None:
        """The first body message: a framed-by-length one leaves with the pending head in one
        write; anything else after the head, as uvicorn sends it."""
        body: bytes = message.get("body", b"")
        if (
            message["type"] != "http.response.body"
            or self.chunked_encoding
            or self.scope["method"] == "HEAD"
            or len(body) > self.expected_content_length
            or self.flow.write_paused
            or self.disconnected
        ):
            self._flush()
            return await super().send(message)  # type: ignore[arg-type]
        head, self._pending = self._pending, b""
        self.expected_content_length -= len(body)
        self.transport.write(head + body if body else head)
        if not message.get("more_body", False):
            if self.expected_content_length != 0:
                raise RuntimeError("Response content shorter than Content-Length")
            self.response_complete = True
            self.message_event.set()
            if not self.keep_alive:
                self.transport.close()
            self.on_response()
