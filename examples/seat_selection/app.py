"""Seats — Example Arena: a small seat-selection site that knows nothing about any waiting room."""

from __future__ import annotations

import random
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from html import escape
from pathlib import Path
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

__all__ = ["CART_COOKIE", "HOLD_SECONDS", "BoxOffice", "Event", "EVENTS", "app", "create_app"]

SITE_NAME = "Seats — Example Arena"
CART_COOKIE = "seats_cart"
HOLD_SECONDS = 600
ROWS = "ABCDEFGH"
SEATS_PER_ROW = 12
MAX_FORM_BYTES = 4096

_SEAT = re.compile(r"([A-H])([1-9]|1[0-2])")
_CART_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")
_STYLESHEET = (Path(__file__).resolve().parent / "static" / "site.css").read_bytes()


@dataclass(frozen=True, slots=True)
class Event:
    """One concert on sale."""

    id: str
    name: str
    starts: datetime
    venue: str
    blurb: str
    prices: tuple[int, int, int]  # rows A–B, C–E, F–H

    def price(self, seat: str) -> int:
        """The price of a seat, by its row."""
        row = ROWS.index(seat[0])
        return self.prices[0] if row < 2 else self.prices[1] if row < 5 else self.prices[2]


EVENTS: tuple[Event, ...] = (
    Event(
        id="aurora-strings",
        name="Aurora Strings: Winter Tour",
        starts=datetime(2025, 12, 12, 20, 0),
        venue="Main Hall",
        blurb="A string orchestra plays film scores under the northern-lights rig.",
        prices=(95, 65, 45),
    ),
    Event(
        id="neon-harbor",
        name="Neon Harbor Live",
        starts=datetime(2025, 12, 19, 19, 30),
        venue="Main Hall",
        blurb="Synth-pop five-piece, full light show, one night only.",
        prices=(120, 80, 55),
    ),
    Event(
        id="quiet-hours",
        name="The Quiet Hours (acoustic)",
        starts=datetime(2026, 1, 9, 19, 0),
        venue="Studio Theatre",
        blurb="Songs and stories from the trio's new record, unplugged.",
        prices=(60, 45, 30),
    ),
)

ALL_SEATS: tuple[str, ...] = tuple(f"{r}{n}" for r in ROWS for n in range(1, SEATS_PER_ROW + 1))


@dataclass(slots=True)
class Hold:
    """A seat kept for one cart until `until` (clock seconds)."""

    cart: str
    until: float


@dataclass(frozen=True, slots=True)
class Order:
    """A completed purchase."""

    reference: str
    event_id: str
    seat: str
    price: int


@dataclass(slots=True)
class BoxOffice:
    """All state of the site, in memory: sold seats, holds and completed orders."""

    clock: Callable[[], float]
    sold: dict[str, set[str]] = field(default_factory=dict)
    holds: dict[tuple[str, str], Hold] = field(default_factory=dict)
    cart_hold: dict[str, tuple[str, str]] = field(default_factory=dict)
    orders: dict[str, Order] = field(default_factory=dict)

    def held_by(self, event_id: str, seat: str) -> str | None:
        """The cart holding a seat right now, dropping the hold if it has run out."""
        hold = self.holds.get((event_id, seat))
        if hold is None:
            return None
        if hold.until <= self.clock():
            self._release(event_id, seat)
            return None
        return hold.cart

    def is_free(self, event_id: str, seat: str, cart: str | None = None) -> bool:
        """Whether `cart` may hold this seat (free, or already its own)."""
        if seat in self.sold.get(event_id, ()):
            return False
        holder = self.held_by(event_id, seat)
        return holder is None or holder == cart

    def seats_left(self, event_id: str) -> int:
        """How many seats anyone could still pick."""
        return sum(self.is_free(event_id, seat) for seat in ALL_SEATS)

    def hold(self, cart: str, event_id: str, seat: str) -> bool:
        """Hold a seat for a cart, giving up the cart's previous hold; False if it is taken."""
        # No await between the check and the write: on one event loop this is atomic.
        if not self.is_free(event_id, seat, cart):
            return False
        previous = self.cart_hold.get(cart)
        if previous is not None and previous != (event_id, seat):
            self._release(*previous)
        self.holds[(event_id, seat)] = Hold(cart, self.clock() + HOLD_SECONDS)
        self.cart_hold[cart] = (event_id, seat)
        return True

    def current_hold(self, cart: str | None) -> tuple[str, str] | None:
        """The (event id, seat) a cart holds, if the hold is still valid."""
        if cart is None:
            return None
        held = self.cart_hold.get(cart)
        if held is None or self.held_by(*held) != cart:
            return None
        return held

    def complete(self, cart: str) -> Order | None:
        """Sell the cart's held seat; None when it holds nothing (or the hold ran out)."""
        held = self.current_hold(cart)
        if held is None:
            return None
        event_id, seat = held
        self._release(event_id, seat)
        self.sold.setdefault(event_id, set()).add(seat)
        order = Order(
            reference="EA-" + secrets.token_hex(3).upper(),
            event_id=event_id,
            seat=seat,
            price=EVENTS_BY_ID[event_id].price(seat),
        )
        self.orders[cart] = order
        return order

    def _release(self, event_id: str, seat: str) -> None:
        hold = self.holds.pop((event_id, seat), None)
        if hold is not None and self.cart_hold.get(hold.cart) == (event_id, seat):
            del self.cart_hold[hold.cart]


EVENTS_BY_ID = {event.id: event for event in EVENTS}


def _presold(box_office: BoxOffice, share: float) -> None:
    # Seeded by event id so the seat maps look lived-in yet are the same on every start.
    for event in EVENTS:
        rng = random.Random(event.id)
        box_office.sold[event.id] = set(rng.sample(ALL_SEATS, int(len(ALL_SEATS) * share)))


# --- HTML -------------------------------------------------------------------------------------


def _page(title: str, body: str, status_code: int = 200) -> HTMLResponse:
    html = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)} · {escape(SITE_NAME)}</title>
<link rel="stylesheet" href="/static/site.css">
</head>
<body>
<header class="site-header">
  <a id="site-title" class="site-title" href="/">{escape(SITE_NAME)}</a>
  <nav aria-label="Site"><a href="/">Events</a> <a href="/checkout">Your seat</a></nav>
</header>
<main>
{body}
</main>
<footer class="site-footer"><p>An example site. No real tickets are sold here.</p></footer>
</body>
</html>
"""
    return HTMLResponse(html, status_code=status_code, headers={"Cache-Control": "no-store"})


def _when(event: Event) -> str:
    return event.starts.strftime("%a %d %b %Y, %H:%M")


def _money(amount: int) -> str:
    return f"${amount}"


def _error(status_code: int, title: str, message: str) -> HTMLResponse:
    body = f"""<h1>{escape(title)}</h1>
<p>{escape(message)}</p>
<p><a class="button" href="/">See all events</a></p>"""
    return _page(title, body, status_code)


def _cart_of(request: Request) -> str | None:
    value = request.cookies.get(CART_COOKIE)
    return value if value is not None and _CART_ID.fullmatch(value) else None


async def _form(request: Request) -> dict[str, str]:
    # A urlencoded form is all this site posts, so parse it without python-multipart.
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise HTTPException(413, "Form too large")
    fields = parse_qs(body.decode("utf-8", errors="replace"), max_num_fields=20)
    return {key: values[0] for key, values in fields.items() if values}


def _box_office(request: Request) -> BoxOffice:
    box_office: BoxOffice = request.app.state.box_office
    return box_office


# --- Handlers ---------------------------------------------------------------------------------


async def home(request: Request) -> Response:
    """The list of events on sale."""
    box_office = _box_office(request)
    cards = []
    for event in EVENTS:
        left = box_office.seats_left(event.id)
        availability = f"{left} seats left" if left else "Sold out"
        cards.append(
            f"""<li class="event-card">
  <h2><a href="/events/{escape(event.id)}">{escape(event.name)}</a></h2>
  <p class="when">{escape(_when(event))} · {escape(event.venue)}</p>
  <p>{escape(event.blurb)}</p>
  <p class="meta">From {_money(min(event.prices))} · <span>{availability}</span></p>
  <p><a class="button" href="/events/{escape(event.id)}">Choose seats</a></p>
</li>"""
        )
    body = f"""<h1>On sale now</h1>
<ul class="events">
{"".join(cards)}
</ul>"""
    return _page("Events", body)


async def event_page(request: Request) -> Response:
    """The seat map of one event, as a form to pick a seat."""
    event = EVENTS_BY_ID.get(request.path_params["event_id"])
    if event is None:
        return _error(404, "Event not found", "We couldn't find that event. It may have ended.")
    box_office = _box_office(request)
    cart = _cart_of(request)
    held = box_office.current_hold(cart)
    rows = []
    for row in ROWS:
        seats = []
        for number in range(1, SEATS_PER_ROW + 1):
            seat = f"{row}{number}"
            mine = held == (event.id, seat)
            free = box_office.is_free(event.id, seat, cart)
            state = "mine" if mine else "free" if free else "taken"
            label = f"Row {row}, seat {number}, {_money(event.price(seat))}"
            if state == "taken":
                label += ", taken"
            attrs = " checked" if mine else "" if free else " disabled"
            seats.append(
                f'<input type="radio" name="seat" value="{seat}" id="seat-{seat}"{attrs}>'
                f'<label for="seat-{seat}" class="seat {state}" aria-label="{escape(label)}">'
                f"{number}</label>"
            )
        rows.append(
            f'<div class="seat-row" role="group" aria-label="Row {row}">'
            f'<span class="row-label" aria-hidden="true">{row}</span>{"".join(seats)}</div>'
        )
    a, c, f = event.prices
    body = f"""<p class="crumbs"><a href="/">All events</a></p>
<h1>{escape(event.name)}</h1>
<p class="when">{escape(_when(event))} · {escape(event.venue)}</p>
<form method="post" action="/events/{escape(event.id)}/reserve" class="seat-form">
  <fieldset>
    <legend>Pick a seat</legend>
    <div class="stage" aria-hidden="true">Stage</div>
    <div class="seat-map">
{chr(10).join(rows)}
    </div>
    <ul class="legend">
      <li><span class="seat free" aria-hidden="true"></span> Available</li>
      <li><span class="seat taken" aria-hidden="true"></span> Taken</li>
      <li><span class="seat mine" aria-hidden="true"></span> Your seat</li>
    </ul>
    <p class="prices">Rows A–B {_money(a)} · Rows C–E {_money(c)} · Rows F–H {_money(f)}</p>
  </fieldset>
  <p><button type="submit" class="button">Hold this seat</button></p>
</form>"""
    return _page(event.name, body)


async def reserve(request: Request) -> Response:
    """Hold the chosen seat for this browser and go to checkout."""
    event = EVENTS_BY_ID.get(request.path_params["event_id"])
    if event is None:
        return _error(404, "Event not found", "We couldn't find that event. It may have ended.")
    seat = (await _form(request)).get("seat", "").strip().upper()
    if _SEAT.fullmatch(seat) is None:
        return _error(400, "Please pick a seat", "Choose a seat from the map, then try again.")
    cart = _cart_of(request) or secrets.token_urlsafe(18)
    if not _box_office(request).hold(cart, event.id, seat):
        body = f"""<h1>Sorry, seat {seat} was just taken</h1>
<p>Someone else got there first. Please pick another seat.</p>
<p><a class="button" href="/events/{escape(event.id)}">Back to the seat map</a></p>"""
        return _page("Seat taken", body, 409)
    response = RedirectResponse("/checkout", status_code=303)
    response.set_cookie(CART_COOKIE, cart, httponly=True, samesite="lax", path="/")
    return response


async def checkout(request: Request) -> Response:
    """The held seat and a button to complete the purchase."""
    held = _box_office(request).current_hold(_cart_of(request))
    if held is None:
        body = """<h1>Your seat</h1>
<p>You're not holding a seat right now. Holds last 10 minutes.</p>
<p><a class="button" href="/">Choose an event</a></p>"""
        return _page("Checkout", body)
    event = EVENTS_BY_ID[held[0]]
    seat = held[1]
    body = f"""<h1>Checkout</h1>
<div class="summary">
  <h2>{escape(event.name)}</h2>
  <p class="when">{escape(_when(event))} · {escape(event.venue)}</p>
  <p>Row {seat[0]}, seat {seat[1:]} · <strong>{_money(event.price(seat))}</strong></p>
  <p class="note">We'll hold this seat for you for 10 minutes.</p>
</div>
<form method="post" action="/checkout/complete">
  <p><button type="submit" class="button">Complete purchase</button></p>
</form>
<p><a href="/events/{escape(event.id)}">Choose a different seat</a></p>"""
    return _page("Checkout", body)


async def complete(request: Request) -> Response:
    """Sell the held seat, then show the confirmation."""
    cart = _cart_of(request)
    order = _box_office(request).complete(cart) if cart is not None else None
    if order is None:
        body = """<h1>Your hold has ended</h1>
<p>We couldn't find a seat held for you; holds last 10 minutes. Please pick a seat again.</p>
<p><a class="button" href="/">Choose an event</a></p>"""
        return _page("Hold ended", body, 409)
    return RedirectResponse("/checkout/complete", status_code=303)


async def confirmation(request: Request) -> Response:
    """The thank-you page for this browser's latest purchase."""
    cart = _cart_of(request)
    order = _box_office(request).orders.get(cart) if cart is not None else None
    if order is None:
        return _error(404, "No booking found", "We couldn't find a completed booking.")
    event = EVENTS_BY_ID[order.event_id]
    body = f"""<h1>Thank you — your seat is booked</h1>
<div class="summary">
  <h2>{escape(event.name)}</h2>
  <p class="when">{escape(_when(event))} · {escape(event.venue)}</p>
  <p>Row {order.seat[0]}, seat {order.seat[1:]} · {_money(order.price)}</p>
  <p>Booking reference <strong class="reference">{escape(order.reference)}</strong></p>
</div>
<p><a href="/">Back to all events</a></p>"""
    return _page("Booked", body)


async def healthz(request: Request) -> Response:
    """Liveness check."""
    return PlainTextResponse("ok")


async def stylesheet(request: Request) -> Response:
    """The site's one stylesheet."""
    return Response(
        _STYLESHEET,
        media_type="text/css; charset=utf-8",
        headers={"Cache-Control": "public, max-age=3600"},
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    status_code = exc.status_code if isinstance(exc, HTTPException) else 500
    if status_code == 404:
        return _error(404, "Page not found", "There's nothing at this address.")
    if status_code == 405:
        response = _error(405, "Not allowed", "That page can't be used like that.")
        if isinstance(exc, HTTPException) and exc.headers:
            response.headers.update(exc.headers)
        return response
    detail = exc.detail if isinstance(exc, HTTPException) else "Something went wrong."
    return _error(status_code, "Something went wrong", detail)


def create_app(
    *, clock: Callable[[], float] = time.monotonic, presold_share: float = 0.3
) -> Starlette:
    """A fresh site with its own in-memory state; `presold_share` of seats start sold."""
    box_office = BoxOffice(clock=clock)
    _presold(box_office, presold_share)
    application = Starlette(
        routes=[
            Route("/", home, methods=["GET"]),
            Route("/events/{event_id}", event_page, methods=["GET"]),
            Route("/events/{event_id}/reserve", reserve, methods=["POST"]),
            Route("/checkout", checkout, methods=["GET"]),
            Route("/checkout/complete", complete, methods=["POST"]),
            Route("/checkout/complete", confirmation, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/static/site.css", stylesheet, methods=["GET"]),
        ],
        exception_handlers={HTTPException: _http_error},
    )
    application.state.box_office = box_office
    return application


app = create_app()
