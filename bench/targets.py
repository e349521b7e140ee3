"""ASGI apps the benchmarks serve: a 2 KB origin page, a constant JSON, and the proxy ± gate."""

from __future__ import annotations

import json
import os

from gatekeeper.app import create_app
from gatekeeper.asgi import Receive, Scope, Send
from gatekeeper.config import load_config
from gatekeeper.proxy.forwarder import ReverseProxy

PAGE = b"<!doctype html><title>seat map</title>" + b"<p>seat</p>" * 180

# Shaped like the API's status object, so both sides of the P4 ratio send a similar answer.
STATUS = json.dumps(
    {
        "sessionId": "Yx2hN1c0dGsFvQ8mWkPq3A.default",
        "status": "WAITING",
        "position": 1234,
        "estimatedWaitSeconds": 56,
        "pollAfterMs": 5000,
    },
    separators=(",", ":"),
).encode()


async def _drain(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body"):
            return


async def origin(scope: Scope, receive: Receive, send: Send) -> None:
    """A constant 2 KB HTML page for any method and path (lifespan ignored)."""
    if scope["type"] != "http":
        return
    await _drain(receive)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/html"), (b"content-length", b"%d" % len(PAGE))],
        }
    )
    await send({"type": "http.response.body", "body": PAGE})


async def bare(scope: Scope, receive: Receive, send: Send) -> None:
    """The least a JSON endpoint can do: read the request, answer a constant object."""
    if scope["type"] != "http":
        return
    await _drain(receive)
    status = 202 if scope["method"] == "POST" else 200
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(STATUS))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": STATUS})


def proxy() -> ReverseProxy:
    """The gate off: gatekeeper's reverse proxy alone, configured exactly as `gated()`'s."""
    settings = load_config(overrides={"waitingroom.gate.origin": os.environ["BENCH_ORIGIN"]})
    return ReverseProxy(settings.gate.origin, settings.proxy)


def gated() -> object:
    """What `gatekeeper run --origin $BENCH_ORIGIN` serves; the rest from WAITINGROOM_*."""
    return create_app(
        load_config(overrides={"waitingroom.gate.origin": os.environ["BENCH_ORIGIN"]})
    )
