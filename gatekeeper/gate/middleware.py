"""The gate as pure ASGI middleware: dispatch each request to its handler, and the lifespan."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Self

from gatekeeper.asgi import ASGIApp, Lifecycle, Message, Receive, Scope, Send, serve_lifespan
from gatekeeper.gate.admission import Admission, Admitted
from gatekeeper.gate.auth_request import AuthRequest
from gatekeeper.gate.bounce import Bounce
from gatekeeper.gate.enqueue_link import CLEANED, carries_token, redirect_without_token
from gatekeeper.gate.forwarding import Forwarding
from gatekeeper.gate.responses import Responses
from gatekeeper.gate.routes import Routes
from gatekeeper.metrics import Metrics
from gatekeeper.verdicts import LET_THROUGH, TURNED_AWAY, Verdict
from gatekeeper.web.endpoints import Endpoints

# Module-level: reading an enum member off its class costs a lookup on every request.
_PASS = Verdict.PASS
_BYPASS = Verdict.BYPASS
_WAITING = Verdict.WAITING
_ABSENT = Verdict.ABSENT


@dataclass(frozen=True, slots=True)
class GateParts:
    """What the gate dispatches to; built by `gatekeeper.app`, the composition root."""

    routes: Routes
    admission: Admission
    forwarding: Forwarding
    responses: Responses
    auth: AuthRequest
    endpoints: Endpoints
    metrics: Metrics
    lifecycle: Lifecycle
    bounce: Bounce


class Gate:
    """Visitors without a place wait on a page; admitted visitors reach the app.

    gatekeeper's own endpoints are served beside the app, and the lifecycle (store, grant
    loop) starts and stops with the app's lifespan.
    """

    def __init__(self, app: ASGIApp, parts: GateParts) -> None:
        self.app = app
        self.admission = parts.admission
        self._parts = parts
        self._routes = parts.routes
        self._forwarding = parts.forwarding
        self._endpoints = parts.endpoints
        self._metrics = parts.metrics
        self._own = parts.endpoints.prefixes
        # Without enqueue tokens a `gk-enqueue` parameter is the site's own: no need to look.
        self._links = parts.admission.invitations.active
        self._auth_path = parts.endpoints.own + "/auth"

    async def __aenter__(self) -> Self:
        await self._parts.lifecycle.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._parts.lifecycle.stop()

    def cookie_name(self, room: str) -> str:
        """The cookie holding a visitor's session in `room` (one cookie per room)."""
        return self.admission.cookie_name(room)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            path: str = scope["path"]
            if path.startswith(self._own):
                if path == self._auth_path:
                    return await self._parts.auth(scope, send)
                if await self._endpoints.handle(scope, receive, send):
                    return
        elif kind == "lifespan":
            return await self._lifespan(scope, receive, send)
        elif kind != "websocket":
            return await self.app(scope, receive, send)
        room, done = self._routes.route(scope)
        if room is None:
            self._metrics.decision(_BYPASS)
            return await self._forwarding.bypass(scope, receive, send)
        if kind == "http" and not (self._links and carries_token(scope)):
            admitted = self.admission.quick_pass(room, scope)
            if admitted is not None:
                self._metrics.decision(_PASS)
                if done:
                    admitted = replace(admitted, done=True)
                return await self._forwarding.forward(scope, receive, send, admitted)
        await self._gate(scope, receive, send, room, done)

    async def _gate(
        self, scope: Scope, receive: Receive, send: Send, room: str, done: bool
    ) -> None:
        headers = scope["headers"]
        # Before `decide`: a payment return without our cookie must not look like a newcomer.
        replay = await self._parts.bounce.screen(scope, receive, send, room)
        if replay is None:
            return
        http = scope["type"] == "http"
        # A WebSocket never joins: only a visitor admitted already (by a page) opens one.
        d = await self.admission.decide(room, scope, join=http)
        self._metrics.decision(_WAITING if d.verdict is _ABSENT else d.verdict)
        if self._links and d.verdict in CLEANED and http and carries_token(scope):
            return await redirect_without_token(scope, send, d.cookie)
        if d.verdict in LET_THROUGH:
            if d.verdict is Verdict.PASS and d.cookie is None:
                self.admission.remember(room, headers, d.session_id)
            admitted = Admitted(room, d.session_id, done, d.cookie)
            return await self._forwarding.forward(scope, replay, send, admitted)
        if not http:
            return await self._parts.responses.socket_refused(scope, send, d)
        if d.verdict is Verdict.WAITING:
            return await self._parts.responses.waiting(scope, send, d)
        if d.verdict in TURNED_AWAY:
            return await self._parts.responses.turned_away(scope, send, d, room)
        await self._parts.responses.unavailable(scope, send, room)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        lifecycle = self._parts.lifecycle
        started = False

        async def receive_through() -> Message:
            nonlocal started
            message = await receive()
            if message["type"] == "lifespan.startup":
                started = True
                await lifecycle.start()
            return message

        async def send_through(message: Message) -> None:
            if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                await lifecycle.stop()
            await send(message)

        try:
            await self.app(scope, receive_through, send_through)
        except Exception:
            if started:
                raise
            # The wrapped app has no lifespan support: run ours alone.
            await serve_lifespan(lifecycle, receive, send)
