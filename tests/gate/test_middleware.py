"""The gate in-process: cookie, pass, waiting page, leave triggers, proof header, lifespan."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gatekeeper.asgi import Receive, Scope, Send
from gatekeeper.config import Settings, load_config
from gatekeeper.errors import StoreError
from gatekeeper.gate.middleware import WaitingRoom
from gatekeeper.gate.proof import verify_proof
from gatekeeper.gate.tokens import CookieCodec
from gatekeeper.runtime import Runtime
from gatekeeper.store.base import GrantReport, RoomPolicy, Status, Ticket
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

    async def join(self, room: str, sid: str, policy: RoomPolicy, *, user_id: str = "") -> Ticket:
        self._count()
        return await super().join(room, sid, policy, user_id=user_id)

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


@pytest.fixture
def h() -> Harness:
    return Harness()


@pytest.fixture
async def alice(h: Harness) -> AsyncIterator[httpx.AsyncClient]:
    async with h.client() as c:
        yield c


@pytest.fixture
async def bob(h: Harness) -> AsyncIterator[httpx.AsyncClient]:
    async with h.client() as c:
        yield c


def set_cookie(r: httpx.Response) -> str:
    return next(v for k, v in r.headers.multi_items() if k == "set-cookie")


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


async def test_origin_never_sees_the_gate_cookie(h: Harness, alice: httpx.AsyncClient):
    await alice.get("/seats")
    alice.cookies.set("a", "1", domain="shop.test")
    alice.cookies.set("gk_session-other", "x", domain="shop.test")
    r = await alice.get("/seats")
    assert r.json()["headers"]["cookie"] == "a=1"


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
    assert set(body) == {"sessionId", "status", "position", "estimatedWaitSeconds", "pollAfterMs"}


async def test_configured_waiting_status_code():
    h = Harness(gate_settings(**{"gate.waiting-status": 429}))
    async with h.client() as a, h.client() as b:
        await a.get("/")
        assert (await b.get("/")).status_code == 429


async def test_pass_lets_an_active_visitor_through_without_store_calls(
    h: Harness, alice: httpx.AsyncClient
):
    await alice.get("/seats")
    assert h.store.calls == 1
    for _ in range(20):
        assert (await alice.get("/seats")).status_code == 200
    assert h.store.calls == 1
    h.clock.advance(int(h.settings.gate.cookie.pass_ttl * 1000) + 1)
    r = await alice.get("/seats")
    assert r.status_code == 200
    assert h.store.calls == 2
    assert "set-cookie" in r.headers
    for _ in range(5):
        await alice.get("/seats")
    assert h.store.calls == 2


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


async def test_done_path_frees_the_place_for_the_next_visitor(
    h: Harness, alice: httpx.AsyncClient, bob: httpx.AsyncClient
):
    await alice.get("/seats")
    assert "text/html" in (await bob.get("/seats")).headers["content-type"]
    r = await alice.post("/checkout/complete")
    assert r.status_code == 303
    assert (await h.store.counts("default")).active == 1, "a redirect is not the end yet"
    r = await alice.get("/checkout/complete")
    assert r.status_code == 200 and r.json()["path"] == "/checkout/complete"
    assert (await h.store.counts("default")).active == 0
    # The pass ended with the place: the next request starts over in the queue.
    r = await alice.get("/seats", headers={"accept": "application/json"})
    assert r.json()["status"] == "WAITING"
    await h.tick()
    r = await bob.get("/seats", headers={"accept": "application/json"})
    assert r.json()["path"] == "/seats"


async def test_failed_done_path_keeps_the_place(h: Harness, alice: httpx.AsyncClient):
    await alice.get("/")
    await alice.get("/checkout/complete/../complete-not")
    assert (await h.store.counts("default")).active == 1


async def test_leave_command_header_frees_the_place_and_is_stripped(
    h: Harness, alice: httpx.AsyncClient
):
    await alice.get("/")
    r = await alice.get("/signal-leave")
    assert "x-gatekeeper-command" not in r.headers
    assert (await h.store.counts("default")).active == 0
    cookie = h.gate.codec.loads(r.cookies["gk_session"])
    assert cookie is not None and cookie.pass_until_ms == 0


async def test_origin_gets_a_verifiable_proof_and_never_a_forged_one(
    h: Harness, alice: httpx.AsyncClient
):
    r = await alice.get("/", headers={"x-gatekeeper-proof": "forged"})
    forwarded = r.json()["headers"]
    proof = forwarded["x-gatekeeper-proof"]
    assert proof != "forged"
    sid = verify_proof(PROOF.encode(), proof, now_s=h.clock.now // 1000)
    assert sid is not None and sid.endswith(".default")


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


async def test_bypass_assets_pass_while_the_room_is_full(
    h: Harness, alice: httpx.AsyncClient, bob: httpx.AsyncClient
):
    await alice.get("/")
    r = await bob.get("/static/site.css")
    assert r.json()["path"] == "/static/site.css"
    assert "set-cookie" not in r.headers


async def test_gate_serves_its_api_and_assets(h: Harness, alice: httpx.AsyncClient):
    r = await alice.post("/api/waiting-room/sessions", json={})
    assert r.status_code == 202
    assert (await alice.get("/_gatekeeper/static/waiting.js")).status_code == 200
    assert (await alice.get("/_gatekeeper/static/../config.py")).status_code == 404
    assert (await alice.get("/_gatekeeper/healthz")).status_code == 200
    assert (await alice.get("/_gatekeeper/readyz")).status_code == 200
    assert h.origin.seen == []


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


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    variant=st.sampled_from(
        ["/seats", "/Seats", "//seats", "/seats/../seats", "/./seats", "/static/../seats",
         "/seats;.css", "/seats/", "/SEATS/A1", "/seats%2F..", "/static/..%2Fseats"]
    ),
    method=st.sampled_from(["GET", "HEAD", "POST", "OPTIONS", "PUT", "DELETE"]),
)  # fmt: skip
async def test_path_variants_never_reach_the_origin_while_full(variant: str, method: str):
    h = Harness()
    async with h.client() as a, h.client() as b:
        await a.get("/")
        before = len(h.origin.seen)
        r = await b.request(method, variant)
        assert r.status_code == 200
        assert len(h.origin.seen) == before


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


async def test_explicit_context_manager_runs_the_loop_without_lifespan(h: Harness):
    async with h.gate:
        assert h.gate.runtime.granter._task is not None
    assert h.gate.runtime.granter._task is None


async def test_session_state_is_the_truth_not_the_cookie(h: Harness, alice: httpx.AsyncClient):
    r = await alice.get("/")
    sid = h.gate.codec.loads(set_cookie(r).split(";")[0].split("=", 1)[1]).session_id  # type: ignore[union-attr]
    await h.store.leave(sid, h.gate.runtime.rooms.policy("default"))
    h.clock.advance(10_000)
    ticket = await h.store.poll(sid, h.gate.runtime.rooms.policy("default"))
    assert ticket is not None and ticket.status is Status.LEFT
    r = await alice.get("/", headers={"accept": "application/json"})
    assert r.json()["path"] == "/"


async def test_unlisted_room_from_the_path_is_queued_in_the_default_room():
    h = Harness(gate_settings(**{"rooms.allow-unlisted": False}))
    async with h.client() as c:
        r = await c.get("/events/RANDOM123/seats")
        assert "set-cookie" in r.headers and r.headers["set-cookie"].startswith("gk_session=")
        assert (await h.store.counts("default")).active == 1
        assert "RANDOM123" not in await h.store.rooms()


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


async def admitted_cookie(h: Harness, alice: httpx.AsyncClient) -> str:
    r = await alice.get("/")
    return set_cookie(r).split(";", 1)[0]


async def test_a_known_cookie_header_is_stripped_and_proved_every_time(
    h: Harness, alice: httpx.AsyncClient
):
    ours = await admitted_cookie(h, alice)
    header = f"a=1; {ours}; gk_session-other=x; b=2".encode()
    for _ in range(3):
        status, body = await raw_get(
            h.gate, [(b"cookie", header), (b"x-gatekeeper-proof", b"forged")]
        )
        forwarded = body["headers"]
        assert status == 200 and forwarded["cookie"] == "a=1; b=2"
        sid = verify_proof(PROOF.encode(), forwarded["x-gatekeeper-proof"],
                           now_s=h.clock.now // 1000)  # fmt: skip
        assert sid is not None and sid.endswith(".default")
    only_ours = ours.encode()
    for _ in range(2):
        status, body = await raw_get(h.gate, [(b"cookie", only_ours)])
        assert status == 200 and "cookie" not in body["headers"]
    assert h.store.calls == 1


async def test_a_known_cookie_header_still_renews_in_the_second_half(
    h: Harness, alice: httpx.AsyncClient
):
    ours = await admitted_cookie(h, alice)
    await raw_get(h.gate, [(b"cookie", ours.encode())])
    h.clock.advance(int(h.settings.gate.cookie.pass_ttl * 1000) // 2 + 1)
    r = await alice.get("/")
    assert r.status_code == 200 and "set-cookie" in r.headers
    await h.gate.admission.drain()
    assert h.store.calls == 2


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
    h.clock.advance(int(h.settings.gate.cookie.pass_ttl * 1000) // 2 + 1)
    await raw_get(h.gate, [(b"cookie", ours)])  # renewed at once, checked in the background
    await h.gate.admission.drain()
    async with h.client() as bob:
        assert (await bob.get("/")).status_code == 200  # takes the freed place
    status, body = await raw_get(h.gate, [(b"cookie", ours), (b"accept", b"application/json")])
    assert body["status"] == "WAITING"


async def test_every_cookie_header_is_stripped_whatever_its_case(
    h: Harness, alice: httpx.AsyncClient
):
    ours = (await admitted_cookie(h, alice)).encode()
    for headers in (
        [(b"cookie", ours), (b"cookie", b"a=1; " + ours)],
        [(b"cookie", ours), (b"Cookie", b"a=1; " + ours)],
        [(b"Cookie", b"a=1; " + ours)],
    ):
        for _ in range(2):
            status, body = await raw_get(h.gate, headers)
            assert status == 200
            assert "gk_session" not in json.dumps(body["headers"])
