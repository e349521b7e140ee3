"""The core of one gatekeeper process: store, rooms, grant loop and API, with their lifecycle."""

from __future__ import annotations

import logging
from types import TracebackType

from gatekeeper.asgi import Receive, Scope, Send, send_bytes, send_error
from gatekeeper.clock import Clock
from gatekeeper.config import Settings
from gatekeeper.core.granter import Granter
from gatekeeper.core.rooms import Rooms
from gatekeeper.errors import StoreError
from gatekeeper.metrics import Metrics
from gatekeeper.store import open_store
from gatekeeper.store.base import Store
from gatekeeper.web.admin import AdminAPI
from gatekeeper.web.api import WaitingRoomAPI

log = logging.getLogger("gatekeeper")


class Runtime:
    """The core of one gatekeeper process: store, rooms, grant loop and JSON API."""

    def __init__(
        self, settings: Settings, *, store: Store | None = None, clock: Clock | None = None
    ) -> None:
        self.settings = settings
        self.store = store or open_store(settings.redis, clock=clock)
        self.rooms = Rooms(settings)
        self.metrics = Metrics()
        self.granter = Granter(self.store, self.rooms, settings.processing.rate_ms, self.metrics)
        self.api = WaitingRoomAPI(self.store, self.rooms, settings, self.metrics)
        self.admin = AdminAPI(
            self.store, self.rooms, settings.admin.prefix, settings.admin_token, self.metrics
        )
        self._own = settings.gate.static_prefix.rstrip("/")
        self.prefixes = (settings.api.prefix, settings.admin.prefix, self._own + "/")
        """Path prefixes of gatekeeper's own endpoints (API, admin, health, assets)."""
        self._started = False

    async def start(self) -> None:
        """Start the grant loop (idempotent)."""
        if not self._started:
            self._started = True
            self.granter.start()
            log.info("grant loop started (every %d ms)", self.settings.processing.rate_ms)

    async def stop(self) -> None:
        """Stop the grant loop and release the store's connections (idempotent)."""
        if self._started:
            self._started = False
            await self.granter.stop()
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

    async def handle(self, scope: Scope, receive: Receive, send: Send, *, root: bool) -> bool:
        """Serve gatekeeper's own endpoints (API, admin, health, metrics); False otherwise.

        Health and metrics live under the static prefix (`/_gatekeeper/healthz`); with `root`
        (API-only mode, where no site owns the root) also at `/healthz`, `/readyz`, `/metrics`.
        """
        path: str = scope["path"]
        if not root and not path.startswith(self.prefixes):
            return False  # the common case, one C-level check: a request for the site
        if self.api.handles(path):
            await self.api(scope, receive, send)
            return True
        if self.admin.handles(path):
            await self.admin(scope, receive, send)
            return True
        if path.startswith(self._own + "/"):
            path = path[len(self._own) :]
        elif not root:
            return False
        if path == "/metrics":
            body, content_type = self.metrics.render()
            await send_bytes(send, 200, body, content_type.encode())
            return True
        return await self.health(path, send)

    async def health(self, path: str, send: Send) -> bool:
        """Answer `/healthz` (process alive) and `/readyz` (store reachable); False otherwise."""
        if path == "/healthz":
            await send_bytes(send, 200, b"ok\n", b"text/plain; charset=utf-8")
            return True
        if path == "/readyz":
            try:
                await self.store.ping()
            except StoreError as exc:
                await send_error(send, 503, "store_unavailable", str(exc))
            else:
                await send_bytes(send, 200, b"ready\n", b"text/plain; charset=utf-8")
            return True
        return False


async def serve_lifespan(runtime: Runtime, receive: Receive, send: Send) -> None:
    """Run the ASGI lifespan protocol for a runtime with no inner app."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                await runtime.start()
            except Exception as exc:
                await send({"type": "lifespan.startup.failed", "message": str(exc)})
                return
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await runtime.stop()
            await send({"type": "lifespan.shutdown.complete"})
            return
