"""The seed's JSON API over ASGI, against every store backend."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from gatekeeper.app import Service, create_app
from gatekeeper.config import Settings, load_config
from gatekeeper.errors import StoreError
from gatekeeper.store.base import Control, Mode, Store
from gatekeeper.store.memory import MemoryStore
from tests.conftest import FakeClock

PREFIX = "/api/waiting-room"


def settings(**overrides: object) -> Settings:
    base: dict[str, object] = {"waitingroom.processing.capacity": 2}
    base.update({f"waitingroom.{k}": v for k, v in overrides.items()})
    return load_config(None, environ={}, overrides=base)


@pytest.fixture
async def app(store: Store) -> Service:
    return create_app(settings(), store=store)


@pytest.fixture
async def client(app: Service) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gk") as c:
        yield c


async def join(client: httpx.AsyncClient, **body: object) -> httpx.Response:
    return await client.post(f"{PREFIX}/sessions", json=body)


async def test_join_returns_202_with_location(client: httpx.AsyncClient):
    r = await join(client, eventId="E1", userId="U1")
    assert r.status_code == 202
    body = r.json()
    assert body["status"] == "ACTIVE"
    assert r.headers["location"] == f"{PREFIX}/sessions/{body['sessionId']}"
    assert r.headers["cache-control"] == "no-store, private"
    assert body["sessionId"].endswith(".E1")


async def test_empty_body_joins_the_default_room(client: httpx.AsyncClient):
    r = await client.post(f"{PREFIX}/sessions")
    assert r.status_code == 202
    assert r.json()["sessionId"].endswith(".default")


async def test_queue_flow_poll_and_leave(app: Service, client: httpx.AsyncClient):
    ids = [(await join(client, eventId="E1")).json()["sessionId"] for _ in range(4)]
    polls = [(await client.get(f"{PREFIX}/sessions/{sid}")).json() for sid in ids]
    assert [p["status"] for p in polls] == ["ACTIVE", "ACTIVE", "WAITING", "WAITING"]
    assert [p["position"] for p in polls[2:]] == [0, 1]
    for p in polls:
        keys = {"sessionId", "status", "position", "estimatedWaitSeconds", "pollAfterMs", "phase"}
        keys.add("estimatedWaitRange")
        assert set(p) == keys and p["phase"] == "open"
        assert 1000 <= p["pollAfterMs"] <= 20000
    r = await client.post(f"{PREFIX}/sessions/{ids[0]}:leave")
    assert r.status_code == 204
    assert (await client.post(f"{PREFIX}/sessions/{ids[0]}:leave")).status_code == 204
    await app.runtime.granter.tick()
    bodies = [(await client.get(f"{PREFIX}/sessions/{sid}")).json() for sid in ids]
    assert [b["status"] for b in bodies] == ["LEFT", "ACTIVE", "ACTIVE", "WAITING"]
    assert [b.get("reason", "-") for b in bodies] == ["left", "-", "-", "-"]


async def test_a_closed_room_refuses_joins_with_409_and_sends_waiters_away(
    app: Service, client: httpx.AsyncClient
):
    ids = [(await join(client, eventId="E1")).json()["sessionId"] for _ in range(3)]
    await app.runtime.store.set_controls("E1", {Control.MODE: Mode.CLOSED})
    r = await join(client, eventId="E1")
    assert r.status_code == 409 and "retry-after" not in r.headers
    assert r.json()["error"]["code"] == "room_closed"
    bodies = [(await client.get(f"{PREFIX}/sessions/{sid}")).json() for sid in ids]
    assert [(b["status"], b.get("reason")) for b in bodies] == [
        ("ACTIVE", None),
        ("ACTIVE", None),
        ("EXPIRED", "closed"),
    ]
    assert (await join(client, eventId="E2")).status_code == 202, "other rooms stay open"
    await app.runtime.store.set_controls("E1", {Control.MODE: None})
    assert (await join(client, eventId="E1")).json()["status"] == "WAITING"


@pytest.mark.parametrize(
    "body",
    [b"{", b"[]", b'"x"', b"\xff\xfe", b'{"eventId": 5}', b'{"userId": []}',
     b'{"eventId": "a b"}', b'{"eventId": "' + b"e" * 65 + b'"}',
     b'{"userId": "' + b"u" * 129 + b'"}', b'{"eventId": "{tag}"}'],
)  # fmt: skip
async def test_bad_join_bodies_get_400(client: httpx.AsyncClient, body: bytes):
    r = await client.post(f"{PREFIX}/sessions", content=body)
    assert r.status_code in (400, 404)
    assert set(r.json()["error"]) == {"code", "message"}


async def test_oversize_body_gets_413(client: httpx.AsyncClient):
    r = await client.post(f"{PREFIX}/sessions", content=b"{" + b" " * 10_000 + b"}")
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "body_too_large"


async def test_oversize_streamed_body_without_length_gets_413(client: httpx.AsyncClient):
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b" " * 1000

    r = await client.post(f"{PREFIX}/sessions", content=chunks())
    assert r.status_code == 413


@pytest.mark.parametrize("path", ["nope", "x" * 22 + ".E1", "../../etc", "a.b.c", "%00", "{sid}"])
async def test_unknown_or_malformed_session_is_404(client: httpx.AsyncClient, path: str):
    r = await client.get(f"{PREFIX}/sessions/{path}")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"
    assert (await client.post(f"{PREFIX}/sessions/{path}:leave")).status_code == 404


async def test_leave_route_is_not_swallowed_by_poll(client: httpx.AsyncClient):
    sid = (await join(client)).json()["sessionId"]
    assert (await client.get(f"{PREFIX}/sessions/{sid}:leave")).status_code == 405
    assert (await client.post(f"{PREFIX}/sessions/{sid}:leave")).status_code == 204
    assert (await client.get(f"{PREFIX}/sessions/{sid}")).json()["status"] == "LEFT"


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [("GET", "/sessions", "POST"), ("DELETE", "/sessions/x", "GET, HEAD"),
     ("PUT", "/sessions/x:leave", "POST")],
)  # fmt: skip
async def test_wrong_method_is_405(client: httpx.AsyncClient, method: str, path: str, allow: str):
    r = await client.request(method, PREFIX + path)
    assert r.status_code == 405
    assert r.headers["allow"] == allow


async def test_unknown_endpoint_is_404_json(client: httpx.AsyncClient):
    for path in (PREFIX, PREFIX + "/other", "/elsewhere"):
        r = await client.get(path)
        assert r.status_code == 404
        assert r.json()["error"]["code"] == "not_found"


async def test_unlisted_event_refused_when_not_allowed():
    app = create_app(
        settings(**{"rooms.allow-unlisted": False, "rooms.overrides": {"E1": {"capacity": 1}}}),
        store=MemoryStore(),
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gk") as c:
        assert (await join(c, eventId="E2")).status_code == 404
        assert (await join(c, eventId="E1")).status_code == 202
        assert (await join(c)).status_code == 202


async def test_eta_comes_from_the_observed_grant_rate():
    clock = FakeClock()
    app = create_app(settings(**{"processing.capacity": 1}), store=MemoryStore(clock))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gk") as c:
        ids = [(await join(c)).json()["sessionId"] for _ in range(12)]
        first = (await c.get(f"{PREFIX}/sessions/{ids[-1]}")).json()
        assert first["estimatedWaitSeconds"] is None
        for sid in ids[:6]:
            await c.post(f"{PREFIX}/sessions/{sid}:leave")
            await app.runtime.granter.tick()
            clock.advance(1000)
            for other in ids[6:]:
                await c.get(f"{PREFIX}/sessions/{other}")
        last = (await c.get(f"{PREFIX}/sessions/{ids[-1]}")).json()
        # ~1 grant/s and 4 people ahead: about 5 s.
        assert last["position"] == 4
        assert 3 <= last["estimatedWaitSeconds"] <= 8


class BrokenStore(MemoryStore):
    async def join(self, *args: object, **kwargs: object):  # type: ignore[override]
        raise StoreError("down")

    async def poll(self, *args: object, **kwargs: object):  # type: ignore[override]
        raise StoreError("down")

    async def ping(self) -> None:
        raise StoreError("down")


async def test_store_down_gives_503_with_retry_after():
    app = create_app(settings(), store=BrokenStore())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gk") as c:
        r = await join(c)
        assert r.status_code == 503
        assert r.headers["retry-after"] == "2"
        assert r.json()["error"]["code"] == "store_unavailable"
        assert (await c.get(f"{PREFIX}/sessions/{'a' * 22}.E1")).status_code == 503
        assert (await c.get("/readyz")).status_code == 503
        assert (await c.get("/healthz")).status_code == 200
        assert (await c.get("/_gatekeeper/healthz")).status_code == 200
        assert (await c.get("/_gatekeeper/readyz")).status_code == 503
