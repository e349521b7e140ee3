"""Enqueue tokens at the gate: the link's redirect, one place per user, 403 without a token."""

from __future__ import annotations

import httpx

from gatekeeper.config import load_config
from gatekeeper.enqueue import EnqueueClaim, mint_enqueue_token
from tests.gate.harness import ENV, Harness, set_cookie

SITE_KEY = "site-secret-0123456789"
JSON = {"accept": "application/json"}


def harness(**overrides: object) -> Harness:
    base: dict[str, object] = {
        "waitingroom.processing.capacity": 1,
        "waitingroom.gate.require-enqueue-token": True,
        "waitingroom.processing.client-joins-per-minute": 0,
    }
    base.update({f"waitingroom.{k}": v for k, v in overrides.items()})
    env = {**ENV, "WAITINGROOM_ENQUEUE_TOKEN_SECRET": SITE_KEY}
    return Harness(load_config(None, environ=env, overrides=base))


def token(h: Harness, user: str, room: str = "default", priority: int = 0) -> str:
    expires = h.clock.now // 1000 + 600
    return mint_enqueue_token(SITE_KEY, EnqueueClaim(room, user, expires, priority))


async def arrive(c: httpx.AsyncClient, h: Harness, user: str, **extra: object) -> httpx.Response:
    """A visitor following the site's link: the redirect, then the page it points to."""
    r = await c.get(f"/seats?a=1&gk-enqueue={token(h, user, **extra)}&b=%20")  # type: ignore[arg-type]
    assert r.status_code == 303, r.text
    assert r.headers["location"] == "/seats?a=1&b=%20"
    assert r.headers["referrer-policy"] == "no-referrer"
    return await c.get(r.headers["location"], headers=JSON)


async def test_a_link_with_a_token_places_the_user_and_cleans_the_address(
    alice: httpx.AsyncClient,
) -> None:
    h = harness()
    async with h.client() as holder, h.client() as alice:
        assert (await arrive(holder, h, "holder")).json()["path"] == "/seats"
        body = (await arrive(alice, h, "alice")).json()
        assert body["status"] == "WAITING" and body["position"] == 0
        seen = [s["query_string"] for s in h.origin.seen]
        assert all(b"gk-enqueue" not in q for q in seen), "the token never reaches the origin"


async def test_the_same_user_from_another_browser_gets_the_same_place() -> None:
    h = harness()
    async with h.client() as holder, h.client() as first, h.client() as second:
        await arrive(holder, h, "holder")
        async with h.client() as zed:
            await arrive(zed, h, "zed")
        one = (await arrive(first, h, "alice")).json()
        two = (await arrive(second, h, "alice")).json()
        assert two["sessionId"] == one["sessionId"] and two["position"] == one["position"] == 1
        first.cookies.clear()  # a cleared cookie and a fresh token: the same place again
        three = (await arrive(first, h, "alice")).json()
        assert three["sessionId"] == one["sessionId"]
        assert (await h.store.counts("default")).waiting == 2


async def test_without_a_valid_token_the_room_answers_403() -> None:
    h = harness()
    async with h.client() as c:
        r = await c.get("/seats", headers=JSON)
        assert (r.status_code, r.json()["error"]["code"]) == (403, "enqueue_token_required")
        assert "set-cookie" not in r.headers
        for bad in ("v1.a.b", token(h, "u", room="other"), token(h, "u")[:-1] + "x"):
            r = await c.get(f"/seats?gk-enqueue={bad}", headers=JSON)
            assert (r.status_code, r.json()["error"]["code"]) == (403, "invalid_enqueue_token")
        page = await c.get("/seats")
        assert page.status_code == 403 and "text/html" in page.headers["content-type"]
        assert "retry-after" not in page.headers
        assert not h.origin.seen
    assert (await h.store.counts("default")).waiting == 0


async def test_the_header_works_for_clients_that_are_not_browsers_and_is_never_forwarded() -> None:
    h = harness()
    async with h.client() as c:
        r = await c.get("/seats", headers={"x-gatekeeper-enqueue": token(h, "bot-ok")})
        assert r.status_code == 200 and r.json()["path"] == "/seats"
        assert "x-gatekeeper-enqueue" not in r.json()["headers"]
        assert set_cookie(r).startswith("gk_session=")
        again = await c.get("/seats", headers={"x-gatekeeper-enqueue": "anything"})
        assert "x-gatekeeper-enqueue" not in again.json()["headers"]


async def test_an_admitted_visitor_following_the_link_again_is_redirected_not_forwarded() -> None:
    h = harness()
    async with h.client() as c:
        await arrive(c, h, "alice")
        r = await c.get(f"/seats?gk-enqueue={token(h, 'alice')}")
        assert r.status_code == 303 and r.headers["location"] == "/seats"
        assert all(b"gk-enqueue" not in s["query_string"] for s in h.origin.seen)


async def test_a_redirect_never_leaves_the_site() -> None:
    h = harness()
    async with h.client() as c:
        for path in ("//evil.example/x", "/\\evil.example/x"):
            r = await c.get(f"{path}?gk-enqueue={token(h, 'u' + path[1])}")
            assert r.status_code == 303
            assert r.headers["location"].startswith("/") and r.headers["location"][1] not in "/\\"


async def test_priority_from_the_token_and_rooms_without_the_rule() -> None:
    h = harness(**{"gate.require-enqueue-token": False})
    async with h.client() as holder, h.client() as plain, h.client() as vip:
        await holder.get("/seats")
        await plain.get("/seats", headers=JSON)
        assert (await plain.get("/seats", headers=JSON)).json()["position"] == 0
        body = (await arrive(vip, h, "vip", priority=5)).json()
        assert body["position"] == 0
        assert (await plain.get("/seats", headers=JSON)).json()["position"] == 1
        # A bad token in a room without the rule is as good as none: a plain visitor.
        async with h.client() as other:
            r = await other.get("/seats?gk-enqueue=v1.bad.token", headers=JSON)
            assert r.status_code == 303
