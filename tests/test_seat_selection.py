"""Tests for the example origin site, Seats — Example Arena."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette

from examples.seat_selection.app import CART_COOKIE, EVENTS, HOLD_SECONDS, create_app

EVENT = EVENTS[0].id


class FakeClock:
    """A settable clock in seconds."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def site(clock: FakeClock) -> Starlette:
    return create_app(clock=clock)


def browser(site: Starlette) -> httpx.AsyncClient:
    """One browser on the site, with its own cookies."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=site), base_url="http://arena.test")


@pytest.fixture
async def client(site: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with browser(site) as c:
        yield c


def seat_states(html: str) -> dict[str, str]:
    return dict(re.findall(r'<label for="seat-(\w+)" class="seat (\w+)"', html))


async def free_seat(client: httpx.AsyncClient, event_id: str = EVENT) -> str:
    page = await client.get(f"/events/{event_id}")
    return next(seat for seat, state in seat_states(page.text).items() if state == "free")


async def test_home_lists_events(client: httpx.AsyncClient) -> None:
    response = await client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert 'id="site-title"' in response.text
    assert "Seats — Example Arena" in response.text
    for event in EVENTS:
        assert f'href="/events/{event.id}"' in response.text
    assert "seats left" in response.text


async def test_seat_map_has_every_seat_and_some_taken(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/events/{EVENT}")
    assert response.status_code == 200
    assert 'id="site-title"' in response.text
    assert f'action="/events/{EVENT}/reserve"' in response.text
    states = seat_states(response.text)
    assert len(states) == 8 * 12
    assert {"A1", "H12"} <= states.keys()
    assert "taken" in states.values() and "free" in states.values()
    taken = next(seat for seat, state in states.items() if state == "taken")
    assert re.search(rf'value="{taken}" id="seat-{taken}" disabled>', response.text)


async def test_reserve_checkout_complete_flow(client: httpx.AsyncClient) -> None:
    seat = await free_seat(client)
    reserved = await client.post(f"/events/{EVENT}/reserve", data={"seat": seat})
    assert reserved.status_code == 303
    assert reserved.headers["location"] == "/checkout"
    assert CART_COOKIE in client.cookies

    checkout = await client.get("/checkout")
    assert checkout.status_code == 200
    assert f"Row {seat[0]}, seat {seat[1:]}" in checkout.text
    assert 'action="/checkout/complete"' in checkout.text
    assert "Complete purchase" in checkout.text
    assert 'id="site-title"' in checkout.text

    # My own hold shows as mine on the map.
    assert seat_states((await client.get(f"/events/{EVENT}")).text)[seat] == "mine"

    done = await client.post("/checkout/complete")
    assert done.status_code == 303
    assert done.headers["location"] == "/checkout/complete"

    thanks = await client.get("/checkout/complete")
    assert thanks.status_code == 200
    assert "Thank you — your seat is booked" in thanks.text
    assert re.search(r"EA-[0-9A-F]{6}", thanks.text)
    assert 'id="site-title"' in thanks.text

    # The seat is sold now, for everyone, and the cart is empty.
    assert seat_states((await client.get(f"/events/{EVENT}")).text)[seat] == "taken"
    assert "not holding a seat" in (await client.get("/checkout")).text
    again = await client.post(f"/events/{EVENT}/reserve", data={"seat": seat})
    assert again.status_code == 409


async def test_seat_held_by_someone_else_is_taken(
    site: Starlette, client: httpx.AsyncClient
) -> None:
    seat = await free_seat(client)
    assert (await client.post(f"/events/{EVENT}/reserve", data={"seat": seat})).status_code == 303
    async with browser(site) as rival:
        assert seat_states((await rival.get(f"/events/{EVENT}")).text)[seat] == "taken"
        lost = await rival.post(f"/events/{EVENT}/reserve", data={"seat": seat})
        assert lost.status_code == 409
        assert "was just taken" in lost.text
        assert (await rival.post("/checkout/complete")).status_code == 409


async def test_new_hold_releases_the_previous_one(client: httpx.AsyncClient) -> None:
    first = await free_seat(client)
    await client.post(f"/events/{EVENT}/reserve", data={"seat": first})
    second = await free_seat(client)
    await client.post(f"/events/{EVENT}/reserve", data={"seat": second})
    states = seat_states((await client.get(f"/events/{EVENT}")).text)
    assert states[first] == "free"
    assert states[second] == "mine"


async def test_hold_expires(client: httpx.AsyncClient, clock: FakeClock) -> None:
    seat = await free_seat(client)
    await client.post(f"/events/{EVENT}/reserve", data={"seat": seat})
    clock.now += HOLD_SECONDS + 1
    assert "not holding a seat" in (await client.get("/checkout")).text
    assert (await client.post("/checkout/complete")).status_code == 409
    assert seat_states((await client.get(f"/events/{EVENT}")).text)[seat] == "free"


async def test_unknown_event_is_404(client: httpx.AsyncClient) -> None:
    page = await client.get("/events/no-such-show")
    assert page.status_code == 404
    assert "Event not found" in page.text
    assert 'id="site-title"' in page.text
    post = await client.post("/events/no-such-show/reserve", data={"seat": "A1"})
    assert post.status_code == 404


@pytest.mark.parametrize(
    "form", [{}, {"seat": ""}, {"seat": "Z1"}, {"seat": "A13"}, {"seat": "A0"}]
)
async def test_bad_seat_is_400(client: httpx.AsyncClient, form: dict[str, str]) -> None:
    response = await client.post(f"/events/{EVENT}/reserve", data=form)
    assert response.status_code == 400
    assert 'id="site-title"' in response.text
    assert CART_COOKIE not in client.cookies


async def test_unknown_page_and_wrong_method(client: httpx.AsyncClient) -> None:
    missing = await client.get("/nowhere")
    assert missing.status_code == 404
    assert 'id="site-title"' in missing.text
    wrong = await client.get(f"/events/{EVENT}/reserve")
    assert wrong.status_code == 405


async def test_confirmation_without_booking_is_404(client: httpx.AsyncClient) -> None:
    assert (await client.get("/checkout/complete")).status_code == 404


async def test_healthz_and_stylesheet(client: httpx.AsyncClient) -> None:
    health = await client.get("/healthz")
    assert health.status_code == 200 and health.text == "ok"
    css = await client.get("/static/site.css")
    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")
    assert "http://" not in css.text and "https://" not in css.text


async def test_pages_load_nothing_from_elsewhere(client: httpx.AsyncClient) -> None:
    for path in ("/", f"/events/{EVENT}", "/checkout"):
        html = (await client.get(path)).text
        assert "<script" not in html
        for url in re.findall(r'(?:src|href)="([^"]*)"', html):
            assert url.startswith("/"), url
