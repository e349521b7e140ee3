"""The gate's own CPU per admitted request, in-process: the gate around a no-op app vs the app.

    .venv/bin/python -m bench.gate_cost [--requests 50000] [--rounds 4]
    .venv/bin/python -m bench.gate_cost --instructions   # needs valgrind

No sockets and no origin, so the figure is the gate alone (what P1 pays per request on top of
the proxy), repeatable within a few percent on a busy machine. Rounds alternate A B B A.
`--instructions` counts instructions instead (callgrind: the same total whatever else the
machine does), from two runs of different lengths so that start-up cancels out.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from bench.callgrind import per_request
from gatekeeper.app import WaitingRoom
from gatekeeper.asgi import Message, Receive, Scope, Send
from gatekeeper.config import load_config

BODY = b"x" * 2048
START: Message = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"text/html"), (b"content-length", b"2048")],
}
END: Message = {"type": "http.response.body", "body": BODY}


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """The least an origin can do: one 2 KB answer."""
    await send(START)
    await send(END)


async def receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def send(message: Message) -> None:
    return None


def scope_with(cookie: bytes) -> Scope:
    """What uvicorn hands over for wrk's request (Host and Cookie headers)."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8080),
        "client": ("127.0.0.1", 50000),
        "scheme": "http",
        "method": "GET",
        "root_path": "",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1:8080"), (b"cookie", cookie)],
    }


async def per_request_us(target: object, scope: Scope, n: int) -> float:
    """Microseconds per call of `target(scope, receive, send)`, CPU time of this process."""
    call = target
    started = time.process_time()
    for _ in range(n):
        await call(dict(scope), receive, send)  # type: ignore[operator]
    return (time.process_time() - started) / n * 1e6


def admitted_gate() -> tuple[WaitingRoom, Scope]:
    """The gate around the no-op app, and a request carrying an admitted visitor's cookie."""
    gate = WaitingRoom(app, load_config(overrides={"waitingroom.gate.cookie.pass-ttl": 3600}))
    pass_until = gate.admission.clock() + 3_600_000
    sid = "Yx2hN1c0dGsFvQ8mWkPq3A.default"
    header = gate.admission.set_cookie("default", sid, pass_until, scope_with(b""))
    cookie = header[1].split(b";", 1)[0]
    return gate, scope_with(cookie)


async def calls(which: str, n: int) -> None:
    """`n` calls of the gate or of the app alone (what one callgrind run counts)."""
    gate, scope = admitted_gate()
    async with gate:
        await per_request_us(gate if which == "gate" else app, scope, n)


def count_instructions(requests: int) -> None:
    per = {
        which: per_request("bench.gate_cost", ["--calls", which], requests)
        for which in ("gate", "app")
    }
    print(f"gate around a no-op app: {per['gate']:,.0f} instructions/request; "
          f"the app alone: {per['app']:,.0f}")  # fmt: skip
    print(f"the gate's own cost: {per['gate'] - per['app']:,.0f} instructions per admitted request")


async def main(requests: int, rounds: int) -> None:
    gate, scope = admitted_gate()
    async with gate:
        await per_request_us(gate, scope, 2000)
        gated: list[float] = []
        bare: list[float] = []
        for i in range(rounds):
            order = (gate, app) if i % 2 == 0 else (app, gate)
            for target in order:
                us = await per_request_us(target, scope, requests)
                (gated if target is gate else bare).append(us)
    g, b = statistics.median(gated), statistics.median(bare)
    print(f"gate around a no-op app: {g:.1f} µs/request; the app alone: {b:.1f} µs/request")
    print(f"the gate's own cost: {g - b:.1f} µs per admitted request ({rounds} rounds, A B B A)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--instructions", action="store_true", help="count with callgrind")
    parser.add_argument("--calls", choices=("gate", "app"), help=argparse.SUPPRESS)
    a = parser.parse_args()
    import uvloop

    uvloop.install()
    if a.calls:
        asyncio.run(calls(a.calls, a.requests))
    elif a.instructions:
        count_instructions(min(a.requests, 10_000))
    else:
        asyncio.run(main(a.requests, a.rounds))
