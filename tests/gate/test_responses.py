"""What a visitor who is not let through gets: the waiting page or the JSON status."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from gatekeeper.errors import ConfigError
from gatekeeper.web.pages import Notice
from tests.gate.harness import Harness, gate_settings, set_cookie


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
    assert set_cookie(r).startswith("gk_session=")
    assert len(h.origin.seen) == 1
    again = await bob.get("/seats")
    assert "set-cookie" not in again.headers
    assert "/api/waiting-room/sessions/" in again.text  # with its place: a status to poll


async def test_waiting_visitor_asking_for_json_gets_the_status_object(
    h: Harness, alice: httpx.AsyncClient, bob: httpx.AsyncClient
):
    await alice.get("/seats")
    r = await bob.get("/seats", headers={"accept": "application/json"})
    body = r.json()
    assert body["status"] == "WAITING" and body["position"] == 0
    keys = {"sessionId", "status", "position", "estimatedWaitSeconds", "pollAfterMs", "phase"}
    keys.add("estimatedWaitRange")
    assert set(body) == keys and body["phase"] == "open"


async def test_configured_waiting_status_code():
    h = Harness(gate_settings(**{"gate.waiting-status": 429}))
    async with h.client() as a, h.client() as b:
        await a.get("/")
        assert (await b.get("/")).status_code == 429


def page_language(r: httpx.Response) -> tuple[str, str]:
    found = re.search(r'<html lang="([^"]+)" dir="(ltr|rtl)">', r.text)
    assert found is not None, r.text[:200]
    return found.group(1), found.group(2)


async def test_the_waiting_page_speaks_the_visitors_language(
    h: Harness, alice: httpx.AsyncClient, bob: httpx.AsyncClient
):
    await alice.get("/seats")
    r = await bob.get("/seats", headers={"accept-language": "de-AT,de;q=0.9,en;q=0.5"})
    assert page_language(r) == ("de", "ltr")
    assert "Sie sind in der Warteschlange" in r.text
    assert r.headers["content-language"] == "de"
    assert r.headers["vary"] == "Accept-Language"
    r = await bob.get("/seats", headers={"accept-language": "ar-EG"})
    assert page_language(r) == ("ar", "rtl")
    r = await bob.get("/seats", headers={"accept-language": "x" * 1_000_000})
    assert page_language(r) == ("en", "ltr") and r.headers["vary"] == "Accept-Language"


async def test_a_forced_language_does_not_vary():
    h = Harness(gate_settings(**{"gate.force-language": "ja"}))
    async with h.client() as a, h.client() as b:
        await a.get("/")
        r = await b.get("/", headers={"accept-language": "de"})
        assert page_language(r) == ("ja", "ltr")
        assert r.headers["content-language"] == "ja" and "vary" not in r.headers


async def test_a_room_has_its_own_language():
    rooms = {"tokyo": {"language": "ja"}, "cairo": {"force-language": "ar"}}
    h = Harness(gate_settings(**{"gate.language": "fr", "rooms.overrides": rooms}))
    async with h.client() as a, h.client() as b:
        for room, expected in (("tokyo", "ja"), ("cairo", "ar"), ("other", "fr")):
            await a.get(f"/events/{room}/x")
            r = await b.get(f"/events/{room}/x", headers={"accept-language": "ko"})
            assert page_language(r)[0] == expected, room
        r = await b.get("/events/cairo/x", headers={"accept-language": "de"})
        assert page_language(r) == ("ar", "rtl")


def test_a_configured_language_without_a_catalogue_stops_startup(tmp_path: Path):
    with pytest.raises(ConfigError, match=r"gate\.language: no catalogue for 'ko'"):
        Harness(gate_settings(**{"gate.language": "ko"}))
    (tmp_path / "i18n").mkdir()
    (tmp_path / "i18n" / "ko.json").write_text('{"waiting.title": "대기열에 있습니다"}')
    Harness(gate_settings(**{"gate.language": "ko", "gate.template-dir": str(tmp_path)}))


async def test_the_page_shows_the_wait_as_a_range(
    h: Harness, alice: httpx.AsyncClient, bob: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
):
    rooms = h.gate.runtime.rooms
    status_body = rooms.status_body

    def with_range(ticket: Any) -> dict[str, object]:
        return {**status_body(ticket), "estimatedWaitRange": [240, 420]}

    await alice.get("/seats")
    monkeypatch.setattr(rooms, "status_body", with_range)
    r = await bob.get("/seats")
    assert 'id="gk-eta">about 4–7 minutes<' in r.text
    for odd in (None, [1], ["a", "b"], [500, 100], [True, 5], "240-420"):
        monkeypatch.setattr(
            rooms, "status_body", lambda t, odd=odd: {**status_body(t), "estimatedWaitRange": odd}
        )
        r = await bob.get("/seats")
        assert r.status_code == 200 and "–" not in r.text.split('id="gk-eta">')[1][:40]


async def test_a_waiting_page_that_answers_a_post_knows_it(
    h: Harness, alice: httpx.AsyncClient, bob: httpx.AsyncClient
):
    await alice.get("/seats")
    r = await bob.post("/seats", data={"seat": "A1"})
    assert r.status_code == 200 and 'data-method="POST"' in r.text


async def test_an_invitation_refusal_is_a_final_403_in_the_visitors_language(h: Harness):
    responses = h.gate._parts.responses
    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(message)

    def scope(accept: bytes, language: bytes = b"de") -> dict[str, Any]:
        headers = [(b"accept", accept), (b"accept-language", language)]
        return {"type": "http", "method": "GET", "path": "/", "headers": headers}

    await responses.forbidden(scope(b"text/html"), send, Notice.ENQUEUE_TOKEN_REQUIRED)
    start, body = sent[0], sent[1]["body"].decode()
    assert start["status"] == 403
    headers = dict(start["headers"])
    assert b"retry-after" not in headers and headers[b"content-language"] == b"de"
    assert "Dieser Warteraum ist nur mit Einladung zugänglich" in body
    assert "http-equiv" not in body
    sent.clear()
    await responses.forbidden(scope(b"application/json"), send, Notice.INVALID_ENQUEUE_TOKEN)
    assert sent[0]["status"] == 403
    assert b'"code":"invalid_enqueue_token"' in sent[1]["body"].replace(b" ", b"")
