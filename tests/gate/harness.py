"""The gate in-process: a recording origin, a counting store, and a gate around them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from gatekeeper.app import Runtime, WaitingRoom
from gatekeeper.asgi import Receive, Scope, Send
from gatekeeper.config import Settings, load_config
from gatekeeper.errors import StoreError
from gatekeeper.store.base import NO_ENTRY, Entry, GrantReport, RoomPolicy, Ticket
from gatekeeper.store.memory import MemoryStore
from tests.conftest import FakeClock

KEY = "k" * 32


PROOF = "p" * 32


ENV = {"WAITINGROOM_GATE_COOKIE_KEYS": KEY, "WAITINGROOM_GATE_PROOF_SECRET": PROOF}


def gate_settings(**overrides: object) -> Settings:
    base: dict[str, object] = {
        "waitingroom.processing.capacity": 1,
        "waitingroom.gate.done-paths": ["/checkout/complete"],
        "waitingroom.gate.routes": [{"pattern": "/events/{room}/**"}],
    }
    base.update({f"waitingroom.{k}": v for k, v in overrides.items()})
    return load_config(None, environ=ENV, overrides=base)


class Origin:
    """A stand-in site that records what reached it."""

    def __init__(self) -> None:
        self.seen: list[Scope] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        self.seen.append(scope)
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        path = scope["path"]
        status, extra = 200, []
        if path == "/checkout/complete" and scope["method"] == "POST":
            status = 303
            extra = [(b"location", b"/checkout/complete")]
        if path == "/signal-leave":
            extra = [(b"x-gatekeeper-command", b"leave")]
        if path == "/signal-close":
            extra = [(b"x-gatekeeper-command", b"close")]
        body = json.dumps({"path": path, "headers": headers}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), *extra],
            }
        )
        await send({"type": "http.response.body", "body": body})


class CountingStore(MemoryStore):
    """Counts every store call the gate makes."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.calls = 0
        self.down = False

    def _count(self) -> None:
        self.calls += 1
        if self.down:
            raise StoreError("down")

    async def join(
        self,
        room: str,
        sid: str,
        policy: RoomPolicy,
        *,
        user_id: str = "",
        entry: Entry = NO_ENTRY,
    ) -> Ticket:
        self._count()
        return await super().join(room, sid, policy, user_id=user_id, entry=entry)

    async def poll(self, sid: str, policy: RoomPolicy) -> Ticket | None:
        self._count()
        return await super().poll(sid, policy)

    async def leave(self, sid: str, policy: RoomPolicy, *, revoke: bool = False) -> bool:
        self._count()
        return await super().leave(sid, policy, revoke=revoke)

    async def grant(self, room: str, policy: RoomPolicy) -> GrantReport:
        return await super().grant(room, policy)


class Harness:
    def __init__(self, settings: Settings | None = None) -> None:
        self.clock = FakeClock()
        self.store = CountingStore(self.clock)
        self.origin = Origin()
        self.settings = settings or gate_settings()
        runtime = Runtime(self.settings, store=self.store, clock=self.clock)
        self.gate = WaitingRoom(self.origin, runtime=runtime, clock=self.clock)

    def client(self) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.gate)
        return httpx.AsyncClient(transport=transport, base_url="https://shop.test")

    async def tick(self) -> None:
        await self.gate.runtime.granter.tick()


def set_cookie(r: httpx.Response) -> str:
    return next(v for k, v in r.headers.multi_items() if k == "set-cookie")


@asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[None]:
    """Drive an ASGI app's lifespan protocol, as a server would."""
    inbox: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    task = asyncio.create_task(
        app({"type": "lifespan", "asgi": {"version": "3.0"}}, inbox.get, outbox.put)
    )
    await inbox.put({"type": "lifespan.startup"})
    assert (await outbox.get())["type"] == "lifespan.startup.complete"
    try:
        yield
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        assert (await outbox.get())["type"] == "lifespan.shutdown.complete"
        await task


def find_gate(app: Any) -> WaitingRoom:
    node = app.middleware_stack
    while not isinstance(node, WaitingRoom):
        node = node.app
    return node


async def raw_get(gate: WaitingRoom, headers: list[tuple[bytes, bytes]]) -> tuple[int, Any]:
    """One GET / straight through the ASGI interface, with exactly these request headers."""
    scope: Scope = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "headers": headers,
        "client": ("10.0.0.1", 1234),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    await gate(scope, receive, send)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], json.loads(body) if body.startswith(b"{") else body


async def enter(client: httpx.AsyncClient, path: str = "/", **kwargs: Any) -> httpx.Response:
    """A browser's first two requests: the first joins lazily (a place at once, or a cookie
    and the page), the second comes back with the cookie (claims the place, or takes one in
    line). The second answer is returned."""
    await client.get(path, **kwargs)
    return await client.get(path, **kwargs)


async def admitted_cookie(h: Harness, alice: httpx.AsyncClient) -> str:
    """The Cookie pair of an admitted visitor whose place is claimed, with a fresh pass."""
    return set_cookie(await enter(alice)).split(";", 1)[0]
