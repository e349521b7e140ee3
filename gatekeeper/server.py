"""The HTTP server: uvicorn's httptools protocol with bounds on every request head.

uvicorn bounds neither the size of a request head nor the time it may take to arrive, so a
client can hold a connection open for ever with a half-sent head, or make the server buffer
megabytes of headers. Here a head must arrive within `head_timeout` of its first byte (or of
the connection opening), and may hold at most `max_head_bytes` and `max_headers`; past a bound
the client gets 431 (too large) or 408 (too slow) and the connection is closed, before the app
sees anything. The header count is checked once the head is complete: the byte bound already
bounds what a long list of headers can hold meanwhile.

With `server.workers` > 1 each worker is one such server on the socket the supervisor bound
(`gatekeeper.supervisor`), so every bound, the connection cap included, holds per worker.
"""

from __future__ import annotations

import asyncio
import resource
import socket
from dataclasses import dataclass
from typing import Any

import httptools
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gatekeeper.asgi import ASGIApp
from gatekeeper.config.settings import Settings

_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}
# What a request line and a header line add beyond their text (": ", CRLF, spaces, version).
_LINE_OVERHEAD = 4
_REQUEST_LINE_OVERHEAD = 16
# How long a rejected connection keeps draining what the client still sends.
_LINGER_S = 2.0


@dataclass(frozen=True, slots=True)
class HeadLimits:
    """Bounds on one request head (`server.max-head-bytes`, `max-headers`, `head-timeout`)."""

    max_head_bytes: int = 16_384
    max_headers: int = 100
    head_timeout: float = 10.0


class _Rejected(Exception):
    """Raised inside a parser callback to stop parsing a head that was answered already."""


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol that enforces `limits` on every request head."""

    limits = HeadLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._awaiting_head = True
        self._head_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._rejected = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # A client that connects and sends nothing holds a connection too: the clock runs
        # from the connection, not from the first byte.
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._rejected:
            return
        if self._awaiting_head:
            self._head_bytes += len(data)
            if self._head_timer is None:
                self._arm_head_timer()
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError:
            if not self._rejected:
                msg = "Invalid HTTP request received."
                self.logger.warning(msg)
                self.send_400_response(msg)
            return
        # Still in the head after this chunk: the bytes so far are all head (a chunk that
        # finished the head reset the count), so this bounds what the parser buffers.
        if self._awaiting_head and self._head_bytes > self.limits.max_head_bytes:
            self._reject(431, "request head too large")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._awaiting_head = True

    def on_headers_complete(self) -> None:
        limits = self.limits
        if len(self.headers) > limits.max_headers:
            self._reject(431, "too many request headers")
            raise _Rejected
        # The bytes received since the head began bound its size from above (a chunk may carry
        # body bytes too): only when they pass the limit is the exact size worth computing.
        if self._head_bytes > limits.max_head_bytes and self._exact_head_size() > (
            limits.max_head_bytes
        ):
            self._reject(431, "request head too large")
            raise _Rejected
        self._awaiting_head = False
        self._head_bytes = 0
        self._cancel_head_timer()
        super().on_headers_complete()

    def _exact_head_size(self) -> int:
        size = len(self.url) + _REQUEST_LINE_OVERHEAD
        return size + sum(len(k) + len(v) + _LINE_OVERHEAD for k, v in self.headers)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._awaiting_head = True
        self._head_bytes = 0

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.limits.head_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self._awaiting_head or self.transport.is_closing():
            return
        if self._head_bytes:
            self._reject(408, "request head not received in time")
        else:
            self.transport.close()  # nothing was asked: nothing to answer

    def _reject(self, status: int, message: str) -> None:
        """Answer `status` with `message` and close, once; the app never sees the request."""
        if self._rejected:
            return
        self._rejected = True
        self._cancel_head_timer()
        body = message.encode("ascii")
        head = b"HTTP/1.1 %d %s\r\n" % (status, _REASONS[status])
        head += b"content-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
        head += b"content-length: %d\r\n\r\n" % len(body)
        self.logger.info("%s (%d): closing the connection", message, status)
        transport = self.transport
        if transport.is_closing():
            return
        transport.write(head + body)
        if not transport.can_write_eof():
            transport.close()
            return
        # A lingering close: closing with the client's unread bytes in the socket would send a
        # reset that can destroy the answer before it is read, so the write side is shut and
        # what still arrives is discarded, for a moment.
        transport.write_eof()
        self.loop.call_later(_LINGER_S, transport.close)


def limited_protocol(limits: HeadLimits) -> type[LimitedHttpToolsProtocol]:
    """The protocol class for uvicorn's `http=` option, with these head limits."""
    return type("GatekeeperHttpProtocol", (LimitedHttpToolsProtocol,), {"limits": limits})


def connection_cap(settings: Settings) -> int:
    """`server.max-connections`, or with 0 what the open-file limit leaves for clients; per
    process, so with `server.workers` > 1 it is each worker's cap (the open-file limit is
    each process's own too).

    Each client connection is a file descriptor; so are the origin and Redis pools. Past the
    cap uvicorn answers 503 instead of failing to accept (which would lock everyone out).
    """
    if settings.server.max_connections:
        return settings.server.max_connections
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    reserve = settings.proxy.pool_size + settings.redis.pool_size + 64
    return max(64, soft - reserve)


def serve(
    app: ASGIApp, settings: Settings, log_level: str, sock: socket.socket | None = None
) -> None:
    """Serve `app` with uvicorn until SIGTERM/SIGINT (a graceful shutdown: requests in flight
    finish, then the lifespan stops the grant loop and closes the store); on `sock` when
    given (a worker's listening socket, bound by the supervisor), else on host and port."""
    s = settings.server
    limits = HeadLimits(s.max_head_bytes, s.max_headers, s.head_timeout)
    config = uvicorn.Config(
        app,
        host=s.host,
        port=s.port,
        http=limited_protocol(limits),
        limit_concurrency=connection_cap(settings),
        lifespan="on",
        log_config=None,
        log_level=log_level,
        timeout_graceful_shutdown=int(s.graceful_timeout),
        # Waiting pages poll every 1–20 s: with uvicorn's 5 s default, most polls would open
        # (and, behind TLS, negotiate) a new connection.
        timeout_keep_alive=max(1, int(s.keep_alive)),
        # Client addresses come from the socket; trusted forwarders are the gate's concern.
        proxy_headers=False,
        server_header=False,
        # WebSockets: the sans-I/O server (back-pressure both ways, and the HTTP answer to an
        # upgrade the gate refuses); a client's message is bounded like the origin's.
        ws="websockets-sansio",
        ws_max_size=settings.proxy.websocket_max_message,
        # The origin's Date passes through the proxy; a second one would be a duplicate.
        date_header=not settings.gate.origin,
    )
    uvicorn.Server(config).run(sockets=None if sock is None else [sock])
