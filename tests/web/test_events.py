"""On-sale events through the gate, the operator API and the public API: schedule, pre-queue,
the draw anyone can audit, and the events of the config file."""

from __future__ import annotations

import hashlib

import httpx

from gatekeeper.app import Runtime, WaitingRoom
from gatekeeper.config import load_config
from gatekeeper.config.events import format_instant
from gatekeeper.core.draw import drawn_order
from gatekeeper.store.memory import MemoryStore
from tests.conftest import FakeClock
from tests.gate.harness import ENV, Origin
from tests.web.test_admin import ADMIN, AUTH, TOKEN, Site

ROOM = "default"
MINUTE = 60_000
JSON = {"accept": "application/json"}


async def schedule(site: Site, admin: httpx.AsyncClient, **extra: object) -> httpx.Response:
    """A pre-queue open from now, a start in ten minutes."""
    body = {"prequeueOpensAt": site.clock.now, "startsAt": site.clock.now + 10 * MINUTE, **extra}
    return await admin.put(f"{ADMIN}/rooms/{ROOM}/event", json=body)


async def enter(site: Site) -> tuple[httpx.AsyncClient, str]:
    """A browser that came twice (placed in line); its session id."""
    client = site.client()
    await client.get("/", headers=JSON)
    body = (await client.get("/", headers=JSON)).json()
    return client, body["sessionId"]


async def test_a_scheduled_prequeue_admits_nobody_then_its_draw_can_be_audited() -> None:
    site = Site()
    async with site.client() as admin:
        admin.headers.update({"authorization": f"Bearer {TOKEN}"})
        r = await schedule(site, admin)
        assert r.status_code == 200, r.text
        event = r.json()
        assert event["phase"] == "prequeue" and event["seed"] is None
        assert len(event["commitment"]) == 64 and event["entries"] == 0
        assert "event-seed" not in (await admin.get(f"{ADMIN}/rooms/{ROOM}")).json()["controls"]
        visitors = [await enter(site) for _ in range(30)]
        body = (await visitors[0][0].get("/", headers=JSON)).json()
        assert body["phase"] == "prequeue" and body["position"] is None
        assert body["startsAt"] == format_instant(site.clock.now + 10 * MINUTE)
        await site.tick()
        assert site.origin.seen == [], "nobody is admitted before the start"
        public = (await admin.get(f"/api/waiting-room/events/{ROOM}")).json()
        assert public["entries"] == 30 and public["seed"] is None
        for _ in range(5):  # ten minutes, every waiter's page polling now and then
            site.clock.advance(2 * MINUTE)
            for client, _ in visitors:
                await client.get("/", headers=JSON)
        await site.tick()  # the draw; two admitted (capacity 2)
        public = (await admin.get(f"/api/waiting-room/events/{ROOM}")).json()
        seed = public["seed"]
        assert public["phase"] == "open" and public["drawnAt"] is not None
        assert hashlib.sha256(bytes.fromhex(seed)).hexdigest() == public["commitment"]
        order = drawn_order(seed, [sid for _, sid in visitors])
        page = (await admin.get(f"{ADMIN}/rooms/{ROOM}/draw?offset=0&limit=5")).json()
        assert page["entries"] == [[sid, i] for i, sid in enumerate(order[2:7])]
        by_sid = dict((sid, client) for client, sid in visitors)
        first = (await by_sid[order[0]].get("/", headers=JSON)).json()
        assert first["path"] == "/", "the first drawn is admitted"
        third = (await by_sid[order[2]].get("/", headers=JSON)).json()
        assert third["phase"] == "open" and third["position"] == 0
        r = await schedule(site, admin)
        assert r.status_code == 409 and r.json()["error"]["code"] == "already_drawn"
        for client, _ in visitors:
            await client.aclose()


async def test_the_seed_is_made_once_and_kept_through_changes() -> None:
    site = Site()
    async with site.client() as admin:
        admin.headers.update({"authorization": f"Bearer {TOKEN}"})
        first = (await schedule(site, admin)).json()["commitment"]
        again = (await schedule(site, admin, shuffle=False)).json()
        assert again["commitment"] == first and again["shuffle"] is False
        assert (await admin.get(f"{ADMIN}/rooms/{ROOM}/event")).json()["commitment"] == first
        assert (await admin.delete(f"{ADMIN}/rooms/{ROOM}/event")).status_code == 204
        assert (await admin.get(f"{ADMIN}/rooms/{ROOM}/event")).status_code == 404
        assert (await admin.get(f"/api/waiting-room/events/{ROOM}")).status_code == 404
        renewed = (await schedule(site, admin)).json()["commitment"]
        assert renewed != first, "a new event, a new seed"


async def test_bad_schedules_are_400() -> None:
    site = Site()
    start = site.clock.now + MINUTE
    async with site.client() as admin:
        admin.headers.update({"authorization": f"Bearer {TOKEN}"})
        for body in (
            {},
            {"startsAt": "tomorrow"},
            {"startsAt": "2026-12-08T18:00:00"},
            {"startsAt": start, "prequeueOpensAt": start + 1},
            {"startsAt": start, "endsAt": start},
            {"startsAt": start, "shuffle": "yes"},
            {"startsAt": start, "color": "red"},
            {"startsAt": True},
        ):
            r = await admin.put(f"{ADMIN}/rooms/{ROOM}/event", json=body)
            assert r.status_code == 400, (body, r.text)
        assert (await admin.get(f"{ADMIN}/rooms/{ROOM}/draw")).status_code == 404
        assert (await admin.post(f"{ADMIN}/rooms/{ROOM}/event")).status_code == 405


async def test_an_event_from_the_config_file_is_scheduled_once() -> None:
    clock = FakeClock()
    store = MemoryStore(clock)
    start = clock.now + 10 * MINUTE
    overrides = {
        "waitingroom.processing.capacity": 2,
        "waitingroom.rooms.overrides": {"tour": {"event": {"starts-at": start}}},
    }
    settings = load_config(
        None, environ={**ENV, "WAITINGROOM_ADMIN_TOKEN": TOKEN}, overrides=overrides
    )

    async def boot() -> dict[str, object]:
        runtime = Runtime(settings, store=store, clock=clock)
        gate = WaitingRoom(Origin(), runtime=runtime, clock=clock)
        await runtime._schedule_events()
        transport = httpx.ASGITransport(app=gate)
        async with httpx.AsyncClient(transport=transport, base_url="https://shop.test") as c:
            r = await c.get("/api/waiting-room/events/tour", headers=dict(AUTH))
            return dict(r.json())

    first = await boot()
    assert first["startsAt"] == format_instant(start) and first["phase"] == "before"
    assert first["prequeueOpensAt"] == first["startsAt"]
    second = await boot()
    assert second["commitment"] == first["commitment"], "a restart keeps the seed"
