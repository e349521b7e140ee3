"""Composition root: the ASGI app for a config (the gate before an origin, or the API alone)."""

from __future__ import annotations

from gatekeeper.asgi import Receive, Scope, Send, send_error
from gatekeeper.clock import Clock
from gatekeeper.config import Settings
from gatekeeper.gate.middleware import WaitingRoom
from gatekeeper.proxy.forwarder import ReverseProxy
from gatekeeper.runtime import Runtime, serve_lifespan
from gatekeeper.store.base import Store


class Service:
    """API-only mode: the JSON API, health checks and the grant loop, no origin."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            return await serve_lifespan(self.runtime, receive, send)
        if scope["type"] != "http":
            return
        if not await self.runtime.handle(scope, receive, send, root=True):
            await send_error(send, 404, "not_found", "no such endpoint")


def create_app(
    settings: Settings, *, store: Store | None = None, clock: Clock | None = None
) -> Service | WaitingRoom:
    """The ASGI app for `settings`: proxy mode when `gate.origin` is set, else API-only."""
    runtime = Runtime(settings, store=store, clock=clock)
    if not settings.gate.origin:
        return Service(runtime)
    proxy = ReverseProxy(settings.gate.origin, settings.proxy)
    return WaitingRoom(proxy, runtime=runtime, clock=clock)
