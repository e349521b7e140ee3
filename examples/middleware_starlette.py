"""Wrapping your own ASGI app: a Starlette shop with the waiting room as middleware.

Run it with `uvicorn examples.middleware_starlette:app --port 8000`. The store and grant loop
start and stop with the app's lifespan; set WAITINGROOM_REDIS_URL to share one Redis between
several processes, and WAITINGROOM_GATE_COOKIE_KEYS so they accept each other's cookies.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from gatekeeper import WaitingRoom, load_config


async def home(request: Request) -> Response:
    return HTMLResponse(
        "<h1 id='site-title'>Sneaker drop</h1>"
        "<form method='post' action='/buy'><button>Buy the last pair</button></form>"
    )


async def buy(request: Request) -> Response:
    return RedirectResponse("/thanks", status_code=303)


async def thanks(request: Request) -> Response:
    # /thanks is a done path: showing it (a 2xx answer) releases the buyer's place.
    return HTMLResponse("<h1 id='site-title'>Thanks for your order</h1>")


settings = load_config(
    overrides={
        "waitingroom.processing.capacity": 2,
        "waitingroom.gate.done-paths": ["/thanks"],
        "waitingroom.gate.cookie.secure": False,
    }
)

app = Starlette(
    routes=[Route("/", home), Route("/buy", buy, methods=["POST"]), Route("/thanks", thanks)]
)
app.add_middleware(WaitingRoom, settings=settings)
