"""Admission through the gate: passes, renewals, forged and rotated cookies, store failures."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest

from gatekeeper.app import Runtime, WaitingRoom
from gatekeeper.config import load_config
from gatekeeper.gate.tokens import CookieCodec, Visitor
from gatekeeper.store.base import RoomPolicy, Status, Ticket
from tests.conftest import FakeClock
from tests.gate.harness import (
    ENV,
    KEY,
    CountingStore,
    Harness,
    admitted_cookie,
    enter,
    gate_settings,
    raw_get,
    set_cookie,
)


async def test_pass_lets_an_active_visitor_through_without_store_calls(
    h: Harness, alice: httpx.AsyncClient
):
    await alice.get("/seats")
    assert h.store.calls == 1
    # The first pass of a place taken at once is half spent: the next request claims it.
    await alice.get("/seats")
    assert h.store.calls == 2
    for _ in range(20):
        assert (await alice.get("/seats")).status_code == 200
    assert h.store.calls == 2
    h.clock.advance(int(h.settings.gate.cookie.pass_ttl * 1000) + 1)
    r = await alice.get("/seats")
    assert r.status_code == 200
    assert h.store.calls == 3
    assert "set-cookie" in r.headers
    for _ in range(5):
        await alice.get("/seats")
    assert h.store.calls == 3


async def test_admitted_visitor_continues_when_the_pass_is_renewed(
    h: Harness, alice: httpx.AsyncClient, bob: httpx.AsyncClient
):
    await alice.get("/")
    await bob.get("/")
    for _ in range(10):
        h.clock.advance(10_000)
        assert "path" in (await alice.get("/")).json()
        await bob.get("/")
        await h.tick()
    assert "waiting" in (await bob.get("/")).text.lower()


@pytest.mark.parametrize(
    "value",
    ["garbage", "", "1~x~0.abc.def", "a" * 5000, "1~" + "A" * 22 + ".default~9999999999999.x.y"],
)
async def test_tampered_cookie_is_treated_as_absent(
    h: Harness, alice: httpx.AsyncClient, bob: httpx.AsyncClient, value: str
):
    await alice.get("/")
    r = await bob.get("/", headers={"cookie": f"gk_session={value}"})
    assert r.status_code == 200
    assert "text/html" in r.headers["content-type"]
    assert len(h.origin.seen) == 1


async def test_bit_flipped_admitted_cookie_does_not_pass(h: Harness, alice: httpx.AsyncClient):
    r = await alice.get("/")
    value = set_cookie(r).split(";")[0].split("=", 1)[1]
    await alice.post("/signal-leave")
    async with h.client() as bob:
        await bob.get("/")
    for i in range(0, len(value), 3):
        flipped = value[:i] + ("A" if value[i] != "A" else "B") + value[i + 1 :]
        async with h.client() as mallory:
            r = await mallory.get("/", headers={"cookie": f"gk_session={flipped}"})
            assert r.status_code == 200
            assert "text/html" in r.headers["content-type"], i
    assert len(h.origin.seen) == 3


async def test_cookie_signed_with_a_foreign_key_is_refused(h: Harness, bob: httpx.AsyncClient):
    async with h.client() as alice:
        r = await alice.get("/")
        sid = h.gate.codec.loads(set_cookie(r).split(";")[0].split("=", 1)[1]).session_id  # type: ignore[union-attr]
    forged = CookieCodec(["x" * 32], max_age_s=3600).dumps(sid, h.clock.now + 10**9)
    r = await bob.get("/", headers={"cookie": f"gk_session={forged}"})
    assert "text/html" in r.headers["content-type"]


async def test_key_rotation_keeps_admitted_visitors(alice: httpx.AsyncClient, h: Harness):
    r = await alice.get("/")
    cookie = set_cookie(r).split(";")[0]
    env = {**ENV, "WAITINGROOM_GATE_COOKIE_KEYS": f"{KEY},{'n' * 32}"}
    rotated = load_config(None, environ=env, overrides={"waitingroom.processing.capacity": 1})
    gate = WaitingRoom(
        h.origin, runtime=Runtime(rotated, store=h.store, clock=h.clock), clock=h.clock
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=gate), base_url="https://shop.test"
    ) as again:
        h.clock.advance(60_000)
        r = await again.get("/", headers={"cookie": cookie})
        assert r.json()["path"] == "/"


async def test_left_visitor_rejoins_at_the_back(
    h: Harness, alice: httpx.AsyncClient, bob: httpx.AsyncClient
):
    await alice.get("/")
    await bob.get("/")
    await alice.post("/signal-leave")
    await h.tick()
    h.clock.advance(10_000)
    assert "path" in (await bob.get("/", headers={"accept": "application/json"})).json()
    r = await alice.get("/", headers={"accept": "application/json"})
    assert r.json()["status"] == "WAITING"


async def test_rooms_by_route_use_their_own_cookie(h: Harness, alice: httpx.AsyncClient):
    r1 = await alice.get("/events/E1/seats")
    r2 = await alice.get("/events/E2/seats")
    assert set_cookie(r1).startswith("gk_session-E1=")
    assert set_cookie(r2).startswith("gk_session-E2=")
    assert (await h.store.counts("E1")).active == 1
    assert (await h.store.counts("E2")).active == 1
    r = await alice.get("/events/E1/seats")
    assert "gk_session" not in r.json()["headers"].get("cookie", "")


async def test_store_down_fails_closed_for_newcomers_but_keeps_pass_holders(
    h: Harness, alice: httpx.AsyncClient, bob: httpx.AsyncClient
):
    await alice.get("/")
    h.store.down = True
    assert (await alice.get("/")).status_code == 200
    r = await bob.get("/")
    assert r.status_code == 503
    assert r.headers["retry-after"] == "5"
    assert "text/html" in r.headers["content-type"]
    r = await bob.get("/", headers={"accept": "application/json"})
    assert r.status_code == 503 and r.json()["error"]["code"] == "store_unavailable"
    assert len(h.origin.seen) == 2


async def test_store_down_fail_open_lets_everyone_through():
    h = Harness(gate_settings(**{"gate.failure-policy": "open"}))
    h.store.down = True
    async with h.client() as c:
        assert (await c.get("/")).json()["path"] == "/"


async def test_session_state_is_the_truth_not_the_cookie(h: Harness, alice: httpx.AsyncClient):
    r = await alice.get("/")
    sid = h.gate.codec.loads(set_cookie(r).split(";")[0].split("=", 1)[1]).session_id  # type: ignore[union-attr]
    await h.store.leave(sid, h.gate.runtime.rooms.policy("default"))
    h.clock.advance(10_000)
    ticket = await h.store.poll(sid, h.gate.runtime.rooms.policy("default"))
    assert ticket is not None and ticket.status is Status.LEFT
    r = await alice.get("/", headers={"accept": "application/json"})
    assert r.json()["path"] == "/"


async def test_a_known_cookie_header_still_renews_in_the_second_half(
    h: Harness, alice: httpx.AsyncClient
):
    ours = await admitted_cookie(h, alice)
    await raw_get(h.gate, [(b"cookie", ours.encode())])
    h.clock.advance(int(h.settings.gate.cookie.pass_ttl * 1000) // 2 + 1)
    r = await alice.get("/")
    assert r.status_code == 200 and "set-cookie" in r.headers
    assert h.store.calls == 3, "renewed after one store call, made by the request itself"


async def test_a_known_cookie_header_is_held_in_queue_all_and_refused_once_revoked(
    h: Harness, alice: httpx.AsyncClient
):
    ours = (await admitted_cookie(h, alice)).encode()
    assert (await raw_get(h.gate, [(b"cookie", ours)]))[0] == 200
    h.gate.runtime.rooms.set_live("default", {"mode": "queue-all"})
    assert (await raw_get(h.gate, [(b"cookie", ours)]))[0] == 503
    h.gate.runtime.rooms.set_live("default", {})
    assert (await raw_get(h.gate, [(b"cookie", ours)]))[0] == 200
    sid = h.gate.codec.loads(ours.split(b"=", 1)[1].decode()).session_id  # type: ignore[union-attr]
    await h.store.leave(sid, h.gate.runtime.rooms.policy("default"), revoke=True)
    # In the first half the pass is honoured without a store call (at most a pass TTL).
    assert (await raw_get(h.gate, [(b"cookie", ours)]))[0] == 200
    async with h.client() as bob:
        assert (await bob.get("/")).json()["path"] == "/"  # takes the freed place
    h.clock.advance(int(h.settings.gate.cookie.pass_ttl * 1000) // 2 + 1)
    seen = len(h.origin.seen)
    status, body = await raw_get(h.gate, [(b"cookie", ours), (b"accept", b"application/json")])
    assert body["status"] == "WAITING" and body["sessionId"] != sid, "refused at its renewal"
    assert len(h.origin.seen) == seen


class GatedStore(CountingStore):
    """A counting store whose polls wait for `opened` once `gated` is set."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.gated = False
        self.opened = asyncio.Event()
        self.waiting = 0

    async def poll(self, sid: str, policy: RoomPolicy) -> Ticket | None:
        if self.gated:
            self.waiting += 1
            await self.opened.wait()
        return await super().poll(sid, policy)


def replica(h: Harness, store: CountingStore | None = None) -> WaitingRoom:
    """Another gate on the harness's clock and settings: a replica sharing `store`."""
    runtime = Runtime(h.settings, store=store or h.store, clock=h.clock)
    return WaitingRoom(h.origin, runtime=runtime, clock=h.clock)


def pass_of(r: httpx.Response, codec: CookieCodec) -> Visitor:
    visitor = codec.loads(set_cookie(r).split(";")[0].split("=", 1)[1])
    assert visitor is not None
    return visitor


async def test_a_left_session_is_refused_at_its_next_renewal_on_every_replica(h: Harness) -> None:
    ttl = int(h.settings.gate.cookie.pass_ttl * 1000)
    gates = [h.gate, replica(h), replica(h)]
    async with h.client() as alice:
        ours = await admitted_cookie(h, alice)
    async with h.client() as bob:
        assert "text/html" in (await enter(bob)).headers["content-type"]  # waits
    sid = h.gate.codec.loads(ours.split("=", 1)[1]).session_id  # type: ignore[union-attr]
    seen = len(h.origin.seen)
    for g in gates:
        assert (await raw_get(g, [(b"cookie", ours.encode())]))[0] == 200
    assert len(h.origin.seen) == seen + 3 and h.store.calls == 5  # joins, polls, the claim
    await h.store.leave(sid, h.gate.runtime.rooms.policy("default"))
    await h.tick()  # bob takes the place
    h.clock.advance(ttl // 2 + 1)
    for g in gates:
        status, body = await raw_get(
            g, [(b"cookie", ours.encode()), (b"accept", b"application/json")]
        )
        assert body["status"] == "WAITING" and body["sessionId"] != sid
    assert len(h.origin.seen) == seen + 3


async def test_concurrent_requests_in_the_second_half_share_one_store_call(h: Harness) -> None:
    store = GatedStore(h.clock)
    gate = replica(h, store)
    ttl = int(h.settings.gate.cookie.pass_ttl * 1000)
    transport = httpx.ASGITransport(app=gate)
    async with httpx.AsyncClient(transport=transport, base_url="https://shop.test") as alice:
        ours = set_cookie(await alice.get("/")).split(";")[0]
        h.clock.advance(ttl // 2 + 1)
        asked = h.clock.now
        store.gated = True
        calls = store.calls
        first = asyncio.ensure_future(alice.get("/", headers={"cookie": ours}))
        await wait_for(lambda: store.waiting == 1)
        h.clock.advance(500)  # the store is slow: the second request comes later
        second = asyncio.ensure_future(alice.get("/", headers={"cookie": ours}))
        for _ in range(50):
            await asyncio.sleep(0)
        assert store.waiting == 1, "the second request waits for the same store call"
        store.opened.set()
        replies = await asyncio.gather(first, second)
    assert store.calls == calls + 1
    for r in replies:
        assert r.json()["path"] == "/"
        # Both passes run from when the store was asked, not from when each request came.
        assert pass_of(r, gate.codec).pass_until_ms == asked + ttl


async def test_a_renewal_that_finds_the_store_down_keeps_the_pass_until_it_runs_out(
    h: Harness, alice: httpx.AsyncClient
) -> None:
    ttl = int(h.settings.gate.cookie.pass_ttl * 1000)
    await enter(alice)
    h.store.down = True
    h.clock.advance(ttl // 2 + 1)
    calls = h.store.calls
    r = await alice.get("/", headers={"accept": "application/json"})
    assert r.json()["path"] == "/" and "set-cookie" not in r.headers, "kept, not stretched"
    assert h.store.calls == calls + 1
    for _ in range(3):
        assert (await alice.get("/")).status_code == 200
    assert h.store.calls == calls + 1, "no more renewal attempts while the store fails"
    h.clock.advance(ttl // 2)
    assert (await alice.get("/")).status_code == 503
    h.store.down = False
    r = await alice.get("/", headers={"accept": "application/json"})
    assert r.json()["path"] == "/" and "set-cookie" in r.headers


async def test_drain_waits_for_a_poll_whose_request_is_gone(h: Harness) -> None:
    store = GatedStore(h.clock)
    gate = replica(h, store)
    transport = httpx.ASGITransport(app=gate)
    async with httpx.AsyncClient(transport=transport, base_url="https://shop.test") as alice:
        await alice.get("/")
        h.clock.advance(int(h.settings.gate.cookie.pass_ttl * 1000))
        store.gated = True
        request = asyncio.ensure_future(alice.get("/"))
        await wait_for(lambda: store.waiting == 1)
        request.cancel()
        draining = asyncio.ensure_future(gate.runtime.admission.drain())
        for _ in range(20):
            await asyncio.sleep(0)
        assert not draining.done(), "the store call in flight is waited for"
        store.opened.set()
        await asyncio.wait_for(draining, 5)
        assert request.cancelled()


async def wait_for(predicate: Callable[[], bool]) -> None:
    for _ in range(200):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition not reached")
