"""The JSON API's joins with enqueue tokens, against every store backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from gatekeeper.app import Service, create_app
from gatekeeper.config import load_config
from gatekeeper.enqueue import EnqueueClaim, mint_enqueue_token
from gatekeeper.store.base import Store
from tests.conftest import FakeClock

PREFIX = "/api/waiting-room"
KEY = "site-secret-0123456789"
CONFIG = """
waitingroom:
  processing: {capacity: 1}
  rooms:
    overrides:
      presale: {require-enqueue-token: true}
"""


@pytest.fixture
async def client(
    store: Store, clock: FakeClock, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    settings = load_config(path, environ={"WAITINGROOM_ENQUEUE_TOKEN_SECRET": KEY})
    app: Service = create_app(settings, store=store, clock=clock)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gk") as c:
        yield c


def token(clock: FakeClock, user: str, room: str = "presale", priority: int = 0) -> str:
    claim = EnqueueClaim(room, user, clock.now // 1000 + 600, priority)
    return mint_enqueue_token(KEY, claim)


async def join(client: httpx.AsyncClient, **body: object) -> httpx.Response:
    return await client.post(f"{PREFIX}/sessions", json={"eventId": "presale", **body})


async def test_a_room_that_needs_a_token_refuses_a_join_without_a_valid_one(
    client: httpx.AsyncClient, clock: FakeClock
):
    r = await join(client)
    assert (r.status_code, r.json()["error"]["code"]) == (403, "enqueue_token_required")
    for bad in ("v1.x.y", token(clock, "u", room="other"), token(clock, "u")[:-2] + "00"):
        r = await join(client, enqueueToken=bad)
        assert (r.status_code, r.json()["error"]["code"]) == (403, "invalid_enqueue_token")
    r = await join(client, enqueueToken=42)
    assert r.status_code == 400
    # Rooms without the rule behave as before, and a userId alone is a label.
    r = await client.post(f"{PREFIX}/sessions", json={"eventId": "other", "userId": "u"})
    assert r.status_code == 202


async def test_one_user_one_place_through_the_api(client: httpx.AsyncClient, clock: FakeClock):
    first = (await join(client, enqueueToken=token(clock, "holder"))).json()
    assert first["status"] == "ACTIVE"
    alice = await join(client, enqueueToken=token(clock, "alice"), userId="ignored")
    again = await join(client, enqueueToken=token(clock, "alice"))
    assert again.status_code == 202
    assert again.json()["sessionId"] == alice.json()["sessionId"]
    assert again.headers["location"].endswith(alice.json()["sessionId"])
    assert again.json()["position"] == alice.json()["position"] == 0
    bob = (await join(client, enqueueToken=token(clock, "bob"))).json()
    assert bob["position"] == 1


async def test_a_priority_token_goes_ahead_of_earlier_waiters(
    client: httpx.AsyncClient, clock: FakeClock
):
    await join(client, enqueueToken=token(clock, "holder"))
    plain = [(await join(client, enqueueToken=token(clock, f"p{i}"))).json() for i in range(2)]
    vip = (await join(client, enqueueToken=token(clock, "vip", priority=10))).json()
    assert vip["position"] == 0
    polled = await client.get(f"{PREFIX}/sessions/{plain[0]['sessionId']}")
    assert polled.json()["position"] == 1
