"""A flash-crowd arrival's CPU, in process: the lazy join's first page, then the comeback.

    .venv/bin/python -m bench.arrival_cost [--visitors 2000] [--rounds 5]

A full room (capacity 1, taken), the embedded store, a browser's headers: each visitor asks
for `/` without a cookie (the lazy join: the waiting page and a cookie, nothing written), then
again with the cookie (the join that takes the place: the waiting page with a position). No
sockets, so the figures are the gate alone, what P6 pays per arrival on top of the server's
own cost per request. The median of the rounds' µs per page, CPU time of this process.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from gatekeeper.app import WaitingRoom
from gatekeeper.asgi import Headers, Message, Receive, Scope, Send
from gatekeeper.config import load_config
from gatekeeper.store.memory import MemoryStore

BROWSER: Headers = [
    (b"host", b"shop.test"),
    (b"accept", b"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
    (b"accept-language", b"en-GB,en;q=0.9"),
    (b"user-agent", b"Mozilla/5.0 (X11; Linux x86_64) bench"),
]


async def origin(scope: Scope, receive: Receive, send: Send) -> None:
    """Never reached: the room is full."""
    raise AssertionError("a newcomer reached the origin")


async def page(gate: WaitingRoom, cookie: bytes | None) -> Headers:
    """One GET / through the gate; the answer's headers (a 200 waiting page is checked)."""
    headers = BROWSER + ([(b"cookie", cookie)] if cookie else [])
    scope: Scope = {"type": "http", "method": "GET", "path": "/", "raw_path": b"/",
                    "query_string": b"", "headers": headers, "client": ("198.51.100.7", 1),
                    "server": ("shop.test", 443), "scheme": "https", "http_version": "1.1",
                    "root_path": ""}  # fmt: skip
    answer: list[Message] = []
    asked = False

    async def receive() -> Message:
        nonlocal asked
        if asked:
            await asyncio.Event().wait()  # the client stays: no disconnect
        asked = True
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        answer.append(message)

    await gate(scope, receive, send)
    if answer[0]["status"] != 200 or b"gk-room" not in answer[1]["body"]:
        raise SystemExit(f"expected a waiting page, got {answer[0]['status']}")
    return list(answer[0]["headers"])


def cookie_of(headers: Headers) -> bytes:
    found = [v for k, v in headers if k == b"set-cookie" and v.startswith(b"gk_session=")]
    return found[0].split(b";", 1)[0]


async def main(visitors: int, rounds: int) -> None:
    environ = {"WAITINGROOM_GATE_COOKIE_KEYS": "bench-arrival-key-0123456789abcdef"}
    settings = load_config(environ=environ, overrides={
        "waitingroom.gate.origin": "http://127.0.0.1:9",
        "waitingroom.processing.capacity": 1,
        "waitingroom.processing.client-joins-per-minute": 0,
    })  # fmt: skip
    gate = WaitingRoom(origin, settings, store=MemoryStore())
    async with gate:
        runtime = gate.runtime
        holder = await runtime.store.join("default", "Yx2hN1c0dGsFvQ8mWkPq3A.default",
                                          runtime.rooms.policy("default"))  # fmt: skip
        assert holder.status.value == "ACTIVE"
        first: list[float] = []
        back: list[float] = []
        for round_ in range(rounds + 1):
            spent = [0.0, 0.0]
            for _ in range(visitors):
                started = time.process_time()
                cookie = cookie_of(await page(gate, None))
                middle = time.process_time()
                await page(gate, cookie)
                spent[0] += middle - started
                spent[1] += time.process_time() - middle
            if round_:  # the first round warms up
                first.append(spent[0] / visitors * 1e6)
                back.append(spent[1] / visitors * 1e6)
    f, b = statistics.median(first), statistics.median(back)
    print(f"first page (lazy join): {f:.0f} µs; comeback (join, page with a place): {b:.0f} µs; "
          f"an arrival: {f + b:.0f} µs ({rounds} rounds of {visitors} visitors)")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--visitors", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    a = parser.parse_args()
    import uvloop

    uvloop.install()
    asyncio.run(main(a.visitors, a.rounds))
