"""The operator API: auth, live room controls, modes seen by the gate, revoke, audit, metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from gatekeeper.app import Runtime, WaitingRoom
from gatekeeper.config import load_config
from gatekeeper.store.memory import MemoryStore
from tests.conftest import FakeClock
from tests.gate.harness import ENV, Origin

TOKEN = "t" * 32
AUTH = {"authorization": f"Bearer {TOKEN}"}
ADMIN = "/_gatekeeper/admin"


class Site:
    def __init__(self, token: str = TOKEN) -> None:
        self.clock = FakeClock()
        settings = load_config(
            None,
            environ={**ENV, "WAITINGROOM_ADMIN_TOKEN": token} if token else ENV,
            overrides={"waitingroom.processing.capacity": 2},
        )
        self.runtime = Runtime(settings, store=MemoryStore(self.clock), clock=self.clock)
        self.origin = Origin()
        self.gate = WaitingRoom(self.origin, runtime=self.runtime, clock=self.clock)

    def client(self) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.gate)
        return httpx.AsyncClient(transport=transport, base_url="https://shop.test")

    async def tick(self) -> None:
        await self.runtime.granter.tick()


@pytest.fixture
def site() -> Site:
    return Site()


@pytest.fixture
async def admin(site: Site) -> AsyncIterator[httpx.AsyncClient]:
    async with site.client() as c:
        c.headers.update(AUTH)
        yield c


async def visit(site: Site, n: int) -> list[httpx.AsyncClient]:
    """`n` browsers that each came twice: placed (admitted and claimed, or in line)."""
    clients = [site.client() for _ in range(n)]
    for c in clients:
        await c.get("/")
        await c.get("/")
    return clients


async def close(clients: list[httpx.AsyncClient]) -> None:
    for c in clients:
        await c.aclose()


async def test_admin_needs_the_bearer_token(site: Site):
    async with site.client() as c:
        r = await c.get(f"{ADMIN}/rooms")
        assert r.status_code == 401
        assert r.headers["www-authenticate"].startswith("Bearer")
        r = await c.get(f"{ADMIN}/rooms", headers={"authorization": "Bearer " + "x" * 32})
        assert r.status_code == 401
        assert (await c.get(f"{ADMIN}/rooms", headers=AUTH)).status_code == 200


async def test_admin_is_disabled_without_a_token():
    site = Site(token="")
    async with site.client() as c:
        r = await c.get(f"{ADMIN}/rooms", headers=AUTH)
        assert r.status_code == 404
        assert site.origin.seen == []


async def test_rooms_list_live_figures(site: Site, admin: httpx.AsyncClient):
    clients = await visit(site, 3)
    site.clock.advance(4_000)
    r = await admin.get(f"{ADMIN}/rooms")
    (room,) = [v for v in r.json()["rooms"] if v["room"] == "default"]
    assert room["waiting"] == 1 and room["active"] == 2
    assert room["capacity"] == 2 and room["mode"] == "open"
    assert room["oldestWaiterAgeSeconds"] is not None
    await close(clients)


async def test_live_capacity_change_lets_more_in_on_the_next_tick(
    site: Site, admin: httpx.AsyncClient
):
    clients = await visit(site, 4)
    r = await admin.patch(f"{ADMIN}/rooms/default", json={"capacity": 3})
    assert r.status_code == 200 and r.json()["capacity"] == 3
    await site.tick()
    seen = len(site.origin.seen)
    await clients[2].get("/")
    assert len(site.origin.seen) == seen + 1
    r = await admin.patch(f"{ADMIN}/rooms/default", json={"capacity": None})
    assert r.json()["capacity"] == 2 and r.json()["controls"] == {}
    await close(clients)


@pytest.mark.parametrize(
    "body",
    [{"capacity": 0}, {"capacity": "5"}, {"batchSize": True}, {"mode": "off"}, {"color": 1}, []],
)
async def test_bad_changes_get_400(admin: httpx.AsyncClient, body: object):
    r = await admin.patch(f"{ADMIN}/rooms/default", json=body)
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "bad_request"


async def test_pause_stops_admissions_and_resume_restarts_them(
    site: Site, admin: httpx.AsyncClient
):
    clients = await visit(site, 2)
    assert (await admin.post(f"{ADMIN}/rooms/default:pause")).json()["mode"] == "paused"
    async with site.client() as newcomer:
        await site.tick()
        assert "text/html" in (await newcomer.get("/")).headers["content-type"]
        await clients[0].post("/signal-leave")
        await site.tick()
        r = await newcomer.get("/", headers={"accept": "application/json"})
        assert r.json()["status"] == "WAITING"
        assert (await admin.post(f"{ADMIN}/rooms/default:resume")).json()["mode"] == "open"
        await site.tick()
        r = await newcomer.get("/", headers={"accept": "application/json"})
        assert r.json()["path"] == "/"
    await close(clients)


async def test_queue_all_holds_everyone_including_admitted_visitors(
    site: Site, admin: httpx.AsyncClient
):
    clients = await visit(site, 1)
    await admin.post(f"{ADMIN}/rooms/default:queue-all")
    r = await clients[0].get("/")
    assert r.status_code == 503 and "retry-after" in r.headers
    assert len(site.origin.seen) == 2
    await admin.post(f"{ADMIN}/rooms/default:resume")
    assert (await clients[0].get("/")).status_code == 200
    await close(clients)


async def test_passthrough_lets_everyone_in_but_keeps_counting(
    site: Site, admin: httpx.AsyncClient
):
    await admin.post(f"{ADMIN}/rooms/default:passthrough")
    clients = await visit(site, 4)
    assert len(site.origin.seen) == 8
    room = (await admin.get(f"{ADMIN}/rooms/default")).json()
    assert (room["active"], room["waiting"]) == (2, 2)
    await close(clients)


async def test_revoke_sends_the_visitor_back_after_the_pass(site: Site, admin: httpx.AsyncClient):
    clients = await visit(site, 3)
    sid = site.gate.codec.loads(clients[0].cookies["gk_session"]).session_id  # type: ignore[union-attr]
    assert (await admin.post(f"{ADMIN}/sessions/{sid}:revoke")).status_code == 204
    assert (await admin.post(f"{ADMIN}/sessions/{'x' * 22}.default:revoke")).status_code == 404
    await site.tick()
    site.clock.advance(int(site.runtime.settings.gate.cookie.pass_ttl * 1000) + 1)
    r = await clients[0].get("/", headers={"accept": "application/json"})
    assert r.json()["status"] == "WAITING"
    await close(clients)


async def test_tick_setting_reaches_the_grant_loop(site: Site, admin: httpx.AsyncClient):
    r = await admin.patch(f"{ADMIN}/settings", json={"rateMs": 50})
    assert r.json() == {"rateMs": 50}
    await site.tick()
    assert site.runtime.granter.rate_ms == 50
    await admin.patch(f"{ADMIN}/settings", json={"rateMs": None})
    await site.tick()
    assert site.runtime.granter.rate_ms == 200
    assert (await admin.patch(f"{ADMIN}/settings", json={"rateMs": 1})).status_code == 400


async def test_every_change_leaves_an_audit_entry(site: Site, admin: httpx.AsyncClient):
    await admin.post(f"{ADMIN}/rooms/default:pause")
    await admin.patch(f"{ADMIN}/rooms/E1", json={"capacity": 7, "newVisitorsPerMinute": 60})
    await admin.patch(f"{ADMIN}/settings", json={"rateMs": 100})
    entries = (await admin.get(f"{ADMIN}/audit?limit=10")).json()["entries"]
    assert [e["action"] for e in entries] == ["settings", "room", "room"]
    assert entries[1]["room"] == "E1" and '"capacity":"7"' in entries[1]["detail"]
    assert all(e["actor"].startswith("admin") for e in entries)


async def test_metrics_count_decisions_and_responses(site: Site, admin: httpx.AsyncClient):
    clients = await visit(site, 3)
    await clients[0].get("/")
    await clients[0].get("/app.css")
    await site.tick()
    r = await admin.get("/_gatekeeper/metrics")
    text = r.text
    assert 'gatekeeper_gate_decisions_total{decision="admitted"} 2.0' in text
    assert 'gatekeeper_gate_decisions_total{decision="waiting"} 2.0' in text  # page, then place
    assert 'gatekeeper_gate_decisions_total{decision="pass"} 3.0' in text  # 2 claims
    assert 'gatekeeper_gate_decisions_total{decision="bypass"} 1.0' in text
    assert 'gatekeeper_room_active{room="default"} 2.0' in text
    assert 'gatekeeper_proxy_requests_total{status="200"} 6.0' in text
    assert "gatekeeper_proxy_request_duration_seconds_bucket" in text
    await close(clients)


async def test_origin_gets_a_request_id(site: Site):
    async with site.client() as c:
        r = await c.get("/")
        assert len(r.json()["headers"]["x-request-id"]) == 32
        r = await c.get("/", headers={"x-request-id": "abc"})
        assert r.json()["headers"]["x-request-id"] == "abc"


async def test_a_message_reaches_every_waiter_within_one_poll(site: Site, admin: httpx.AsyncClient):
    clients = await visit(site, 3)  # two admitted, one waiting
    waiter = clients[2]
    text = 'Doors open at 7 <b>sharp</b> & "no" refunds'
    r = await admin.patch(f"{ADMIN}/rooms/default", json={"message": text})
    assert r.status_code == 200 and r.json()["controls"]["message"] == text
    body = (await waiter.get("/", headers={"accept": "application/json"})).json()
    assert body["status"] == "WAITING" and body["message"] == text
    page = (await waiter.get("/")).text
    assert "Doors open at 7 &lt;b&gt;sharp&lt;/b&gt; &amp; &quot;no&quot; refunds" in page
    assert "<b>sharp</b>" not in page
    # Another replica sees it at its next tick (the message is in the room's controls).
    other = WaitingRoom(Origin(), runtime=Runtime(site.runtime.settings, store=site.runtime.store,
                                                  clock=site.clock))  # fmt: skip
    await other.runtime.granter.tick()
    sid = site.gate.codec.loads(waiter.cookies["gk_session"]).session_id  # type: ignore[union-attr]
    transport = httpx.ASGITransport(app=other)
    async with httpx.AsyncClient(transport=transport, base_url="https://shop.test") as c:
        polled = (await c.get(f"/api/waiting-room/sessions/{sid}")).json()
    assert polled["message"] == text
    for bad in ("x" * 501, 5, ["a"]):
        r = await admin.patch(f"{ADMIN}/rooms/default", json={"message": bad})
        assert r.status_code == 400
    await admin.patch(f"{ADMIN}/rooms/default", json={"message": ""})
    body = (await waiter.get("/", headers={"accept": "application/json"})).json()
    assert "message" not in body
    assert 'id="gk-message" class="gk-message" role="status" hidden' in (await waiter.get("/")).text
    await close(clients)


async def test_a_live_session_cap_ends_admitted_sessions_on_time(
    site: Site, admin: httpx.AsyncClient
):
    r = await admin.patch(f"{ADMIN}/rooms/default", json={"maxSessionSeconds": 60})
    assert r.status_code == 200 and r.json()["maxSessionSeconds"] == 60
    for bad in (-1, 30 * 86_400 + 1, "60", True):
        r = await admin.patch(f"{ADMIN}/rooms/default", json={"maxSessionSeconds": bad})
        assert r.status_code == 400
    [visitor] = await visit(site, 1)
    sid = site.gate.codec.loads(visitor.cookies["gk_session"]).session_id  # type: ignore[union-attr]
    status = (await admin.get(f"/api/waiting-room/sessions/{sid}")).json()
    assert status["status"] == "ACTIVE" and "endsAt" in status
    site.clock.advance(30_000)
    assert (await visitor.get("/")).json()["path"] == "/"  # busy, still admitted
    site.clock.advance(31_000)
    await site.tick()
    ended = (await admin.get(f"/api/waiting-room/sessions/{sid}")).json()
    assert (ended["status"], ended["reason"]) == ("EXPIRED", "session_limit")
    await admin.patch(f"{ADMIN}/rooms/default", json={"maxSessionSeconds": None})
    assert (await admin.get(f"{ADMIN}/rooms/default")).json()["maxSessionSeconds"] == 0
    await visitor.aclose()
