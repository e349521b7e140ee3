"""What a visitor who is not let through gets: the waiting page or the JSON status."""

from __future__ import annotations

import httpx

from tests.gate.harness import Harness, gate_settings, set_cookie


async def test_full_room_shows_the_waiting_page(
    h: Harness, alice: httpx.AsyncClient, bob: httpx.AsyncClient
):
    await alice.get("/seats")
    r = await bob.get("/seats")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert r.headers["cache-control"] == "no-store, private"
    assert int(r.headers["retry-after"]) >= 1
    assert "ahead of you" in r.text or "next" in r.text
    assert "/api/waiting-room/sessions/" in r.text
    assert set_cookie(r).startswith("gk_session=")
    assert len(h.origin.seen) == 1
    again = await bob.get("/seats")
    assert "set-cookie" not in again.headers


async def test_waiting_visitor_asking_for_json_gets_the_status_object(
    h: Harness, alice: httpx.AsyncClient, bob: httpx.AsyncClient
):
    await alice.get("/seats")
    r = await bob.get("/seats", headers={"accept": "application/json"})
    body = r.json()
    assert body["status"] == "WAITING" and body["position"] == 0
    keys = {"sessionId", "status", "position", "estimatedWaitSeconds", "pollAfterMs", "phase"}
    assert set(body) == keys and body["phase"] == "open"


async def test_configured_waiting_status_code():
    h = Harness(gate_settings(**{"gate.waiting-status": 429}))
    async with h.client() as a, h.client() as b:
        await a.get("/")
        assert (await b.get("/")).status_code == 429
