"""ReverseProxy: a pure ASGI app that forwards every request to one origin."""

from __future__ import annotations

import asyncio
import json
from urllib.parse import quote

from gatekeeper.asgi import Headers, Message, Receive, Scope, Send, prefers_json
from gatekeeper.clients import trust_checker
from gatekeeper.config.settings import HostHeader, ProxyClient, ProxySettings
from gatekeeper.errors import ConfigError, OriginError, OriginTimeout
from gatekeeper.proxy.aiohttp_client import AiohttpUpstream
from gatekeeper.proxy.h1.client import H1Upstream
from gatekeeper.proxy.upstream import Upstream, UpstreamResponse
from gatekeeper.proxy.websocket import OriginRefused, OriginSockets, accept_message, relay

_HOP_BY_HOP = frozenset(
    b"connection keep-alive proxy-authenticate proxy-authorization proxy-connection te trailer"
    b" transfer-encoding upgrade".split()
)
# Request headers the proxy always sets itself; from an untrusted client also its forwarding claims.
_DROP_TRUSTED = _HOP_BY_HOP | {b"host", b"content-length", b"x-forwarded-for"}
_DROP_UNTRUSTED = _DROP_TRUSTED | {b"forwarded", b"x-forwarded-proto", b"x-forwarded-host"}
_NO_BODY_STATUSES = frozenset({204, 304})
_PATH_SAFE = "/:@!$&'()*+,;=~"
# A scope extension (gatekeeper.server's protocol offers it): an app that puts a callable under
# "callback" in its dict has it called once the client's connection is lost, so no task need
# wait in receive() for `http.disconnect`.
DISCONNECT = "gatekeeper.disconnect"
CLIENTS: dict[ProxyClient, type[H1Upstream | AiohttpUpstream]] = {
    ProxyClient.BUILTIN: H1Upstream,
    ProxyClient.AIOHTTP: AiohttpUpstream,
}
"""The origin client class for each `proxy.client` value."""


class ReverseProxy:
    """ASGI app forwarding every HTTP request to `origin`, streaming both bodies, and every
    WebSocket, relaying its messages both ways."""

    def __init__(
        self, origin: str, settings: ProxySettings | None = None, upstream: Upstream | None = None
    ) -> None:
        if not origin.startswith(("http://", "https://")):
            raise ConfigError(f"gate.origin must be an http(s) URL: {origin!r}")
        self._origin = origin
        self._settings = settings = settings or ProxySettings()
        self._upstream = upstream
        self._preserve_host = settings.host_header is HostHeader.PRESERVE
        self._is_trusted = trust_checker(settings.trusted_proxies)
        self._sockets = OriginSockets(origin, settings)

    @property
    def upstream(self) -> Upstream | None:
        """The upstream in use, once opened (or as injected)."""
        return self._upstream

    async def _open(self) -> Upstream:
        if self._upstream is None:
            client = CLIENTS[self._settings.client]
            upstream = self._upstream = client(self._origin, self._settings)
            await upstream.open()
        return self._upstream

    async def aclose(self) -> None:
        """Close the upstream's connections; a later request reopens them."""
        if self._upstream is not None:
            await self._upstream.aclose()

    async def __aenter__(self) -> ReverseProxy:
        await self._open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            while (await receive())["type"] == "lifespan.startup":
                await self._open()
                await send({"type": "lifespan.startup.complete"})
            await self.aclose()
            await send({"type": "lifespan.shutdown.complete"})
        elif kind == "websocket":
            await self._websocket(scope, receive, send)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Open the origin's WebSocket with the upgrade's headers (rewritten as for HTTP), then
        complete the client's upgrade as the origin completed ours and relay; an origin that
        refuses, fails or times out is answered as for HTTP, before the upgrade."""
        if (await receive())["type"] != "websocket.connect":
            return
        # X-Forwarded-Proto names the HTTP scheme, as for the page that opened the socket.
        secure = scope.get("scheme") == "wss"
        headers, _ = self._request_headers({**scope, "scheme": "https" if secure else "http"})
        try:
            connection = await self._sockets.open(
                _target(scope).decode("latin-1"), headers, scope.get("subprotocols") or ()
            )
        except OriginRefused as refused:
            headers = _response_headers(refused.headers, refused.status)
            return await _refuse(scope, send, refused.status, headers, refused.body)
        except OriginError as exc:
            status = 504 if isinstance(exc, OriginTimeout) else 502
            as_json, _ = _ERROR_PAGES[status]
            json_headers = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]
            return await _refuse(scope, send, status, json_headers, as_json)
        try:
            await send(accept_message(connection))
        except OSError:
            connection.transport.abort()  # the client left while the origin was answering
            return
        await relay(connection, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        upstream = self._upstream or await self._open()
        headers, length = self._request_headers(scope)
        target = _target(scope)
        first = await receive()
        if first["type"] == "http.disconnect":
            return
        exchange = _Exchange(receive, first, scope)
        try:
            try:
                response = await upstream.send(
                    scope["method"],
                    target.decode("latin-1"),
                    headers,
                    exchange if exchange.has_body else None,
                    None if length is None else int(length),
                )
            except OriginError as exc:
                if not exchange.gone:
                    await _send_error(scope, send, exc)
                return
            try:
                await _relay(response, send, exchange)
            except (OriginError, OSError):
                # The head is out, so returning unfinished is how to make the server abort the
                # response. OSError is how ASGI 2.4+ servers report a client that went away.
                return
            finally:
                await response.aclose()
        except asyncio.CancelledError:
            if exchange.gone and exchange.task.uncancel() == 0:
                return
            raise
        finally:
            exchange.finish()

    def _request_headers(self, scope: Scope) -> tuple[Headers, bytes | None]:
        client = scope.get("client")
        trusted = client is not None and self._is_trusted(client[0])
        drop = _DROP_TRUSTED if trusted else _DROP_UNTRUSTED
        out: Headers = []
        host = length = xff = None
        tokens: set[bytes] | None = None
        has_proto = has_host = False
        for name, value in scope["headers"]:
            if name in drop:
                if name == b"host":
                    host = value
                elif name == b"content-length":
                    length = value
                elif name == b"connection":
                    tokens = _connection_tokens(value, tokens)
                elif name == b"x-forwarded-for" and trusted:
                    xff = value if xff is None else xff + b", " + value
                continue
            if name.startswith(b"x-forwarded-"):
                if not trusted:
                    continue
                has_proto = has_proto or name == b"x-forwarded-proto"
                has_host = has_host or name == b"x-forwarded-host"
            out.append((name, value))
        if tokens:
            out = [item for item in out if item[0] not in tokens]
            xff = None if b"x-forwarded-for" in tokens else xff
            has_proto = has_proto and b"x-forwarded-proto" not in tokens
            has_host = has_host and b"x-forwarded-host" not in tokens
        if host is not None:
            if self._preserve_host:
                out.append((b"host", host))
            if not has_host:
                out.append((b"x-forwarded-host", host))
        if client is not None:
            ip = client[0].encode("latin-1")
            out.append((b"x-forwarded-for", ip if xff is None else xff + b", " + ip))
        if not has_proto:
            out.append((b"x-forwarded-proto", scope.get("scheme", "http").encode("latin-1")))
        return out, length


def _target(scope: Scope) -> bytes:
    """The request target as the client sent it: raw path and query."""
    target: bytes = scope.get("raw_path") or quote(scope["path"], safe=_PATH_SAFE).encode()
    if query := scope.get("query_string"):
        target += b"?" + query
    return target


async def _relay(response: UpstreamResponse, send: Send, exchange: _Exchange) -> None:
    headers = _response_headers(response.headers, response.status)
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    async for chunk in response.body():
        if response.ended:
            # The last chunk ends the response: one body message (and with the head, for a
            # server that holds it, one write) instead of two.
            exchange.finished = True
            await send({"type": "http.response.body", "body": chunk, "more_body": False})
            return
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    exchange.finished = True
    await send({"type": "http.response.body", "body": b"", "more_body": False})


class _ClientGone(Exception):
    """The client disconnected while its request body was being forwarded."""


class _Exchange:
    """One request's body stream (iterate it) and the watch for its client disconnecting."""

    __slots__ = ("_receive", "_first", "_more", "_watcher", "_hook", "task", "gone", "finished")

    def __init__(self, receive: Receive, first: Message, scope: Scope) -> None:
        self._receive = receive
        self._first: bytes = first.get("body", b"")
        self._more: bool = first.get("more_body", False)
        self._watcher: asyncio.Task[None] | None = None
        # A server offering the disconnect hook (gatekeeper.server's) calls back when the
        # client is gone: no task per request waiting in receive() to find out.
        extensions = scope.get("extensions")
        hook = extensions.get(DISCONNECT) if extensions else None
        self._hook: dict[str, object] | None = hook if isinstance(hook, dict) else None
        task = asyncio.current_task()
        assert task is not None
        self.task = task
        self.gone = self.finished = False
        if not self._more:
            self._watch()

    @property
    def has_body(self) -> bool:
        return self._more or bool(self._first)

    def __aiter__(self) -> _Exchange:
        return self

    async def __anext__(self) -> bytes:
        if first := self._first:
            self._first = b""
            return first
        while self._more:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                self._abort()
                raise _ClientGone
            self._more = message.get("more_body", False)
            if not self._more:
                self._watch()
            chunk: bytes = message.get("body", b"")
            if chunk:
                return chunk
        raise StopAsyncIteration

    def _watch(self) -> None:
        if self._hook is not None:
            self._hook["callback"] = self._abort
            return
        # Once the body is read, receive() returns only when the client disconnects.
        self._watcher = asyncio.create_task(self._wait_for_disconnect())

    async def _wait_for_disconnect(self) -> None:
        while (await self._receive())["type"] != "http.disconnect":
            pass
        self._abort()

    def _abort(self) -> None:
        # Cancelling the request's task interrupts it wherever it waits (pool, origin,
        # back-pressure) and so frees the upstream connection; _http turns it into a return.
        if not (self.gone or self.finished):
            self.gone = True
            self.task.cancel()

    def finish(self) -> None:
        self.finished = True
        if self._watcher is not None:
            self._watcher.cancel()
        elif self._hook is not None and self._hook.get("callback") == self._abort:
            del self._hook["callback"]


def _connection_tokens(value: bytes, tokens: set[bytes] | None) -> set[bytes]:
    found = {token.strip().lower() for token in value.split(b",")}
    return found if tokens is None else tokens | found


def _response_headers(raw: Headers, status: int) -> Headers:
    out: Headers = []
    tokens: set[bytes] | None = None
    for name, value in raw:
        name = name.lower()
        if name in _HOP_BY_HOP:
            if name == b"connection":
                tokens = _connection_tokens(value, tokens)
            continue
        out.append((name, value))
    if tokens:
        out = [item for item in out if item[0] not in tokens]
    if status in _NO_BODY_STATUSES:
        # The server would otherwise wait for a body these statuses never have.
        out = [item for item in out if item[0] != b"content-length"]
    return out


def _error_page(status: int, title: str, code: str, message: str) -> tuple[bytes, bytes]:
    as_json = json.dumps({"error": {"code": code, "message": message}}).encode()
    as_html = f"<!doctype html><title>{status} {title}</title><h1>{title}</h1><p>{message}</p>\n"
    return as_json, as_html.encode()


_ERROR_PAGES = {
    502: _error_page(502, "Bad Gateway", "bad_gateway", "The site cannot be reached."),
    504: _error_page(504, "Gateway Timeout", "gateway_timeout", "The site is too slow."),
}


async def _send_error(scope: Scope, send: Send, exc: OriginError) -> None:
    status = 504 if isinstance(exc, OriginTimeout) else 502
    as_json, as_html = _ERROR_PAGES[status]
    accept = next((value for name, value in scope["headers"] if name == b"accept"), b"")
    wants_json = prefers_json(accept)
    body = as_json if wants_json else as_html
    headers = [
        (b"content-type", b"application/json" if wants_json else b"text/html; charset=utf-8"),
        (b"content-length", b"%d" % len(body)),
        (b"cache-control", b"no-store"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _refuse(scope: Scope, send: Send, status: int, headers: Headers, body: bytes) -> None:
    """Answer a WebSocket upgrade with an HTTP response (ASGI's `websocket.http.response`),
    or where the server cannot, close it before accepting: 1014 "bad gateway" for an error
    of ours, 1008 for the origin's own refusal (servers answer that close with 403)."""
    if "websocket.http.response" not in scope.get("extensions", {}):
        code = 1014 if status in _ERROR_PAGES else 1008
        return await send({"type": "websocket.close", "code": code})
    start = {"type": "websocket.http.response.start", "status": status, "headers": headers}
    await send(start)
    await send({"type": "websocket.http.response.body", "body": body})
