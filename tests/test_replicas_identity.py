"""Visitors as people on three replicas against one Redis: one place per user, priority with
the cap held, and operators' messages and session caps seen by every replica."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from gatekeeper.enqueue import EnqueueClaim, mint_enqueue_token
from tests.cluster_rig import COOKIE, Rig, RigSettings, new_client

pytestmark = [pytest.mark.redis]

SITE_KEY = "rig-site-enqueue-key-0123456789"
JSON = {"accept": "application/json"}


def token(user: str, priority: int = 0, room: str = "default") -> str:
    claim = EnqueueClaim(room, user, int(time.time()) + 600, priority)
    return mint_enqueue_token(SITE_KEY, claim)


async def follow(rig: Rig, client: httpx.AsyncClient, replica: int, link: str) -> httpx.Response:
    """A browser following the site's link through one replica: the 303, then the page."""
    base = rig.replicas[replica].url
    r = await client.get(base + link, headers=JSON)
    assert r.status_code == 303, r.text
    assert "gk-enqueue" not in r.headers["location"]
    return await client.get(base + r.headers["location"], headers=JSON)


async def next_admitted(
    rig: Rig, watch: dict[str, httpx.AsyncClient], seen: list[str]
) -> list[str]:
    """The names let in after one place frees, polled until at least one is."""
    deadline = time.monotonic() + 20
    found: list[str] = []
    while not found and time.monotonic() < deadline:
        for name, client in watch.items():
            if name not in seen:
                r = await client.get(rig.replicas[0].url + "/p", headers=JSON)
                if r.json().get("origin"):
                    found.append(name)
        await asyncio.sleep(0.05)
    return found


async def test_one_place_per_user_and_priority_across_three_replicas(
    redis_url: str, tmp_path: Path
) -> None:
    env = (
        ("WAITINGROOM_ENQUEUE_TOKEN_SECRET", SITE_KEY),
        ("WAITINGROOM_GATE_REQUIRE_ENQUEUE_TOKEN", "true"),
    )
    settings = RigSettings(replicas=3, capacity=2, rate_ms=50, batch_size=5, extra_env=env)
    async with Rig(redis_url, tmp_path, settings) as rig:
        sampler = rig.sampler().start()
        clients = [new_client() for _ in range(8)]
        try:
            holders = [await follow(rig, clients[i], i, f"/p?gk-enqueue={token(f'h{i}')}")
                       for i in range(2)]  # fmt: skip
            assert all(r.json().get("origin") for r in holders)
            # alice from three browsers, one per replica: one session, one place.
            alice = [await follow(rig, clients[2 + i], i, f"/p?gk-enqueue={token('alice')}")
                     for i in range(3)]  # fmt: skip
            sids = {r.json()["sessionId"] for r in alice}
            assert len(sids) == 1 and [r.json()["position"] for r in alice] == [0, 0, 0]
            cookies = [rig.reader.loads(str(c.cookies.get(COOKIE))) for c in clients[2:5]]
            assert all(v is not None and v.session_id in sids for v in cookies), "each got one"
            bob = await follow(rig, clients[5], 1, f"/p?gk-enqueue={token('bob')}")
            assert bob.json()["position"] == 1
            # A presale member joins last, through the third replica, and goes first.
            vip = await follow(rig, clients[6], 2, f"/p?gk-enqueue={token('vip', 20)}")
            assert vip.json()["position"] == 0
            after = await clients[2].get(rig.replicas[0].url + "/p", headers=JSON)
            assert after.json()["position"] == 1
            # No token, or a bad one: 403 on every replica, and nothing written.
            for i in range(3):
                r = await clients[7].get(rig.replicas[i].url + "/p", headers=JSON)
                assert (r.status_code, r.json()["error"]["code"]) == (
                    403,
                    "enqueue_token_required",
                )
                r = await clients[7].get(rig.replicas[i].url + "/p?gk-enqueue=v1.x.y", headers=JSON)
                assert r.json()["error"]["code"] == "invalid_enqueue_token"
            # The holders leave one at a time: the first place goes to the vip, the next to
            # alice, bob still waits (the cap of 2 held all along). One at a time, because two
            # places freed together are granted in one tick, in an order no poll can see.
            watch = {"vip": clients[6], "alice": clients[2], "bob": clients[5]}
            order: list[str] = []
            for i in range(2):
                await clients[i].get(rig.replicas[i].url + "/done", headers=JSON)
                order += await next_admitted(rig, watch, order)
            assert order == ["vip", "alice"]
            assert await rig.origin.leaked() == 0, "an enqueue token reached the origin"
        finally:
            sampler.stop()
            await asyncio.gather(*(c.aclose() for c in clients))
        assert sampler.max <= 2, f"active reached {sampler.max} > 2"
        waiting = await asyncio.to_thread(rig.redis.zcard, f"{rig.prefix}:{{default}}:waiting")
        assert waiting == 1  # bob; the 403s and alice's second and third browsers wrote nothing


async def test_a_message_and_a_session_cap_reach_every_replica_within_one_tick(
    redis_url: str, tmp_path: Path
) -> None:
    settings = RigSettings(replicas=3, capacity=1, rate_ms=100, batch_size=5)
    async with Rig(redis_url, tmp_path, settings) as rig:
        admitted, waiter = new_client(), new_client()
        try:
            for client in (admitted, waiter):  # the page, then the comeback with the cookie
                for _ in range(2):
                    await client.get(rig.replicas[0].url + "/p", headers=JSON)
            text = "Doors open at 7: bring your ID"
            await rig.admin(0, "PATCH", "/rooms/default", {"message": text})
            await rig.admin(0, "PATCH", "/rooms/default", {"maxSessionSeconds": 2})
            await asyncio.sleep(0.1 * 1.5)  # one tick of every replica, and some
            sid = rig.reader.loads(str(admitted.cookies.get(COOKIE)))
            assert sid is not None
            for replica in (1, 2):
                body = (await waiter.get(rig.replicas[replica].url + "/p", headers=JSON)).json()
                assert body["status"] == "WAITING" and body["message"] == text
                status = await rig.control.get(
                    f"{rig.replicas[replica].url}/api/waiting-room/sessions/{sid.session_id}"
                )
                assert status.json()["status"] == "ACTIVE" and "endsAt" in status.json()
            # Busy all along, and ended by the cap all the same: the waiter gets the place.
            deadline, reached = time.monotonic() + 10, None
            while reached is None and time.monotonic() < deadline:
                await admitted.get(rig.replicas[2].url + "/p", headers=JSON)
                body = (await waiter.get(rig.replicas[1].url + "/p", headers=JSON)).json()
                reached = body if body.get("origin") else None
                await asyncio.sleep(0.1)
            assert reached is not None, "the capped session did not make room"
            ended = await rig.control.get(
                f"{rig.replicas[1].url}/api/waiting-room/sessions/{sid.session_id}"
            )
            assert (ended.json()["status"], ended.json()["reason"]) == ("EXPIRED", "session_limit")
        finally:
            await admitted.aclose()
            await waiter.aclose()
