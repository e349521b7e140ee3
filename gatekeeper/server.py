"""The HTTP server: uvicorn's httptools protocol with bounds on every request head.

uvicorn bounds neither the size of a request head nor the time it may take to arrive, so a
client can hold a connection open for ever with a half-sent head, or make the server buffer
megabytes of headers. Here a head must arrive within `head_timeout` of its first byte (or of
the connection opening), and may hold at most `max_head_bytes` and `max_headers`; past a bound
the client gets 431 (too large) or 408 (too slow) and the connection is closed, before the app
sees anything (the header count once the head is complete: the byte bound holds meanwhile).
It also answers in fewer writes and timers than uvicorn's own (`response_cycle`, keep-alive
and head timers below).

With `server.workers` > 1 each worker is one such server on the socket the supervisor bound
(`gatekeeper.supervisor`), so every bound, the connection cap included, holds per worker.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import socket
import urllib.parse
from dataclasses import dataclass
from typing import Any, cast

import httptools
import uvicorn
from uvicorn.config import LOG_LEVELS
from uvicorn.protocols.http.flow_control import service_unavailable
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gatekeeper.asgi import ASGIApp, Scope
from gatekeeper.config.settings import Settings
from gatekeeper.proxy.forwarder import DISCONNECT
from gatekeeper.response_cycle import ResponseCycle

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
        self._head_since: float | None = None  # when the head in progress began
        self._rejected = False
        # One per connection: its requests come one at a time.
        self._hook: dict[object, object] = {}
        self._extensions = {DISCONNECT: self._hook}

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # A client that sends nothing holds a connection too: the clock runs from the connection.
        self._start_head_clock()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        if self.timeout_keep_alive_task is not None:
            self.timeout_keep_alive_task.cancel()
        super().connection_lost(exc)
        callback = self._hook.pop("callback", None)
        if callable(callback):
            callback()

    def data_received(self, data: bytes) -> None:
        if self._rejected:
            return
        if self._awaiting_head:
            self._head_bytes += len(data)
            if self._head_since is None:
                self._start_head_clock()
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
        # Still in the head: every byte so far is head, which bounds what the parser buffers.
        if self._awaiting_head and self._head_bytes > self.limits.max_head_bytes:
            self._reject(431, "request head too large")

    def on_message_begin(self) -> None:
        self.url = b""
        self.expect_100_continue = False
        self.headers = []
        scope: Scope = {
            "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1", "server": self.server, "client": self.client,
            "scheme": self.scheme, "root_path": self.root_path, "headers": self.headers,
            "state": self.app_state.copy(), "extensions": self._extensions,
        }  # fmt: skip
        self.scope = scope  # type: ignore[assignment]
        self._awaiting_head = True

    def on_headers_complete(self) -> None:
        limits = self.limits
        if len(self.headers) > limits.max_headers:
            self._reject(431, "too many request headers")
            raise _Rejected
        # The bytes since the head began bound its size from above (a chunk may carry body
        # bytes): only past the limit is the exact size worth computing.
        if self._head_bytes > limits.max_head_bytes and self._exact_head_size() > (
            limits.max_head_bytes
        ):
            self._reject(431, "request head too large")
            raise _Rejected
        self._awaiting_head = False
        self._head_bytes = 0
        self._head_since = None  # the timer, when it fires, finds no head in progress
        self._start_cycle()

    def _start_cycle(self) -> None:
        """uvicorn's on_headers_complete, with `ResponseCycle` as the request-response cycle."""
        parser, scope = self.parser, cast(Scope, self.scope)
        http_version = parser.get_http_version()
        scope["method"] = parser.get_method().decode("ascii")
        if http_version != "1.1":
            scope["http_version"] = http_version
        if parser.should_upgrade() and self._should_upgrade():
            return
        parsed = httptools.parse_url(self.url)
        raw_path = parsed.path
        path = raw_path.decode("ascii")
        if "%" in path:
            path = urllib.parse.unquote(path)
        root = self.root_path
        scope["path"] = root + path if root else path
        scope["raw_path"] = root.encode("ascii") + raw_path if root else raw_path
        scope["query_string"] = parsed.query or b""
        app = self.app
        cap = self.limit_concurrency
        if cap is not None and (len(self.connections) >= cap or len(self.tasks) >= cap):
            app = service_unavailable
            self.logger.warning("Exceeded concurrency limit.")
        existing = self.cycle
        keep_alive = http_version != "1.0" and parser.should_keep_alive()
        cycle = ResponseCycle(self, scope, keep_alive, self.expect_100_continue)
        self.cycle = cycle  # type: ignore[assignment]
        if existing is None or existing.response_complete:
            self._start_asgi_task(cycle, app)  # type: ignore[arg-type]
        else:
            # Pipelined requests wait for the one before them.
            self.flow.pause_reading()
            self.pipeline.appendleft((cycle, app))  # type: ignore[arg-type]

    # Keep-alive: one timer per connection, re-armed when it fires early (uvicorn: one per answer).
    _idle_since: float | None = None

    def _unset_keepalive_if_required(self) -> None:
        self._idle_since = None  # busy: the armed timer, when it fires, leaves the connection

    def on_response_complete(self) -> None:
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self._idle_since = None
        self.flow.resume_reading()
        if self.pipeline:
            return self._start_asgi_task(*self.pipeline.pop())
        self._idle_since = self.loop.time()
        if self.timeout_keep_alive_task is None:
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self._keep_alive_expired
            )

    def _keep_alive_expired(self) -> None:
        self.timeout_keep_alive_task = None
        since = self._idle_since
        if since is None:
            return  # busy now; the response that ends it arms the timer again
        left = since + self.timeout_keep_alive - self.loop.time()
        if left > 0:
            self.timeout_keep_alive_task = self.loop.call_later(left, self._keep_alive_expired)
        else:
            self.timeout_keep_alive_handler()

    def _exact_head_size(self) -> int:
        size = len(self.url) + _REQUEST_LINE_OVERHEAD
        return size + sum(len(k) + len(v) + _LINE_OVERHEAD for k, v in self.headers)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._awaiting_head = True
        self._head_bytes = 0

    def _start_head_clock(self) -> None:
        # One timer per connection, re-armed when it fires early, rather than one per request.
        self._head_since = self.loop.time()
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.limits.head_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        since = self._head_since
        if since is None or not self._awaiting_head or self.transport.is_closing():
            return  # no head in progress: the next one starts the clock again
        left = since + self.limits.head_timeout - self.loop.time()
        if left > 0:
            self._head_timer = self.loop.call_later(left, self._head_timed_out)
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
        # Below info access lines are dropped: off, uvicorn skips their work on every answer.
        access_log=LOG_LEVELS.get(log_level.lower(), logging.INFO) <= logging.INFO,
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
