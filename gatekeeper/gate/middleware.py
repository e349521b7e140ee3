"""WaitingRoom: the gate, as pure ASGI middleware around any ASGI app (or the reverse proxy)."""

from __future__ import annotations

import itertools
import logging
import secrets
import time
from collections.abc import Awaitable
from types import TracebackType
from urllib.parse import unquote

from gatekeeper.asgi import (
    ASGIApp,
    Headers,
    Message,
    Receive,
    Scope,
    Send,
    header,
    send_bytes,
    send_error,
    send_json,
    wants_json,
)
from gatekeeper.clock import Clock, wall_clock
from gatekeeper.config import Settings, load_config
from gatekeeper.core.rooms import estimated_wait_seconds
from gatekeeper.errors import StoreError
from gatekeeper.gate.admission import ABSENT, LET_THROUGH, PASS, WAITING, Admission, KnownHeader
from gatekeeper.gate.cookies import read_cookie, strip_cookie
from gatekeeper.gate.paths import PathRules
from gatekeeper.gate.proof import make_proof
from gatekeeper.runtime import Runtime, serve_lifespan
from gatekeeper.store.base import Ticket
from gatekeeper.web.pages import PageRenderer, WaitingView, static_file

log = logging.getLogger("gatekeeper.gate")

COMMAND_HEADER = b"x-gatekeeper-command"
REQUEST_ID = b"x-request-id"
RETRY_AFTER_DOWN = 5
_HTML = b"text/html; charset=utf-8"
# Routing decisions remembered per (path, raw path); cleared when full (paths are unbounded).
_ROUTES_MAX = 4096


class WaitingRoom:
    """The gate: visitors without a place wait on a page; admitted visitors reach `app`.

    `WaitingRoom(app, settings)` wraps any ASGI app; `WaitingRoom(ReverseProxy(origin), ...)` is
    proxy mode. The gate's JSON API and assets are served beside the app, and the store and
    grant loop start and stop with the app's lifespan (or `async with waiting_room:`).
    """

    def __init__(
        self,
        app: ASGIApp,
        settings: Settings | None = None,
        *,
        runtime: Runtime | None = None,
        clock: Clock | None = None,
    ) -> None:
        if runtime is None:
            runtime = Runtime(settings or load_config(), clock=clock)
        self.app = app
        self.runtime = runtime
        self.settings = settings = runtime.settings
        gate = settings.gate
        self._clock = clock or wall_clock
        self.admission = Admission(runtime, self._clock)
        self.codec = self.admission.codec
        self.rules = PathRules(gate, settings.rooms.default_room)
        self.pages = PageRenderer(gate.waiting_template or None)
        self._cookie = gate.cookie
        self._static = gate.static_prefix.rstrip("/")
        self._default = settings.rooms.default_room
        self._auth_path = self._static + "/auth"
        self._proof_header = gate.proof_header.lower().encode()
        self._proof_secret = settings.proof_secret.encode() if settings.proof_secret else None
        self._waiting_status = gate.waiting_status
        self._metrics = runtime.metrics
        self._id_prefix = secrets.token_hex(10).encode()
        self._ids = itertools.count()
        self._own_prefixes = runtime.prefixes
        # Routing depends on the path alone unless client IPs or User-Agents may bypass.
        self._routes_cacheable = not self.rules.per_client
        self._routes: dict[tuple[str, object], tuple[str | None, bool]] = {}

    async def __aenter__(self) -> WaitingRoom:
        await self.runtime.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.runtime.stop()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            path: str = scope["path"]
            if path.startswith(self._own_prefixes):
                if path == self._auth_path:
                    return await self._auth(scope, send)
                if await self.runtime.handle(scope, receive, send, root=False):
                    return
                if path.startswith(self._static + "/"):
                    return await self._static_file(send, path[len(self._static) :])
        elif kind == "lifespan":
            return await self._lifespan(scope, receive, send)
        elif kind != "websocket":
            return await self.app(scope, receive, send)
        room, done = self._route(scope)
        if room is None:
            self._metrics.decision("bypass")
            bypass: Scope = dict(scope)
            bypass["headers"] = self._with_request_id(scope["headers"])
            return await self._measured(bypass, receive, send)
        if kind == "http":
            quick = self._quick(scope, room)
            if quick is not None:
                return await self._respond(quick[1], receive, send, room, done, quick[0], None)
        await self._gate(scope, receive, send, room, done)

    def _route(self, scope: Scope) -> tuple[str | None, bool]:
        """The room gating the request (None: bypass) and whether its path is a done path."""
        key = None
        if self._routes_cacheable:
            key = (scope["path"], scope.get("raw_path"))
            found = self._routes.get(key)
            if found is not None:
                return found
        room = self.rules.room_for(scope)
        if room is not None:
            # A room named by the path that the config does not allow queues in the default.
            room = self.runtime.rooms.resolve(room) or self._default
        route = (room, self.rules.is_done(scope["path"]))
        if key is not None:
            if len(self._routes) >= _ROUTES_MAX:
                self._routes.clear()
            self._routes[key] = route
        return route

    def _quick(self, scope: Scope, room: str) -> tuple[str, Scope] | None:
        """The hot path: an admitted visitor whose one Cookie header was seen with a fresh pass.

        Returns the session and the scope to forward (our cookies and any client-made proof
        header removed, proof and request id added), or None when `decide` must look. One
        pass over the headers does both the lookup and the rewrite.
        """
        out: Headers = []
        at = -1
        has_id = False
        proof = self._proof_header
        for item in scope["headers"]:
            key = item[0].lower()
            if key == b"cookie":
                if at >= 0:
                    return None  # several Cookie headers: the full path reads them all
                at = len(out)
                out.append(item)
            elif key == REQUEST_ID:
                has_id = True
                out.append(item)
            elif key != proof:
                out.append(item)
        if at < 0:
            return None
        name, raw = out[at]
        quick = self.admission.quick_pass(room, raw, self._clock())
        if quick is None:
            return None
        sid, known = quick
        if known.forwarded is None:
            del out[at]
        else:
            out[at] = (name, known.forwarded)
        self._finish_headers(out, sid, has_id)
        inner = dict(scope)
        inner["headers"] = out
        self._metrics.decision(PASS)
        return sid, inner

    def cookie_name(self, room: str) -> str:
        """The cookie holding a visitor's session in `room` (one cookie per room)."""
        return self.admission.cookie_name(room)

    async def _gate(
        self, scope: Scope, receive: Receive, send: Send, room: str, done: bool
    ) -> None:
        headers = scope["headers"]
        d = await self.admission.decide(room, headers)
        self._metrics.decision(d.verdict)
        if d.verdict in LET_THROUGH:
            if d.verdict == PASS and d.cookie is None:
                self._remember_header(room, headers)
            return await self._forward(scope, receive, send, room, done, d.session_id, d.cookie)
        if d.verdict == WAITING and d.ticket is not None:
            return await self._waiting(scope, send, d.ticket, d.cookie)
        await self._unavailable(scope, send)

    def _remember_header(self, room: str, headers: Headers) -> None:
        """Remember the request's single Cookie header as one that carries a pass (for `_quick`)."""
        cookies = [value for key, value in headers if key.lower() == b"cookie"]
        if len(cookies) != 1:
            return
        raw = bytes(cookies[0])
        value = read_cookie([(b"cookie", raw)], self.cookie_name(room))
        if value is not None:
            rest = strip_cookie([(b"cookie", raw)], self._cookie.name, family=True)
            self.admission.remember(room, raw, KnownHeader(value, rest[0][1] if rest else None))

    async def _auth(self, scope: Scope, send: Send) -> None:
        """The `auth_request` answer for the request nginx (Traefik, Envoy) is about to proxy.

        200 lets it through (with Set-Cookie to pass on when the pass was renewed, and
        X-Accel-Expires so nginx may cache the answer until the pass runs out); 401 sends it
        to the gate itself, which queues newcomers and shows the waiting page. The original
        URI comes in X-Original-URI. This endpoint never joins, so a visitor gets one session.
        """
        uri = header(scope, b"x-original-uri") or b"/"
        raw_path = uri.split(b"?", 1)[0]
        original = {
            "type": "http",
            "path": unquote(raw_path.decode("latin-1")),
            "raw_path": raw_path,
            "headers": scope["headers"],
            "client": scope.get("client"),
        }
        room = self.rules.room_for(original)
        if room is None:
            self._metrics.decision("bypass")
            return await _auth_answer(send, 200, 0, None)
        room = self.runtime.rooms.resolve(room) or self._default
        d = await self.admission.decide(room, scope["headers"], join=False)
        if d.verdict not in LET_THROUGH:
            self._metrics.decision("waiting" if d.verdict == ABSENT else d.verdict)
            return await _auth_answer(send, 401, 0, d.cookie)
        self._metrics.decision(d.verdict)
        ttl = 0
        if d.cookie is None and d.pass_until_ms:
            ttl = max(0, (d.pass_until_ms - self._clock()) // 1000)
        await _auth_answer(send, 200, ttl, d.cookie)

    async def _forward(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        room: str,
        done: bool,
        session_id: str,
        cookie: tuple[bytes, bytes] | None,
    ) -> None:
        # The origin never sees our cookies, nor a client-made copy of the proof header.
        out = strip_cookie(scope["headers"], self._cookie.name, family=True)
        out = [(k, v) for k, v in out if k.lower() != self._proof_header]
        has_id = any(k == REQUEST_ID for k, _ in out)
        self._finish_headers(out, session_id, has_id)
        inner = dict(scope)
        inner["headers"] = out
        if scope["type"] != "http":
            return await self.app(inner, receive, send)
        await self._respond(inner, receive, send, room, done, session_id, cookie)

    def _finish_headers(self, out: Headers, session_id: str, has_id: bool) -> None:
        """Add the proof (when configured) and a request id (unless the client sent one)."""
        if self._proof_secret is not None:
            proof = make_proof(self._proof_secret, session_id, self._clock() // 1000)
            out.append((self._proof_header, proof.encode()))
        if not has_id:
            out.append(self._request_id())

    def _request_id(self) -> tuple[bytes, bytes]:
        # One id follows a request from the gate into the origin's logs: unique per process
        # start and request, and cheaper than uuid4 (no random bytes per request).
        return (REQUEST_ID, b"%s%012x" % (self._id_prefix, next(self._ids)))

    async def _respond(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        room: str,
        done: bool,
        session_id: str,
        cookie: tuple[bytes, bytes] | None,
    ) -> None:
        """Run the app for an admitted visitor: pass a renewed cookie on, obey the origin's
        leave command and done paths, and count the response (status, time)."""
        started = time.perf_counter()
        status = 0
        leave: str | None = None

        # A plain function handing back `send`'s awaitable: no extra coroutine frame for
        # every message of every admitted request.
        def send_through(message: Message) -> Awaitable[None]:
            nonlocal leave, status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = message.get("headers", ())
                commanded = False
                for key, _ in headers:
                    if key.lower() == COMMAND_HEADER:
                        commanded = True
                        break
                if commanded or cookie is not None or (done and 200 <= status < 300):
                    out: Headers = []
                    for key, value in headers:
                        if key.lower() != COMMAND_HEADER:
                            out.append((key, value))
                        elif value.strip().lower() == b"leave":
                            leave = "origin_command"
                    if done and 200 <= status < 300:
                        leave = leave or "done_path"
                    if leave is not None:
                        # The pass ends with the place: the next request starts over in line.
                        out.append(self.admission.set_cookie(room, session_id, 0))
                    elif cookie is not None:
                        out.append(cookie)
                    message = {**message, "headers": out}
            return send(message)

        try:
            await self.app(scope, receive, send_through)
        finally:
            self._metrics.response(status or 500, time.perf_counter() - started)
        if leave is not None:
            await self._leave(room, session_id, leave)

    async def _measured(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app, counting its response status and time (for the proxy metrics)."""
        started = time.perf_counter()
        status = 0

        def send_through(message: Message) -> Awaitable[None]:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            return send(message)

        try:
            await self.app(scope, receive, send_through)
        finally:
            self._metrics.response(status or 500, time.perf_counter() - started)

    def _with_request_id(self, headers: Headers) -> Headers:
        for key, _ in headers:
            if key == REQUEST_ID:
                return headers
        return [*headers, self._request_id()]

    async def _leave(self, room: str, session_id: str, reason: str) -> None:
        try:
            await self.runtime.store.leave(session_id, self.runtime.rooms.policy(room))
        except StoreError as exc:
            self._metrics.store_errors.labels("gate").inc()
            log.warning("could not release %s: %s", session_id, exc)
        else:
            self._metrics.leaves.labels(room, reason).inc()

    async def _waiting(
        self, scope: Scope, send: Send, ticket: Ticket, cookie: tuple[bytes, bytes] | None
    ) -> None:
        poll_ms = self.runtime.rooms.poll_after_ms(ticket)
        headers: Headers = [(b"retry-after", str(max(1, poll_ms // 1000)).encode())]
        if cookie is not None:
            headers.append(cookie)
        if scope["type"] != "http":
            await send({"type": "websocket.close", "code": 1013})
            return
        if wants_json(scope):
            body = self.runtime.rooms.status_body(ticket)
            return await send_json(send, self._waiting_status, body, headers)
        view = WaitingView(
            session_id=ticket.session_id,
            status=ticket.status.value,
            position=ticket.ahead,
            estimated_wait_seconds=estimated_wait_seconds(ticket),
            poll_after_ms=poll_ms,
            status_url=self.runtime.api.session_url(ticket.session_id),
            static_prefix=self._static + "/static",
            room=ticket.room,
        )
        html = self.pages.render_waiting(view)
        await send_bytes(send, self._waiting_status, html, _HTML, headers)

    async def _unavailable(self, scope: Scope, send: Send) -> None:
        """The "we'll be right back" answer: 503 with Retry-After, HTML or JSON."""
        retry = [(b"retry-after", str(RETRY_AFTER_DOWN).encode())]
        if scope["type"] != "http":
            await send({"type": "websocket.close", "code": 1013})
        elif wants_json(scope):
            await send_error(send, 503, "store_unavailable", "try again shortly", retry)
        else:
            html = self.pages.render_unavailable(RETRY_AFTER_DOWN)
            await send_bytes(send, 503, html, _HTML, retry)

    async def _static_file(self, send: Send, sub: str) -> None:
        if sub.startswith("/static/"):
            found = static_file(sub[len("/static/") :])
            if found is not None:
                content, content_type = found
                # Links carry a content hash (?v=…), so the files may be cached for long.
                cache = (b"cache-control", b"public, max-age=86400")
                start = {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", content_type.encode()),
                        (b"content-length", str(len(content)).encode()),
                        cache,
                    ],
                }
                await send(start)
                await send({"type": "http.response.body", "body": content})
                return
        await send_error(send, 404, "not_found", "no such endpoint")

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def receive_through() -> Message:
            nonlocal started
            message = await receive()
            if message["type"] == "lifespan.startup":
                started = True
                await self.runtime.start()
            return message

        async def send_through(message: Message) -> None:
            if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                await self.runtime.stop()
            await send(message)

        try:
            await self.app(scope, receive_through, send_through)
        except Exception:
            if started:
                raise
            # The wrapped app has no lifespan support: run ours alone.
            await serve_lifespan(self.runtime, receive, send)


async def _auth_answer(
    send: Send, status: int, ttl: int, cookie: tuple[bytes, bytes] | None
) -> None:
    # X-Accel-Expires must come before any Cache-Control: nginx reads the headers in order and
    # a `no-store` seen first would make the answer uncacheable whatever follows. An answer
    # that sets a cookie is never cached (ttl 0).
    headers: Headers = [(b"x-accel-expires", str(ttl).encode()), (b"content-length", b"0")]
    if cookie is not None:
        headers.append(cookie)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b""})
