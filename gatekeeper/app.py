"""The composition root: every part of a gatekeeper process is built here, and nowhere else.

`Runtime` builds the clock, store, rooms, metrics, grant loop, admission and the web endpoints
and owns their lifecycle; `WaitingRoom` is the gate around any ASGI app (middleware mode);
`create_app` is the gate in front of the reverse proxy (proxy mode) or the API alone.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import replace
from types import TracebackType

from gatekeeper.asgi import ASGIApp, Receive, Scope, Send, send_error, serve_lifespan
from gatekeeper.clock import Clock, wall_clock
from gatekeeper.config import Settings, load_config
from gatekeeper.core.granter import Granter
from gatekeeper.core.rooms import Rooms
from gatekeeper.errors import StoreError
from gatekeeper.gate.admission import Admission
from gatekeeper.gate.auth_request import AuthRequest
from gatekeeper.gate.bounce import Bounce
from gatekeeper.gate.forwarding import Forwarding
from gatekeeper.gate.middleware import Gate, GateParts
from gatekeeper.gate.paths import PathRules
from gatekeeper.gate.responses import Responses
from gatekeeper.gate.routes import Routes
from gatekeeper.metrics import Metrics
from gatekeeper.proxy.forwarder import ReverseProxy
from gatekeeper.store import open_store
from gatekeeper.store.base import Store
from gatekeeper.web.admin import AdminAPI
from gatekeeper.web.api import WaitingRoomAPI
from gatekeeper.web.endpoints import Endpoints
from gatekeeper.web.events import Events
from gatekeeper.web.health import Health
from gatekeeper.web.pages import PageRenderer

log = logging.getLogger("gatekeeper")
gate_log = logging.getLogger("gatekeeper.gate")


def _with_cookie_keys(settings: Settings) -> Settings:
    if settings.cookie_keys:
        return settings
    return replace(settings, cookie_keys=(secrets.token_urlsafe(32),))


class Runtime:
    """The parts of one gatekeeper process, and their lifecycle (start, then stop)."""

    def __init__(
        self, settings: Settings, *, store: Store | None = None, clock: Clock | None = None
    ) -> None:
        self.random_cookie_key = not settings.cookie_keys
        self.settings = settings = _with_cookie_keys(settings)
        self.clock = clock or wall_clock
        # Without an injected clock the Redis scripts read Redis TIME (replicas may disagree).
        self.store = store or open_store(settings.redis, clock=clock)
        self.rooms = Rooms(settings, self.clock)
        self.metrics = Metrics()
        self.granter = Granter(
            self.store, self.rooms, settings.processing.rate_ms, self.metrics, self.clock
        )
        self.admission = Admission(self.store, self.rooms, self.metrics, settings, self.clock)
        self.codec = self.admission.codec
        self.events = Events(self.store, self.rooms)
        self.api = WaitingRoomAPI(self.store, self.rooms, settings, self.metrics, self.events)
        self.admin = AdminAPI(self.store, self.rooms, settings, self.metrics, self.events)
        self.health = Health(self.store, self.metrics)
        self._started = False

    def endpoints(self, *, root: bool) -> Endpoints:
        """gatekeeper's own endpoints; `root` in API-only mode (see `Endpoints`)."""
        return Endpoints(self.api, self.admin, self.health, self.settings, root)

    async def start(self) -> None:
        """Schedule the configured on-sale events, start the grant loop (idempotent)."""
        if not self._started:
            self._started = True
            await self._schedule_events()
            self.granter.start()
            log.info("grant loop started (every %d ms)", self.settings.processing.rate_ms)

    async def _schedule_events(self) -> None:
        """The events of `rooms.overrides`, in rooms that have none yet (see `Events`)."""
        for room, override in self.settings.rooms.overrides.items():
            if override.event is not None:
                try:
                    await self.events.schedule_configured(room, override.event)
                except StoreError as exc:
                    log.warning("could not schedule the event of room %s: %s", room, exc)

    async def stop(self) -> None:
        """Stop the grant loop, let store calls in flight finish, then close the store
        (idempotent)."""
        if self._started:
            self._started = False
            await self.granter.stop()
            await self.admission.drain()
            await self.store.aclose()
            log.info("grant loop stopped, store closed")

    async def __aenter__(self) -> Runtime:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


class WaitingRoom(Gate):
    """The gate around any ASGI app: `WaitingRoom(app, settings)` or
    `app.add_middleware(WaitingRoom, settings=...)`; `WaitingRoom(ReverseProxy(origin), ...)` is
    proxy mode. The store and grant loop start and stop with the app's lifespan (or
    `async with waiting_room:`)."""

    def __init__(
        self,
        app: ASGIApp,
        settings: Settings | None = None,
        *,
        store: Store | None = None,
        clock: Clock | None = None,
        runtime: Runtime | None = None,
    ) -> None:
        if runtime is None:
            runtime = Runtime(settings or load_config(), store=store, clock=clock)
        if runtime.random_cookie_key:
            gate_log.warning(
                "WAITINGROOM_GATE_COOKIE_KEYS is not set: using a random key, so cookies do not "
                "survive a restart and replicas cannot share visitors"
            )
        self.runtime = runtime
        self.settings = s = runtime.settings
        pages = PageRenderer(
            s.gate.waiting_template or None, template_dir=s.gate.template_dir or None
        )
        # One reading of the client's address for every per-client rule (bypass IPs, limits).
        rules = PathRules(s.gate, s.rooms.default_room, runtime.admission.addresses)
        routes = Routes(rules, runtime.rooms)
        parts = GateParts(
            routes=routes,
            admission=runtime.admission,
            forwarding=Forwarding(app, runtime.admission, runtime.metrics, s, runtime.store),
            responses=Responses(runtime.rooms, pages, s),
            auth=AuthRequest(routes, runtime.admission, runtime.metrics),
            endpoints=runtime.endpoints(root=False),
            metrics=runtime.metrics,
            lifecycle=runtime,
            bounce=Bounce(s.gate, runtime.admission.cookie_name),
        )
        super().__init__(app, parts)
        self.codec = runtime.codec


class Service:
    """API-only mode: the JSON API, health checks and the grant loop, no origin."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._endpoints = runtime.endpoints(root=True)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            return await serve_lifespan(self.runtime, receive, send)
        if scope["type"] != "http":
            return
        if not await self._endpoints.handle(scope, receive, send):
            await send_error(send, 404, "not_found", "no such endpoint")


def create_app(
    settings: Settings, *, store: Store | None = None, clock: Clock | None = None
) -> Service | WaitingRoom:
    """The ASGI app for `settings`: proxy mode when `gate.origin` is set, else API-only."""
    runtime = Runtime(settings, store=store, clock=clock)
    if not settings.gate.origin:
        return Service(runtime)
    return WaitingRoom(ReverseProxy(settings.gate.origin, settings.proxy), runtime=runtime)
