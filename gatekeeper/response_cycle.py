"""One request and its answer on a connection: the ASGI `receive` and `send` of `server`.

What uvicorn's request-response cycle does, with less per request: the head waits for the
first body message and leaves with it in one write (or at the end of the loop turn, for an app
that streams), header names and values are checked in one regex pass each, and the state is
slots.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from logging import Logger
from typing import Protocol

from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import HEADER_RE, HEADER_VALUE_RE, STATUS_LINE
from uvicorn.protocols.utils import get_client_addr, get_path_with_query_string
from uvicorn.server import ServerState

from gatekeeper.asgi import ASGIApp, Headers, Message, Scope

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_DISCONNECT: Message = {"type": "http.disconnect"}
# A body this large leaves in its own write: joining it to the head would copy it.
_JOIN_BELOW = 65_536


def _nothing() -> None:
    pass


class Connection(Protocol):
    """What a cycle uses of the connection it answers on (`server`'s protocol)."""

    transport: asyncio.Transport
    flow: FlowControl
    loop: asyncio.AbstractEventLoop
    logger: Logger
    access_logger: Logger
    access_log: bool
    server_state: ServerState

    def on_response_complete(self) -> None: ...


class ResponseCycle:
    """The state of one request and its answer (uvicorn's `RequestResponseCycle` names, which
    the protocol and uvicorn's connection handling use)."""

    __slots__ = (
        "scope", "transport", "flow", "loop", "logger", "access_logger", "default_headers",
        "message_event", "waiting_for_100_continue", "keep_alive", "on_response",
        "disconnected", "body", "more_body", "response_started", "response_complete",
        "chunked_encoding", "expected_content_length", "_pending",
    )  # fmt: skip

    def __init__(self, protocol: Connection, scope: Scope, keep_alive: bool, expect: bool) -> None:
        self.scope = scope
        self.transport = protocol.transport
        self.flow = protocol.flow
        self.loop = protocol.loop
        self.logger = protocol.logger
        # uvicorn's access line, when its access log is on (`gatekeeper run` at info or below).
        self.access_logger = protocol.access_logger if protocol.access_log else None
        self.default_headers: Headers = protocol.server_state.default_headers
        self.message_event = asyncio.Event()
        self.waiting_for_100_continue = expect
        self.keep_alive = keep_alive
        self.on_response: Callable[[], None] = protocol.on_response_complete
        self.disconnected = False
        self.body = b""
        self.more_body = True
        self.response_started = False
        self.response_complete = False
        self.chunked_encoding: bool | None = None
        self.expected_content_length = 0
        self._pending = b""

    async def run_asgi(self, app: ASGIApp) -> None:
        """Run the app on this request; an error before the answer began is a 500."""
        try:
            result = await app(self.scope, self.receive, self.send)  # type: ignore[func-returns-value]
        except BaseException as exc:
            self.logger.error("Exception in ASGI application\n", exc_info=exc)
            if not self.response_started:
                await self._send_500()
            else:
                self.transport.close()
        else:
            if result is not None:
                self.logger.error("ASGI callable should return None, but returned '%s'.", result)
                self.transport.close()
            elif not self.response_started and not self.disconnected:
                self.logger.error("ASGI callable returned without starting response.")
                await self._send_500()
            elif not self.response_complete and not self.disconnected:
                self.logger.error("ASGI callable returned without completing response.")
                self.transport.close()
        finally:
            self.on_response = _nothing

    async def _send_500(self) -> None:
        headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"21"),
                   (b"connection", b"close")]  # fmt: skip
        await self.send({"type": "http.response.start", "status": 500, "headers": headers})
        await self.send({"type": "http.response.body", "body": b"Internal Server Error"})

    async def receive(self) -> Message:
        """The request's body, as it arrives; `http.disconnect` once the answer is complete
        or the client gone."""
        if self.waiting_for_100_continue and not self.transport.is_closing():
            self.transport.write(_CONTINUE)
            self.waiting_for_100_continue = False
        if not self.disconnected and not self.response_complete:
            self.flow.resume_reading()
            event = self.message_event
            if not event.is_set():
                await event.wait()
            event.clear()
        if self.disconnected or self.response_complete:
            return _DISCONNECT
        body, self.body = self.body, b""
        return {"type": "http.request", "body": body, "more_body": self.more_body}

    async def send(self, message: Message) -> None:
        """Write the answer: the head with the first body message, the body as it comes."""
        if self.flow.write_paused and not self.disconnected:
            await self.flow.drain()
        if self.disconnected:
            return
        kind = message["type"]
        if not self.response_started:
            if kind != "http.response.start":
                raise RuntimeError(
                    f"Expected ASGI message 'http.response.start', but got '{kind}'."
                )
            self.response_started = True
            self.waiting_for_100_continue = False
            if self.access_logger is not None:
                self._log_access(self.access_logger, message["status"])
            self._pending = self._head(message)
            self.loop.call_soon(self._flush)
        elif self.response_complete:
            raise RuntimeError(
                f"Unexpected ASGI message '{kind}' sent, after response already completed."
            )
        elif kind != "http.response.body":
            raise RuntimeError(f"Expected ASGI message 'http.response.body', but got '{kind}'.")
        else:
            self._write_body(message.get("body", b""), message.get("more_body", False))

    def _log_access(self, logger: Logger, status: int) -> None:
        scope = self.scope
        client = get_client_addr(scope)  # type: ignore[arg-type]
        path = get_path_with_query_string(scope)  # type: ignore[arg-type]
        logger.info(
            '%s - "%s %s HTTP/%s" %d', client, scope["method"], path, scope["http_version"], status
        )

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

    def _write_body(self, body: bytes, more_body: bool) -> None:
        if self.scope["method"] == "HEAD":
            self.expected_content_length = 0
            body = b""
        elif self.chunked_encoding:
            chunk = b"%x\r\n%b\r\n" % (len(body), body) if body else b""
            body = chunk if more_body else chunk + b"0\r\n\r\n"
        elif len(body) > self.expected_content_length:
            self._flush()
            raise RuntimeError("Response content longer than Content-Length")
        else:
            self.expected_content_length -= len(body)
        head, self._pending = self._pending, b""
        if head and len(body) >= _JOIN_BELOW:
            self.transport.write(head)
            head = b""
        if head or body:
            self.transport.write(head + body if head else body)
        if not more_body:
            if self.expected_content_length != 0:
                raise RuntimeError("Response content shorter than Content-Length")
            self.response_complete = True
            self.message_event.set()
            if not self.keep_alive:
                self.transport.close()
            self.on_response()
