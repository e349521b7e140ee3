"""`gate.bind-pass`: a visitor's cookie counts only from the address (or network) it was issued
to; from anywhere else it is as good as none, on the hot path and the full path alike."""

from __future__ import annotations

import httpx
import pytest

import gatekeeper.gate.binding
from gatekeeper.clients import ClientAddresses
from gatekeeper.gate.admission import Admitted
from gatekeeper.gate.binding import Binding
from gatekeeper.gate.tokens import CookieCodec, Visitor
from tests.gate.harness import Harness, enter, gate_settings, set_cookie

JSON = {"accept": "application/json"}
ALICE = "203.0.113.7"
MALLORY = "198.51.100.9"


def bound(kind: str = "ip", /, **overrides: object) -> Harness:
    return Harness(gate_settings(**{"gate.bind-pass": kind}, **overrides))


def client(h: Harness, address: str) -> httpx.AsyncClient:
    """A client (with its own cookie jar) connecting from `address`."""
    transport = httpx.ASGITransport(app=h.gate, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="https://shop.test")


async def admitted_from(h: Harness, address: str, path: str = "/") -> str:
    """The Cookie pair of a visitor admitted from `address` (place claimed, fresh pass)."""
    async with client(h, address) as c:
        return set_cookie(await enter(c, path)).split(";", 1)[0]


async def get(
    h: Harness, address: str, pair: str, path: str = "/", headers: dict[str, str] | None = None
) -> httpx.Response:
    """One request from `address` carrying exactly the Cookie header `pair`."""
    async with client(h, address) as c:
        return await c.get(path, headers={"cookie": pair, **JSON, **(headers or {})})


def hot(h: Harness, address: str, pair: str, room: str = "default") -> Admitted | None:
    """What the hot path makes of the Cookie header `pair` from `address`."""
    scope = {"headers": [(b"cookie", pair.encode())], "client": (address, 40000)}
    return h.gate.admission.quick_pass(room, scope)


def reached(r: httpx.Response) -> bool:
    """The answer came from the origin (else the gate's waiting status)."""
    return "path" in r.json()


def visitor_of(h: Harness, pair: str) -> Visitor:
    visitor = h.gate.admission.codec.loads(pair.split("=", 1)[1])
    assert visitor is not None
    return visitor


def session_of(h: Harness, pair: str) -> str:
    return visitor_of(h, pair).session_id


async def test_a_bound_cookie_works_from_its_address_on_the_hot_path_and_when_renewed() -> None:
    h = bound()
    pair = await admitted_from(h, ALICE)
    tag = h.gate.admission.codec.tags(ALICE)[0]
    assert visitor_of(h, pair).bound == tag and f"~{tag}." in pair
    assert reached(await get(h, ALICE, pair))  # full path: seen with a fresh pass...
    assert hot(h, ALICE, pair) is not None  # ...remembered: the hot path takes it
    calls = h.store.calls
    assert reached(await get(h, ALICE, pair)) and h.store.calls == calls
    h.clock.advance(3_000)  # second half of the pass: renewed after a poll
    r = await get(h, ALICE, pair)
    assert reached(r) and h.store.calls == calls + 1
    renewed = set_cookie(r).split(";", 1)[0]
    assert renewed != pair and session_of(h, renewed) == session_of(h, pair)
    assert visitor_of(h, renewed).bound == tag
    assert reached(await get(h, ALICE, renewed))


async def test_a_copied_cookie_is_refused_from_another_address_on_both_paths() -> None:
    h = bound()
    pair = await admitted_from(h, ALICE)
    seen = len(h.origin.seen)
    # Full path: never seen with a pass before.
    r = await get(h, MALLORY, pair)
    assert r.json()["status"] == "WAITING" and len(h.origin.seen) == seen
    assert session_of(h, set_cookie(r).split(";", 1)[0]) != session_of(h, pair)  # starts over
    assert (await h.store.counts("default")).waiting == 0, "a lazy join: nothing written"
    # Hot path: the very Cookie header alice's requests made known.
    assert reached(await get(h, ALICE, pair)) and hot(h, ALICE, pair) is not None
    seen = len(h.origin.seen)
    assert hot(h, MALLORY, pair) is None
    r = await get(h, MALLORY, pair)
    assert r.json()["status"] == "WAITING" and len(h.origin.seen) == seen
    # Alice is none the worse.
    assert reached(await get(h, ALICE, pair)) and hot(h, ALICE, pair) is not None
    assert (await h.store.counts("default")).active == 1


async def test_the_copy_comes_back_as_a_new_visitor_at_the_back() -> None:
    h = bound()
    pair = await admitted_from(h, ALICE)
    async with client(h, "192.0.2.50") as bob:
        await enter(bob)  # bob waits first
    async with client(h, MALLORY) as mallory:
        mallory.cookies.set("gk_session", pair.split("=", 1)[1], domain="shop.test")
        await mallory.get("/", headers=JSON)  # the copy: a lazy join
        body = (await mallory.get("/", headers=JSON)).json()  # comes back with its own cookie
    assert body["status"] == "WAITING" and body["position"] == 1
    assert body["sessionId"] != session_of(h, pair)


@pytest.mark.parametrize(
    ("kind", "home", "near", "far"),
    [
        ("ip", "192.0.2.7", "192.0.2.7", "192.0.2.99"),
        ("ip", "2001:db8:1:2::7", "2001:db8:1:2:ffff::9", "2001:db8:1:3::7"),
        ("prefix", "192.0.2.7", "192.0.2.99", "192.0.3.7"),
        ("prefix", "2001:db8:1:2::7", "2001:db8:1:ffff::9", "2001:db8:2:2::7"),
        ("prefix", "::ffff:192.0.2.7", "192.0.2.200", "10.0.2.7"),
    ],
)
async def test_what_counts_as_the_same_client(kind: str, home: str, near: str, far: str) -> None:
    h = bound(kind)
    pair = await admitted_from(h, home)
    assert reached(await get(h, near, pair))  # full path
    assert reached(await get(h, home, pair)) and hot(h, near, pair) is not None  # hot path
    assert hot(h, far, pair) is None
    assert not reached(await get(h, far, pair))


async def test_unbound_by_default_a_copied_cookie_works_anywhere() -> None:
    h = Harness()
    pair = await admitted_from(h, ALICE)
    assert visitor_of(h, pair).bound == ""
    assert reached(await get(h, MALLORY, pair))  # full path
    assert hot(h, MALLORY, pair) is not None and reached(await get(h, "192.0.3.1", pair))


async def test_a_room_override_binds_that_room_only() -> None:
    h = Harness(gate_settings(**{"rooms.overrides": {"vip": {"bind-pass": "ip"}}}))
    plain = await admitted_from(h, ALICE)
    vip = await admitted_from(h, ALICE, "/events/vip/seats")
    assert vip.startswith("gk_session-vip=")
    assert reached(await get(h, MALLORY, plain))
    assert not reached(await get(h, MALLORY, vip, "/events/vip/seats"))
    assert reached(await get(h, ALICE, vip, "/events/vip/seats"))
    assert hot(h, ALICE, vip, "vip") is not None and hot(h, MALLORY, vip, "vip") is None


async def test_a_room_override_unbinds_one_room_of_a_bound_gate() -> None:
    h = bound(**{"rooms.overrides": {"open": {"bind-pass": "none"}}})
    plain = await admitted_from(h, ALICE)
    free = await admitted_from(h, ALICE, "/events/open/x")
    assert not reached(await get(h, MALLORY, plain))
    assert reached(await get(h, MALLORY, free, "/events/open/x"))


async def test_a_tampered_or_missing_tag_is_refused() -> None:
    h = bound()
    pair = await admitted_from(h, ALICE)
    codec = h.gate.admission.codec
    ours, theirs = codec.tags(ALICE)[0], codec.tags(MALLORY)[0]
    forged = pair.replace(ours, theirs)
    assert forged != pair and codec.loads(forged.split("=", 1)[1]) is None  # the signature
    assert not reached(await get(h, MALLORY, forged))
    # A cookie without a tag (say, issued before the room was bound) counts as none.
    untagged = codec.dumps(session_of(h, pair), h.clock() + 5_000)
    assert not reached(await get(h, ALICE, f"gk_session={untagged}"))


async def test_through_trusted_proxies_the_forwarded_address_binds() -> None:
    h = bound(**{"proxy.trusted-proxies": ["10.0.0.0/8"]})

    def via(proxy: str, forwarded: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=h.gate, client=(proxy, 40000))
        headers = {"x-forwarded-for": forwarded, **JSON}
        return httpx.AsyncClient(transport=transport, base_url="https://shop.test", headers=headers)

    async with via("10.0.0.2", ALICE) as alice:
        pair = set_cookie(await enter(alice)).split(";", 1)[0]
    async with via("10.0.0.3", ALICE) as again:  # another proxy, the same client
        assert reached(await again.get("/", headers={"cookie": pair}))
    async with via("10.0.0.2", f"{ALICE}, {MALLORY}") as mallory:
        assert not reached(await mallory.get("/", headers={"cookie": pair}))


async def test_the_leave_cookie_and_auth_request_keep_the_binding() -> None:
    h = bound()
    pair = await admitted_from(h, ALICE)
    auth = {"x-original-uri": "/"}
    assert (await get(h, ALICE, pair, "/_gatekeeper/auth", auth)).status_code == 200
    assert (await get(h, MALLORY, pair, "/_gatekeeper/auth", auth)).status_code == 401
    async with client(h, ALICE) as alice:
        r = await alice.post("/signal-leave", headers={"cookie": pair})
    left = visitor_of(h, set_cookie(r).split(";", 1)[0])
    assert left.pass_until_ms == 0 and left.bound == h.gate.admission.codec.tags(ALICE)[0]


def test_tags_are_cached_per_client_and_kind_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = gate_settings(**{"gate.bind-pass": "prefix"})
    codec = CookieCodec(settings.cookie_keys, max_age_s=60)
    binding = Binding(settings, codec, ClientAddresses(()))

    def scope(client: object) -> dict[str, object]:
        return {"headers": [], "client": client}

    tag = binding.tag("default", scope(("192.0.2.7", 1)))
    assert tag == codec.tags("192.0.2.0/24")[0]
    assert binding.tag("default", scope(("::ffff:192.0.2.9", 2))) == tag  # one network
    assert binding.holds("default", scope(["192.0.2.200", 3]), tag)
    # No client, or one that is not an address: the shared binding "", never a crash.
    nowhere = codec.tags("")[0]
    assert binding.tag("default", {"headers": []}) == nowhere
    assert binding.tag("default", scope(None)) == binding.tag("default", scope(())) == nowhere
    assert binding.tag("default", scope(("unix:/run/gk.sock", 0))) == nowhere
    assert not binding.holds("default", scope(("192.0.2.7", 1)), nowhere)
    monkeypatch.setattr("gatekeeper.gate.binding._CACHE_MAX", len(binding._cache) + 2)
    for i in range(10):
        network = f"198.51.{i}.0/24"
        assert binding.holds("default", scope((f"198.51.{i}.1", 1)), codec.tags(network)[0])
    assert len(binding._cache) == gatekeeper.gate.binding._CACHE_MAX
