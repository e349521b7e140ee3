"""Closing a room (sold out) at the gate and the APIs: by an operator, by the origin, reopening."""

from __future__ import annotations

import httpx

from gatekeeper.config import Settings, load_config
from gatekeeper.errors import StoreError
from gatekeeper.store.base import Control, EndReason, Mode, Status
from tests.gate.harness import ENV, Harness, enter
from tests.gate.test_joins import JSON, browser

TOKEN = "t" * 32
ADMIN = "/_gatekeeper/admin"
SESSIONS = "/api/waiting-room/sessions"


def close_settings() -> Settings:
    """The harness's room (one place) with the operator API on."""
    return load_config(
        None,
        environ={**ENV, "WAITINGROOM_ADMIN_TOKEN": TOKEN},
        overrides={"waitingroom.processing.capacity": 1},
    )


def operator(h: Harness) -> httpx.AsyncClient:
    c = browser(h, "192.0.2.200")
    c.headers["authorization"] = f"Bearer {TOKEN}"
    return c


async def session_id(c: httpx.AsyncClient) -> str:
    """The session of a waiter's cookie, as the gate's JSON status tells it."""
    body = (await c.get("/", headers=JSON)).json()
    assert body["status"] == "WAITING", body
    return str(body["sessionId"])


class Crowd:
    """One admitted visitor (place claimed) and two in line."""

    def __init__(self, h: Harness) -> None:
        self.admitted = browser(h, "198.51.100.1")
        self.waiters = [browser(h, "198.51.100.2"), browser(h, "198.51.100.3")]

    async def arrive(self) -> None:
        assert (await enter(self.admitted)).json()["path"] == "/"
        for waiter in self.waiters:
            assert 'id="gk-room"' in (await enter(waiter)).text  # the waiting page

    async def aclose(self) -> None:
        for c in (self.admitted, *self.waiters):
            await c.aclose()


def assert_closed_page(r: httpx.Response) -> None:
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assert "This sale has closed" in r.text
    # A final answer: nothing brings the page back (no refresh, no polling script).
    assert "retry-after" not in r.headers
    assert 'http-equiv="refresh"' not in r.text and "<script" not in r.text
    assert r.headers["cache-control"].startswith("no-store")


def assert_closed_json(r: httpx.Response) -> None:
    assert r.status_code == 409 and "retry-after" not in r.headers
    assert r.json()["error"]["code"] == "room_closed"


async def assert_turned_away(h: Harness) -> None:
    """Newcomers of every kind get the closed answer, and nothing is written."""
    before = await h.store.counts("default")
    async with browser(h, "203.0.113.50") as newcomer:
        assert_closed_page(await newcomer.get("/"))
        assert_closed_page(await newcomer.get("/"))  # the cookie back: still no join
        assert_closed_json(await newcomer.get("/", headers=JSON))
        assert_closed_json(await newcomer.post(SESSIONS, json={}))
    after = await h.store.counts("default")
    assert (after.waiting, after.active) == (before.waiting, before.active)


async def assert_still_admitted(h: Harness, c: httpx.AsyncClient) -> None:
    """An admitted visitor goes on, renewals (store polls) included."""
    for _ in range(3):
        h.clock.advance(int(h.settings.gate.cookie.pass_ttl * 1000))
        r = await c.get("/")
        assert r.status_code == 200 and r.json()["path"] == "/"


async def test_an_operator_closes_a_room_and_every_waiter_sees_it_within_one_poll() -> None:
    h = Harness(close_settings())
    crowd = Crowd(h)
    await crowd.arrive()
    bob, carol = crowd.waiters
    bob_id = await session_id(bob)
    async with operator(h) as op:
        r = await op.post(f"{ADMIN}/rooms/default:close")
        assert r.status_code == 200 and r.json()["mode"] == "closed"
        audit = (await op.get(f"{ADMIN}/audit")).json()["entries"][0]
    assert (audit["action"], audit["room"], audit["detail"]) == (
        "room",
        "default",
        '{"mode":"closed"}',
    )
    assert audit["actor"].startswith("admin")
    # The waiting page's poll: EXPIRED with its reason, so the page reloads ...
    poll = await bob.get(f"{SESSIONS}/{bob_id}")
    assert poll.status_code == 200
    assert (poll.json()["status"], poll.json()["reason"]) == ("EXPIRED", "closed")
    # ... into the closed page, without joining again.
    assert_closed_page(await bob.get("/"))
    assert "set-cookie" not in (await bob.get("/")).headers
    # A script asking the gate itself gets the API's answer.
    assert_closed_json(await carol.get("/", headers=JSON))
    assert_closed_page(await carol.get("/"))
    counts = await h.store.counts("default")
    assert (counts.waiting, counts.active) == (0, 1)
    await assert_turned_away(h)
    await assert_still_admitted(h, crowd.admitted)
    text = h.gate.runtime.metrics.render()[0].decode()
    assert 'gatekeeper_sessions_ended_total{reason="closed",room="default"} 2.0' in text
    assert 'gatekeeper_gate_decisions_total{decision="closed"}' in text
    await crowd.aclose()


async def test_waiters_who_stopped_polling_are_sent_away_by_the_grant_loop() -> None:
    h = Harness(close_settings())
    crowd = Crowd(h)
    await crowd.arrive()
    ids = [await session_id(w) for w in crowd.waiters]
    await h.store.set_controls("default", {Control.MODE: Mode.CLOSED})
    await h.tick()
    for sid in ids:
        ticket = await h.store.poll(sid, h.gate.runtime.rooms.policy("default"))
        assert ticket is not None and (ticket.status, ticket.reason) == (
            Status.EXPIRED,
            EndReason.CLOSED,
        )
        assert not ticket.ended, "the grant step ended it"
    text = h.gate.runtime.metrics.render()[0].decode()
    assert 'gatekeeper_sessions_ended_total{reason="closed",room="default"} 2.0' in text
    for waiter in crowd.waiters:
        assert_closed_page(await waiter.get("/"))
    await crowd.aclose()


async def test_a_room_closed_by_another_replica_turns_newcomers_away_at_once() -> None:
    # This replica's grant loop has not seen the close yet: the store refuses the join.
    h = Harness(close_settings())
    crowd = Crowd(h)
    await crowd.arrive()
    await h.store.set_controls("default", {Control.MODE: Mode.CLOSED})
    assert h.gate.runtime.rooms.mode("default") is Mode.OPEN
    await assert_turned_away(h)
    assert_closed_json(await crowd.waiters[0].get("/", headers=JSON))
    await assert_still_admitted(h, crowd.admitted)
    await crowd.aclose()


async def test_the_origin_closes_the_room_with_a_response_header() -> None:
    h = Harness(close_settings())
    crowd = Crowd(h)
    await crowd.arrive()
    r = await crowd.admitted.get("/signal-close")
    assert r.status_code == 200 and r.json()["path"] == "/signal-close"
    assert "x-gatekeeper-command" not in r.headers, "the command is the gate's, not the browser's"
    assert await h.store.controls("default") == {Control.MODE: Mode.CLOSED}
    assert h.gate.runtime.rooms.mode("default") is Mode.CLOSED
    entries = await h.store.audit_log(10)
    assert [(e["action"], e["room"], e["detail"], e["actor"]) for e in entries] == [
        ("room", "default", '{"mode":"closed"}', "origin")
    ]
    # Said again (every response after the last seat, say): closed already, nothing more.
    await crowd.admitted.get("/signal-close")
    assert len(await h.store.audit_log(10)) == 1
    for waiter in crowd.waiters:
        assert_closed_page(await waiter.get("/"))
    await assert_turned_away(h)
    await assert_still_admitted(h, crowd.admitted)
    await crowd.aclose()


async def test_the_close_command_can_come_with_leave() -> None:
    h = Harness(close_settings())
    crowd = Crowd(h)
    await crowd.arrive()
    await crowd.admitted.get("/signal-close")
    r = await crowd.admitted.get("/signal-leave")
    assert "x-gatekeeper-command" not in r.headers
    # The last visitor left a closed room: their next request is turned away too.
    assert_closed_page(await crowd.admitted.get("/"))
    await crowd.aclose()


async def test_a_reopened_room_lets_newcomers_and_the_sent_away_in_again() -> None:
    h = Harness(close_settings())
    crowd = Crowd(h)
    await crowd.arrive()
    bob = crowd.waiters[0]
    async with operator(h) as op:
        await op.post(f"{ADMIN}/rooms/default:close")
        assert_closed_page(await bob.get("/"))
        r = await op.post(f"{ADMIN}/rooms/default:reopen")
        assert r.status_code == 200 and r.json()["mode"] == "open"
        assert [e["detail"] for e in (await op.get(f"{ADMIN}/audit")).json()["entries"]] == [
            '{"mode":null}',
            '{"mode":"closed"}',
        ]
    # Bob's session ended; after the reopen he joins again at the back of the line.
    r = await bob.get("/", headers=JSON)
    assert r.status_code == 200 and r.json()["status"] == "WAITING" and "reason" not in r.json()
    async with browser(h, "203.0.113.60") as newcomer:
        assert (await enter(newcomer, headers=JSON)).json()["status"] == "WAITING"
        joined = await newcomer.post(SESSIONS, json={})
        assert joined.status_code == 202
    await crowd.aclose()


async def test_an_origin_close_the_store_cannot_take_is_logged_and_the_answer_goes_on() -> None:
    h = Harness(close_settings())
    crowd = Crowd(h)
    await crowd.arrive()

    async def down(room: str, changes: dict[str, str | None]) -> None:
        raise StoreError("down")

    h.store.set_controls = down  # type: ignore[method-assign]
    r = await crowd.admitted.get("/signal-close")
    assert r.status_code == 200 and "x-gatekeeper-command" not in r.headers
    assert await h.store.controls("default") == {}
    assert await h.store.audit_log(10) == []
    text = h.gate.runtime.metrics.render()[0].decode()
    assert 'gatekeeper_store_errors_total{operation="gate"} 1.0' in text
    await crowd.aclose()
