"""Join admission control at the gate: lazy joins, per-client join limits, the queue cap."""

from __future__ import annotations

import httpx

from gatekeeper.app import Runtime, WaitingRoom
from tests.gate.harness import Harness, enter, gate_settings

JSON = {"accept": "application/json"}


def browser(
    h: Harness, address: str = "203.0.113.7", *, gate: WaitingRoom | None = None
) -> httpx.AsyncClient:
    """A client (with a cookie jar) connecting from `address`."""
    transport = httpx.ASGITransport(app=gate or h.gate, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="https://shop.test")


async def fill(h: Harness) -> None:
    """Take the room's one place, claimed."""
    async with browser(h, "198.51.100.1") as first:
        assert (await enter(first)).json()["path"] == "/"


async def test_requests_without_cookies_add_nobody_to_the_line() -> None:
    h = Harness()
    await fill(h)
    transport = httpx.ASGITransport(app=h.gate, client=("203.0.113.7", 1))
    for _ in range(300):
        # A fresh client each time: no cookie ever comes back.
        async with httpx.AsyncClient(transport=transport, base_url="https://shop.test") as bot:
            r = await bot.get("/seats", headers=JSON)
            assert r.status_code == 200 and r.json()["status"] == "WAITING"
            assert "gk_session=" in r.headers["set-cookie"]
    assert (await h.store.counts("default")).waiting == 0
    async with browser(h) as honest:
        first = await honest.get("/seats", headers=JSON)
        assert first.json()["position"] == 0 and first.json()["pollAfterMs"] == 1000
        body = (await honest.get("/seats", headers=JSON)).json()
        assert body["status"] == "WAITING" and body["position"] == 0
        assert body["sessionId"] == first.json()["sessionId"], "the cookie's session is placed"
    assert (await h.store.counts("default")).waiting == 1


async def test_the_first_page_of_a_lazy_join_comes_back_at_once() -> None:
    h = Harness()
    await fill(h)
    async with browser(h) as alice:
        r = await alice.get("/seats")
        assert "text/html" in r.headers["content-type"] and r.headers["retry-after"] == "1"
        assert 'content="1"' in r.text, "without JavaScript the page comes back in a second"
        # Nothing to poll yet (the store does not know the session): the script reloads.
        assert 'data-status-url=""' in r.text
        again = await alice.get("/seats")
        assert 'data-status-url="/api/waiting-room/sessions/' in again.text


async def test_a_place_taken_at_once_is_held_for_the_claim_window_until_claimed() -> None:
    h = Harness()
    claim_ms = int(h.settings.lifecycle.claim_window * 1000)
    async with browser(h, "198.51.100.1") as bot:
        assert (await bot.get("/")).json()["path"] == "/"  # admitted at once, never comes back
    assert (await h.store.counts("default")).active == 1
    h.clock.advance(claim_ms + 1)
    await h.tick()
    assert (await h.store.counts("default")).active == 0, "an unclaimed place goes"
    async with browser(h) as alice:
        await alice.get("/")
        h.clock.advance(claim_ms // 2)
        assert (await alice.get("/")).json()["path"] == "/"  # the claim: the idle lease starts
        h.clock.advance(claim_ms // 2 + 1)
        await h.tick()
        assert (await h.store.counts("default")).active == 1, "a claimed place stays"


async def test_a_client_over_its_join_limit_gets_429_with_retry_after() -> None:
    h = Harness(
        gate_settings(
            **{"processing.client-join-burst": 3, "processing.client-joins-per-minute": 6}
        )
    )
    await fill(h)
    for _ in range(3):
        async with browser(h) as jar:
            assert (await enter(jar, headers=JSON)).json()["status"] == "WAITING"
    async with browser(h) as jar:
        await jar.get("/")
        r = await jar.get("/")
        assert r.status_code == 429 and r.headers["retry-after"] == "10"
        assert "Too many visitors from your network" in r.text and 'content="10"' in r.text
        r = await jar.get("/", headers=JSON)
        assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limited"
        async with browser(h, "203.0.113.8") as neighbour:
            assert (await enter(neighbour, headers=JSON)).json()["status"] == "WAITING"
        h.clock.advance(10_000)
        r = await jar.get("/", headers=JSON)
        assert r.status_code == 200 and r.json()["status"] == "WAITING", "a token came back"
    assert (await h.store.counts("default")).waiting == 5


async def test_forwarded_for_counts_only_through_a_trusted_proxy() -> None:
    limits = {"processing.client-join-burst": 1, "processing.client-joins-per-minute": 1}
    h = Harness(gate_settings(**limits, **{"proxy.trusted-proxies": ["10.0.0.0/8"]}))
    await fill(h)

    async def join(address: str, forwarded: str) -> int:
        async with browser(h, address) as jar:
            headers = {**JSON, "x-forwarded-for": forwarded}
            return (await enter(jar, headers=headers)).status_code

    # Through the trusted proxy each client is its own: the right-most untrusted entry.
    assert await join("10.0.0.5", "192.0.2.1") == 200
    assert await join("10.0.0.5", "192.0.2.2") == 200
    assert await join("10.0.0.6", "6.6.6.6, 192.0.2.2, 10.0.0.9") == 429
    # From an untrusted peer the header is a claim, not an address: the peer is counted.
    assert await join("203.0.113.9", "192.0.2.3") == 200
    assert await join("203.0.113.9", "192.0.2.4") == 429


async def test_ipv6_clients_count_by_their_64() -> None:
    limits = {"processing.client-join-burst": 1, "processing.client-joins-per-minute": 1}
    h = Harness(gate_settings(**limits))
    await fill(h)
    async with browser(h, "2001:db8:1:2::1") as one:
        assert (await enter(one)).status_code == 200
    async with browser(h, "2001:db8:1:2:ffff::9") as same_line:
        assert (await enter(same_line)).status_code == 429
    async with browser(h, "2001:db8:1:3::1") as other_line:
        assert (await enter(other_line)).status_code == 200


async def test_a_full_line_turns_newcomers_away_with_503() -> None:
    h = Harness(gate_settings(**{"processing.max-waiting": 2}))
    await fill(h)
    for address in ("192.0.2.1", "192.0.2.2"):
        async with browser(h, address) as jar:
            assert (await enter(jar, headers=JSON)).json()["status"] == "WAITING"
    async with browser(h, "192.0.2.3") as late:
        r = await late.get("/")
        assert r.status_code == 503 and r.headers["retry-after"] == "30"
        assert "The line is full" in r.text and "set-cookie" not in r.headers
        r = await late.get("/", headers=JSON)
        assert r.status_code == 503 and r.json()["error"]["code"] == "queue_full"
    assert (await h.store.counts("default")).waiting == 2


async def test_limits_are_shared_by_replicas() -> None:
    limits = {"processing.client-join-burst": 2, "processing.client-joins-per-minute": 1}
    h = Harness(gate_settings(**limits))
    other = WaitingRoom(h.origin, runtime=Runtime(h.settings, store=h.store, clock=h.clock))
    await fill(h)
    async with browser(h) as one, browser(h, gate=other) as two, browser(h, gate=other) as three:
        assert (await enter(one)).status_code == 200
        assert (await enter(two)).status_code == 200
        assert (await enter(three)).status_code == 429


async def test_the_api_join_counts_against_the_same_limit() -> None:
    limits = {"processing.client-join-burst": 2, "processing.client-joins-per-minute": 1}
    h = Harness(gate_settings(**limits, **{"processing.max-waiting": 3}))
    async with browser(h) as app:
        for _ in range(2):
            assert (await app.post("/api/waiting-room/sessions", json={})).status_code == 202
        r = await app.post("/api/waiting-room/sessions", json={"userId": "u1"})
        assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limited"
        assert r.headers["retry-after"] == "60"
    for n in range(2):  # one place taken at once, one waiter: two more fill the line of 3
        async with browser(h, f"192.0.2.{n}") as app:
            assert (await app.post("/api/waiting-room/sessions", json={})).status_code == 202
    async with browser(h, "192.0.2.9") as app:
        r = await app.post("/api/waiting-room/sessions", json={})
        assert r.status_code == 503 and r.json()["error"]["code"] == "queue_full"
        assert r.headers["retry-after"] == "30"


async def test_bypass_ips_read_the_same_client_address_as_the_join_limit() -> None:
    settings = gate_settings(
        **{"gate.bypass-ips": ["192.0.2.50"], "proxy.trusted-proxies": ["10.0.0.0/8"]}
    )
    h = Harness(settings)
    await fill(h)
    async with browser(h, "10.0.0.5") as monitor:
        r = await monitor.get("/", headers={**JSON, "x-forwarded-for": "192.0.2.50"})
        assert r.json()["path"] == "/", "the monitor behind the trusted proxy bypasses"
    async with browser(h, "203.0.113.9") as forger:
        r = await forger.get("/", headers={**JSON, "x-forwarded-for": "192.0.2.50"})
        assert r.json()["status"] == "WAITING", "a claim from an untrusted peer does not"
