"""The FastAPI example shop with the waiting room as middleware."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import FastAPI, Header
from fastapi.responses import HTMLResponse, RedirectResponse

from gatekeeper import WaitingRoom, load_config
from gatekeeper.gate.proof import verify_proof

settings = load_config(
    overrides={
        "waitingroom.processing.capacity": 1,
        "waitingroom.gate.done-paths": ["/thanks"],
        "waitingroom.gate.cookie.secure": False,  # plain http on localhost
    }
)

app = FastAPI(title="Example shop")
app.add_middleware(WaitingRoom, settings=settings)


def admitted_session(proof: str) -> str | None:
    """The session id the gate's proof header vouches for; None when absent or not valid."""
    if not settings.proof_secret:
        return None
    return verify_proof(settings.proof_secret.encode(), proof, now_s=int(time.time()))


@app.get("/", response_class=HTMLResponse)
async def home(x_gatekeeper_proof: Annotated[str, Header()] = "") -> str:
    # The header's name is gate.proof-header; this example keeps the default.
    session = admitted_session(x_gatekeeper_proof)
    vouched = f"<p id='admitted'>Admitted as {session}</p>" if session else ""
    return (
        "<h1 id='site-title'>Festival passes</h1>"
        f"{vouched}<form method='post' action='/buy'><button>Buy a pass</button></form>"
    )


@app.post("/buy")
async def buy() -> RedirectResponse:
    return RedirectResponse("/thanks", status_code=303)


@app.get("/thanks", response_class=HTMLResponse)
async def thanks() -> str:
    # /thanks is a done path: showing it (a 2xx answer) releases the buyer's place.
    return "<h1 id='site-title'>Thanks for your order</h1>"


@app.get("/api/stock")
async def stock() -> dict[str, int]:
    """A JSON route: behind the gate too, so a waiting client gets the JSON status instead."""
    return {"passes": 42}
