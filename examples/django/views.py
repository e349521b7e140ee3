"""The example shop: a product page, a purchase, and the thank-you page that frees the place."""

from __future__ import annotations

import time

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect

from gatekeeper.gate.proof import verify_proof


def admitted_session(request: HttpRequest) -> str | None:
    """The session id the gate's proof header vouches for; None when absent or not valid."""
    gate = settings.GATEKEEPER
    if not gate.proof_secret:
        return None
    proof = request.headers.get(gate.gate.proof_header, "")
    return verify_proof(gate.proof_secret.encode(), proof, now_s=int(time.time()))


def home(request: HttpRequest) -> HttpResponse:
    session = admitted_session(request)
    vouched = f"<p id='admitted'>Admitted as {session}</p>" if session else ""
    return HttpResponse(
        "<h1 id='site-title'>Concert tickets</h1>"
        f"{vouched}<form method='post' action='/buy'><button>Buy a ticket</button></form>"
    )


def buy(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    return HttpResponseRedirect("/thanks", status=303)


def thanks(request: HttpRequest) -> HttpResponse:
    # /thanks is a done path: showing it (a 2xx answer) releases the buyer's place.
    return HttpResponse("<h1 id='site-title'>Thanks for your order</h1>")
