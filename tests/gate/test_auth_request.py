"""The auth_request endpoint: 204 for admitted visitors, 401 (never a join) for the rest."""

from __future__ import annotations

from tests.gate.harness import Harness, enter

AUTH = "/_gatekeeper/auth"


async def test_admitted_visitor_gets_204_with_cache_lifetime():
    h = Harness()
    async with h.client() as alice:
        await enter(alice, "/seats")
        r = await alice.get(AUTH, headers={"x-original-uri": "/seats?row=A"})
        assert r.status_code == 200
        assert 0 < int(r.headers["x-accel-expires"]) <= 5
        assert "set-cookie" not in r.headers
    assert len(h.origin.seen) == 2


async def test_newcomer_gets_401_and_no_session_is_created():
    h = Harness()
    async with h.client() as bob:
        r = await bob.get(AUTH, headers={"x-original-uri": "/seats"})
        assert r.status_code == 401
        assert r.headers["x-accel-expires"] == "0"
        assert "set-cookie" not in r.headers
    assert (await h.store.counts("default")).active == 0
    assert h.store.calls == 0


async def test_waiting_visitor_gets_401():
    h = Harness()
    async with h.client() as alice, h.client() as bob:
        await alice.get("/")
        await bob.get("/")
        r = await bob.get(AUTH, headers={"x-original-uri": "/"})
        assert r.status_code == 401


async def test_pass_renewal_through_auth_sets_a_cookie_and_is_not_cached():
    h = Harness()
    async with h.client() as alice:
        await alice.get("/")
        h.clock.advance(10_000)
        r = await alice.get(AUTH, headers={"x-original-uri": "/"})
        assert r.status_code == 200
        assert r.headers["set-cookie"].startswith("gk_session=")
        assert r.headers["x-accel-expires"] == "0"


async def test_bypass_paths_are_allowed_without_a_cookie():
    h = Harness()
    async with h.client() as c:
        r = await c.get(AUTH, headers={"x-original-uri": "/static/site.css"})
        assert r.status_code == 200
        r = await c.get(AUTH, headers={"x-original-uri": "/static/..%2Fseats"})
        assert r.status_code == 401


async def test_store_down_is_401_when_failing_closed():
    h = Harness()
    async with h.client() as alice:
        await alice.get("/")
        h.clock.advance(10_000)
        h.store.down = True
        r = await alice.get(AUTH, headers={"x-original-uri": "/"})
        assert r.status_code == 401


async def test_second_half_of_the_pass_is_renewed_after_one_store_call() -> None:
    h = Harness()
    async with h.client() as alice:
        await alice.get("/")
        calls = h.store.calls
        h.clock.advance(3_000)
        r = await alice.get("/")
        assert r.headers["set-cookie"].startswith("gk_session=")
        assert h.store.calls == calls + 1, "the renewal waits for the store"
        # The renewed pass runs from the renewal (5 s from 3 s): still in its first half at 5 s.
        h.clock.advance(2_000)
        r = await alice.get("/", headers={"accept": "application/json"})
        assert r.json()["path"] == "/"
        assert "set-cookie" not in r.headers
        assert h.store.calls == calls + 1, "one store call per pass"
        h.clock.advance(1_000)
        r = await alice.get("/", headers={"accept": "application/json"})
        assert r.json()["path"] == "/" and "set-cookie" in r.headers
        assert h.store.calls == calls + 2


async def test_a_revoked_session_is_refused_at_its_renewal() -> None:
    h = Harness()
    async with h.client() as alice, h.client() as bob:
        r = await enter(alice)
        sid = h.gate.codec.loads(r.cookies["gk_session"]).session_id  # type: ignore[union-attr]
        await enter(bob)
        await h.store.leave(sid, h.gate.runtime.rooms.policy("default"), revoke=True)
        await h.tick()
        h.clock.advance(3_000)
        seen = len(h.origin.seen)
        r = await alice.get("/", headers={"accept": "application/json"})
        assert r.json()["status"] == "WAITING", "the renewal asks the store before the origin"
        assert r.json()["sessionId"] != sid
        assert len(h.origin.seen) == seen
        assert (await bob.get("/", headers={"accept": "application/json"})).json()["path"] == "/"


async def test_no_early_renewal_while_the_store_is_failing():
    h = Harness()
    async with h.client() as alice, h.client() as bob:
        await enter(alice)
        h.store.down = True
        assert (await bob.get("/")).status_code == 503
        h.clock.advance(3_000)
        r = await alice.get("/", headers={"accept": "application/json"})
        assert r.json()["path"] == "/"
        assert "set-cookie" not in r.headers, "a pass must not be stretched during an outage"
        h.clock.advance(2_001)
        assert (await alice.get("/")).status_code == 503
        h.store.down = False
        r = await alice.get("/", headers={"accept": "application/json"})
        assert r.json()["path"] == "/"
