"""The gate as middleware: dispatch, its own endpoints, the lifespan."""

from __future__ import annotations

from typing import Any

import httpx

from gatekeeper.app import WaitingRoom
from tests.gate.harness import Harness, find_gate, gate_settings, lifespan, set_cookie


async def test_first_visitor_is_let_in_with_a_signed_cookie(h: Harness, alice: httpx.AsyncClient):
    r = await alice.get("/seats", headers={"cookie": "theme=dark"})
    assert r.status_code == 200
    assert r.json()["path"] == "/seats"
    cookie = set_cookie(r)
    assert cookie.startswith("gk_session=")
    for flag in ("HttpOnly", "SameSite=Lax", "Secure", "Path=/", "Max-Age=86400"):
        assert flag in cookie
    forwarded = r.json()["headers"]
    assert forwarded["cookie"] == "theme=dark"


async def test_gate_serves_its_api_and_assets(h: Harness, alice: httpx.AsyncClient):
    r = await alice.post("/api/waiting-room/sessions", json={})
    assert r.status_code == 202
    assert (await alice.get("/_gatekeeper/static/waiting.js")).status_code == 200
    assert (await alice.get("/_gatekeeper/static/../config.py")).status_code == 404
    assert (await alice.get("/_gatekeeper/healthz")).status_code == 200
    assert (await alice.get("/_gatekeeper/readyz")).status_code == 200
    assert h.origin.seen == []


async def test_lifespan_starts_and_stops_the_grant_loop_with_a_starlette_app():
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def home(request: Any) -> PlainTextResponse:
        return PlainTextResponse("home")

    app = Starlette(
        routes=[Route("/", home)], middleware=[Middleware(WaitingRoom, settings=gate_settings())]
    )
    async with lifespan(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://shop.test") as a:
            assert (await a.get("/")).text == "home"
        async with httpx.AsyncClient(transport=transport, base_url="https://shop.test") as b:
            assert "text/html" in (await b.get("/")).headers["content-type"]
        runtime = find_gate(app).runtime
        assert runtime.granter._task is not None
    assert runtime.granter._task is None


async def test_explicit_context_manager_runs_the_loop_without_lifespan(h: Harness):
    async with h.gate:
        assert h.gate.runtime.granter._task is not None
    assert h.gate.runtime.granter._task is None
