"""The challenge before a join counts: proof of work, and an external verifier (siteverify)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from urllib.parse import parse_qs

import pytest

from gatekeeper.config import load_config
from gatekeeper.gate.challenge import Challenges, solve, solves
from tests.gate.harness import ENV, Harness, enter, gate_settings
from tests.gate.test_joins import browser, fill

JSON = {"accept": "application/json"}
POW = {"gate.challenge.kind": "proof-of-work", "gate.challenge.difficulty": 8}


def test_a_proof_of_work_is_bound_to_its_session() -> None:
    sid = "A" * 22 + ".default"
    nonce = solve(sid, 12)
    assert solves(sid, nonce, 12)
    assert not solves("B" * 22 + ".default", nonce, 12) or solves("B" * 22 + ".default", nonce, 0)
    for bad in ("", "-1", "1" * 21, "0x10", " 1", "١٢"):
        assert not solves(sid, bad, 1)


async def placed(h: Harness) -> int:
    return (await h.store.counts("default")).waiting


async def test_a_busy_room_places_only_a_comeback_that_solved_the_work() -> None:
    h = Harness(gate_settings(**POW))
    await fill(h)
    async with browser(h) as alice:
        first = await alice.get("/seats", headers=JSON)
        body = first.json()
        assert body["challenge"] == {
            "kind": "proof-of-work",
            "answerCookie": "gk_session~answer",
            "difficulty": 8,
            "siteKey": "",
        }
        page = (await alice.get("/seats")).text
        assert 'id="gk-challenge"' in page and 'data-difficulty="8"' in page
        assert "needs JavaScript" in page, "without JavaScript the page says what is needed"
        assert await placed(h) == 0, "a comeback without an answer is not placed"
        sid = body["sessionId"]
        wrong = solve("B" * 22 + ".default", 8)
        if not solves(sid, wrong, 8):
            alice.cookies.set("gk_session~answer", wrong, domain="shop.test")
            await alice.get("/seats")
            assert await placed(h) == 0, "another session's answer does not count"
        alice.cookies.set("gk_session~answer", solve(sid, 8), domain="shop.test")
        r = await alice.get("/seats", headers=JSON)
        assert r.json()["status"] == "WAITING" and r.json()["sessionId"] == sid
        assert "challenge" not in r.json()
        assert await placed(h) == 1
        # The answer cookie never reaches the origin.
        await h.tick()
    assert all(
        b"~answer" not in v for s in h.origin.seen for k, v in s["headers"] if k == b"cookie"
    )


async def test_a_room_that_is_not_busy_lets_a_newcomer_in_without_a_challenge() -> None:
    h = Harness(gate_settings(**POW))
    async with browser(h) as alice:
        assert (await enter(alice)).json()["path"] == "/"


async def test_a_room_override_sets_the_challenge_of_one_room() -> None:
    settings = gate_settings(**{"rooms.overrides": {"events": {"challenge": "proof-of-work"}}})
    challenges = Challenges(settings)
    assert challenges.kind("events").value == "proof-of-work"
    assert challenges.kind("default").value == "none"


class SiteVerify:
    """A local stand-in for a Turnstile/hCaptcha siteverify endpoint: single-use tokens."""

    def __init__(self) -> None:
        self.valid = {"good-token", "other-token"}
        self.asked: list[dict[str, list[str]]] = []
        self.server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.lower().split(b"\r\n")
        length = int(
            next(line.split(b":")[1] for line in lines if line.startswith(b"content-length"))
        )
        form = parse_qs((await reader.readexactly(length)).decode())
        self.asked.append(form)
        ok = form.get("secret") == ["s" * 32] and form["response"][0] in self.valid
        self.valid.discard(form["response"][0])
        body = json.dumps({"success": ok}).encode()
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n")
        writer.write(b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body) + body)
        await writer.drain()
        writer.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/siteverify"


@pytest.fixture
async def siteverify() -> AsyncIterator[SiteVerify]:
    stand_in = SiteVerify()
    stand_in.server = await asyncio.start_server(stand_in.handle, "127.0.0.1", 0)
    yield stand_in
    stand_in.server.close()
    await stand_in.server.wait_closed()


def verifier_harness(url: str) -> Harness:
    overrides = {
        "waitingroom.processing.capacity": 1,
        "waitingroom.gate.challenge.kind": "verifier",
        "waitingroom.gate.challenge.verify-url": url,
        "waitingroom.gate.challenge.site-key": "site-key-1",
    }
    environ = {**ENV, "WAITINGROOM_GATE_CHALLENGE_SECRET": "s" * 32}
    return Harness(load_config(None, environ=environ, overrides=overrides))


async def test_an_external_verifier_decides_and_its_tokens_are_single_use(
    siteverify: SiteVerify,
) -> None:
    h = verifier_harness(siteverify.url)
    await fill(h)
    async with browser(h) as alice, browser(h, "203.0.113.9") as bob:
        page = (await alice.get("/")).text
        assert 'class="cf-turnstile"' in page and 'data-sitekey="site-key-1"' in page
        assert "challenges.cloudflare.com/turnstile" in page
        alice.cookies.set("gk_session~answer", "bad-token", domain="shop.test")
        await alice.get("/")
        assert await placed(h) == 0
        alice.cookies.set("gk_session~answer", "good-token", domain="shop.test")
        assert (await alice.get("/", headers=JSON)).json()["status"] == "WAITING"
        assert await placed(h) == 1
        await bob.get("/")
        bob.cookies.set("gk_session~answer", "good-token", domain="shop.test")
        await bob.get("/")
        assert await placed(h) == 1, "a used token does not place a second visitor"
    await h.gate.admission.challenges.aclose()
    assert siteverify.asked[1]["remoteip"] == ["203.0.113.7"]
    assert siteverify.asked[1]["secret"] == ["s" * 32]


async def test_a_verifier_that_does_not_answer_places_nobody_and_breaks_nothing() -> None:
    h = verifier_harness("http://127.0.0.1:9/siteverify")  # nothing listens on port 9
    await fill(h)
    async with browser(h) as alice:
        await alice.get("/")
        alice.cookies.set("gk_session~answer", "good-token", domain="shop.test")
        r = await alice.get("/")
        assert r.status_code == 200 and 'id="gk-challenge"' in r.text
    await h.gate.admission.challenges.aclose()
    assert await placed(h) == 0
