"""Path and header hygiene at the gate: variants of protected paths, script paths that look
static, our cookies and proof on bypass, Connection naming the gate's headers, passes in
cacheable answers, and huge User-Agents."""

from __future__ import annotations

import time

import httpx
import pytest

from gatekeeper.app import Runtime, WaitingRoom
from gatekeeper.asgi import Headers, Receive, Scope, Send
from gatekeeper.config import Settings
from gatekeeper.config.settings import GateSettings
from gatekeeper.gate.forwarding import private
from gatekeeper.gate.paths import PathRules
from gatekeeper.gate.proof import verify_proof
from tests.conftest import FakeClock
from tests.gate.harness import PROOF, CountingStore, Harness, gate_settings

NARROW = {"gate.protect": ["/seats", "/checkout/**"]}


async def _full(h: Harness, path: str = "/seats") -> httpx.AsyncClient:
    """A second visitor of a room whose one place the first visitor took on `path`."""
    async with h.client() as first:
        assert (await first.get(path)).status_code == 200
    assert (await h.store.counts("default")).active == 1
    return h.client()


@pytest.mark.parametrize(
    "path",
    [
        "/seats/",
        "/SEATS/",
        "/seats.",
        "/seats..",
        "/seats%20",
        "/seats.%20.",
        "/checkout./pay",
        "/checkout%20/pay",
        "/Checkout/pay/",
        "/seats%3F.css",
        "/seats%23.css",
        "/seats%3f",
        "/seats%3b.css",
    ],
)
async def test_variants_of_a_narrow_protect_list_never_reach_the_origin_while_full(
    path: str,
) -> None:
    h = Harness(gate_settings(**NARROW))
    async with await _full(h) as bob:
        before = len(h.origin.seen)
        r = await bob.get(path)
        assert r.status_code == 200 and "text/html" in r.headers["content-type"]
        assert len(h.origin.seen) == before, path


@pytest.mark.parametrize(
    ("protect", "path"),
    [
        (["/**"], "/seats.php/x.css"),  # the default `*.css` bypass must not let a script run
        (["/**"], "/seats.php/img/a.png"),
        (["/**"], "/static/x.jsp/a.js"),
        (["/seats.php"], "/seats.php/x.css"),  # PATH_INFO: the origin runs /seats.php
        (["/seats.php"], "/SEATS.PHP/x"),
        (["/seats"], "/seats./x.css"),  # IIS trims the dot: /seats/x.css runs /seats
    ],
)
async def test_a_script_path_never_bypasses(protect: list[str], path: str) -> None:
    h = Harness(gate_settings(**{"gate.protect": protect}))
    async with await _full(h, protect[0].replace("*", "x")) as bob:
        before = len(h.origin.seen)
        r = await bob.get(path)
        assert "text/html" in r.headers["content-type"]
        assert len(h.origin.seen) == before, path


@pytest.mark.parametrize("protect", [["/**"], ["/seats", "/checkout/**"]])
@pytest.mark.parametrize(
    "path", ["/app.css", "/img/a.png", "/static/js/app.js", "/.well-known/logo.png"]
)
async def test_real_static_assets_still_bypass_while_full(protect: list[str], path: str) -> None:
    h = Harness(gate_settings(**{"gate.protect": protect}))
    async with await _full(h) as bob:
        r = await bob.get(path)
        assert r.json()["path"] == path
        assert "set-cookie" not in r.headers


async def test_bypass_forwards_neither_our_cookies_nor_a_client_proof() -> None:
    h = Harness()
    headers = {
        "cookie": "gk_session=forged; a=1; gk_session-events=x; b=2",
        "x-gatekeeper-proof": "v1.forged",
    }
    async with h.client() as c:
        r = await c.get("/app.css", headers=headers)
    forwarded = r.json()["headers"]
    assert r.json()["path"] == "/app.css"
    assert forwarded["cookie"] == "a=1; b=2"
    assert "x-gatekeeper-proof" not in forwarded
    assert forwarded["x-request-id"]
    async with h.client() as c:
        r = await c.get("/app.css", headers={"cookie": "gk_session=only-ours"})
    assert "cookie" not in r.json()["headers"]


@pytest.mark.parametrize(
    ("connection", "kept"),
    [
        ("keep-alive, x-gatekeeper-proof", "keep-alive"),
        ("X-Request-Id ,keep-alive,  X-Gatekeeper-Proof", "keep-alive"),
        ("x-gatekeeper-proof, x-request-id", None),
        ("keep-alive, x-custom", "keep-alive, x-custom"),  # the rest is the proxy's to handle
    ],
)
async def test_connection_never_names_the_headers_the_gate_sets(
    connection: str, kept: str | None
) -> None:
    h = Harness()
    async with h.client() as alice:
        for path in ("/seats", "/seats", "/app.css"):  # full path, hot path, bypass
            r = await alice.get(path, headers={"connection": connection})
            forwarded = r.json()["headers"]
            assert forwarded.get("connection") == kept, path
            assert forwarded["x-request-id"]
            if path != "/app.css":
                proof = forwarded["x-gatekeeper-proof"]
                assert verify_proof(PROOF.encode(), proof, now_s=h.clock.now // 1000)


class CachingOrigin:
    """A site answering every request with the Cache-Control it was given."""

    def __init__(self, cache_control: list[bytes]) -> None:
        self.cache_control = cache_control

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers: Headers = [(b"content-type", b"text/plain")]
        headers += [(b"Cache-Control", value) for value in self.cache_control]
        if scope["path"] == "/leave":
            headers.append((b"x-gatekeeper-command", b"leave"))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"seats"})


def _gate(app: CachingOrigin, settings: Settings) -> tuple[WaitingRoom, FakeClock]:
    clock = FakeClock()
    runtime = Runtime(settings, store=CountingStore(clock), clock=clock)
    return WaitingRoom(app, runtime=runtime, clock=clock), clock


def _client(gate: WaitingRoom) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=gate), base_url="https://shop.test")


@pytest.mark.parametrize(
    ("sent", "answered"),
    [
        ([b"public, max-age=600, s-maxage=600"], "private, no-store, max-age=600"),
        ([b"public", b"max-age=60"], "private, no-store, max-age=60"),
        ([b'private="set-cookie", max-age=60'], "private, no-store"),
        ([b"S-MaxAge=60, Public, no-cache"], "private, no-store, no-cache"),
        ([b"max-age=60"], "private, max-age=60"),
        ([], "private"),
    ],
)
async def test_an_answer_carrying_a_pass_is_never_shared_cacheable(
    sent: list[bytes], answered: str
) -> None:
    gate, clock = _gate(CachingOrigin(sent), gate_settings())
    async with _client(gate) as alice:
        r = await alice.get("/seats")  # joined and admitted at once: a new pass
        assert r.headers["set-cookie"].startswith("gk_session=")
        assert r.headers.get_list("cache-control") == [answered]
        r = await alice.get("/seats")  # the claim: a renewed pass
        assert r.headers["set-cookie"].startswith("gk_session=")
        assert r.headers.get_list("cache-control") == [answered]
        r = await alice.get("/seats")  # the hot path: no pass in the answer, untouched
        assert "set-cookie" not in r.headers
        assert r.headers.get_list("cache-control") == [v.decode() for v in sent]
        clock.advance(3_000)  # past half the pass: renewed
        r = await alice.get("/seats")
        assert r.headers["set-cookie"].startswith("gk_session=")
        assert r.headers.get_list("cache-control") == [answered]
        r = await alice.get("/leave")  # the pass ends: still ours, still private
        assert r.headers["set-cookie"].startswith("gk_session=")
        assert r.headers.get_list("cache-control") == [answered]


async def test_a_bypassed_answer_keeps_its_cache_control() -> None:
    gate, _ = _gate(CachingOrigin([b"public, max-age=600"]), gate_settings())
    async with _client(gate) as c:
        r = await c.get("/app.css")
    assert r.headers["cache-control"] == "public, max-age=600"


def test_private_keeps_other_headers_and_directives_in_order() -> None:
    headers: Headers = [
        (b"x-a", b"1"),
        (b"cache-control", b"no-cache, public"),
        (b"x-b", b"2"),
        (b"CACHE-CONTROL", b"max-age=5,, must-revalidate"),
    ]
    assert private(headers) == [
        (b"x-a", b"1"),
        (b"x-b", b"2"),
        (b"cache-control", b"private, no-store, no-cache, max-age=5, must-revalidate"),
    ]
    assert private([(b"cache-control", b"private, no-store")]) == [
        (b"cache-control", b"private, no-store")
    ]


def test_a_huge_user_agent_is_decided_quickly() -> None:
    # `.{0,400}x` tries up to 400 characters at every position: slow over a whole 1 MB header.
    rules = PathRules(GateSettings(bypass_user_agents=("^UptimeRobot/", ".{0,400}Pingdom")), "d")
    agent = b"Mozilla/5.0 " + b"a" * (1 << 20)
    scope = {"type": "http", "path": "/seats", "headers": [(b"user-agent", agent)]}
    started = time.perf_counter()
    assert rules.room_for(scope) == "d"
    assert time.perf_counter() - started < 0.05
    monitor = {**scope, "headers": [(b"user-agent", b"UptimeRobot/2.0 " + b"a" * (1 << 20))]}
    assert rules.room_for(monitor) is None
    late = {**scope, "headers": [(b"user-agent", b"a" * 1024 + b" Pingdom")]}
    assert rules.room_for(late) == "d"  # beyond the prefix the patterns see
