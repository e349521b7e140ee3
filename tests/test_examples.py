"""The middleware example works as its docstring says: capacity 2, the buyer's place is freed."""

from __future__ import annotations

import httpx

from examples import middleware_starlette
from gatekeeper.app import WaitingRoom
from tests.gate.harness import lifespan


def find_gate(app: object) -> WaitingRoom:
    node = app.middleware_stack  # type: ignore[attr-defined]
    while not isinstance(node, WaitingRoom):
        node = node.app
    return node


async def test_middleware_example_queues_the_third_visitor_and_frees_on_purchase():
    app = middleware_starlette.app
    async with lifespan(app):
        transport = httpx.ASGITransport(app=app)
        clients = [httpx.AsyncClient(transport=transport, base_url="http://shop") for _ in range(3)]
        try:
            a, b, c = clients
            assert "Sneaker drop" in (await a.get("/")).text
            assert "Sneaker drop" in (await b.get("/")).text
            assert "in line" in (await c.get("/")).text.lower()
            assert (await a.post("/buy")).status_code == 303
            assert "Thanks" in (await a.get("/thanks")).text
            await find_gate(app).runtime.granter.tick()
            assert "Sneaker drop" in (await c.get("/")).text
        finally:
            for client in clients:
                await client.aclose()
