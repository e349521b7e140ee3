"""ASGI apps the benchmarks serve: a fixed 2 KB origin page, and the proxy with or without gate."""

from __future__ import annotations

import os

from gatekeeper.app import create_app
from gatekeeper.config import load_config
from gatekeeper.http import Receive, Scope, Send
from gatekeeper.proxy import ReverseProxy

PAGE = b"<!doctype html><title>seat map</title>" + b"<p>seat</p>" * 180


async def origin(scope: Scope, receive: Receive, send: Send) -> None:
    """A constant 2 KB HTML page (lifespan ignored)."""
    if scope["type"] != "http":
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/html"), (b"content-length", b"%d" % len(PAGE))],
        }
    )
    await send({"type": "http.response.body", "body": PAGE})


def proxy() -> ReverseProxy:
    """The reverse proxy alone (gate off) in front of $BENCH_ORIGIN."""
    return ReverseProxy(os.environ["BENCH_ORIGIN"])


def gated() -> object:
    """The gate in front of the same proxy, embedded store, pass TTL from $BENCH_PASS_TTL."""
    settings = load_config(
        overrides={
            "waitingroom.gate.origin": os.environ["BENCH_ORIGIN"],
            "waitingroom.processing.capacity": 1000,
            "waitingroom.gate.cookie.secure": False,
            "waitingroom.gate.cookie.pass-ttl": float(os.environ.get("BENCH_PASS_TTL", "60")),
        }
    )
    return create_app(settings)
