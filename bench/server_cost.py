"""The HTTP server's own cost per request, in process: gatekeeper's protocol and uvicorn's.

    .venv/bin/python -m bench.server_cost                  # µs per request, side by side
    .venv/bin/python -m bench.server_cost --instructions   # instructions (callgrind), noise-free

Each protocol serves `bench.targets:bare` (a constant JSON answer) to 64 keep-alive
connections whose transports only count writes: the parse, the scope, the task, the ASGI
receive and send, the answer's head, and nothing of the kernel's. What a server adds to every
answer the gate gives; P2, P4 and P6 pay it once per request.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

import uvloop
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from bench.callgrind import per_request
from bench.targets import bare
from gatekeeper.server import LimitedHttpToolsProtocol

PROTOCOLS: dict[str, type[HttpToolsProtocol]] = {
    "gatekeeper": LimitedHttpToolsProtocol,
    "uvicorn": HttpToolsProtocol,
}
REQUEST = b"GET /api/waiting-room/sessions/x HTTP/1.1\r\nHost: bench\r\nUser-Agent: wrk\r\n\r\n"
CONNECTIONS = 64


class CountingTransport(asyncio.Transport):
    """A connection that takes every write and counts the answers."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0
        self._closing = False

    def write(self, data: Any) -> None:
        self.writes += 1

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        self._closing = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 8000) if name in ("peername", "sockname") else default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def per_request_us(which: str, requests: int) -> float:
    """Serve `requests` requests over the connections; µs of CPU per request."""
    config = Config(bare, http=PROTOCOLS[which], loop="uvloop", access_log=False,
                    proxy_headers=False, server_header=False, date_header=False)  # fmt: skip
    config.load()
    state = ServerState()
    conns = []
    for _ in range(CONNECTIONS):
        protocol = PROTOCOLS[which](config=config, server_state=state, app_state={})
        transport = CountingTransport()
        protocol.connection_made(transport)
        conns.append((protocol, transport))
    turns = max(1, requests // CONNECTIONS)
    start = time.process_time()
    for _ in range(turns):
        for protocol, _ in conns:
            protocol.data_received(REQUEST)
        while state.tasks:
            await asyncio.sleep(0)
        await asyncio.sleep(0)  # the callbacks the answers scheduled
    spent = time.process_time() - start
    answered = sum(t.writes for _, t in conns)
    if answered < turns * CONNECTIONS:
        raise SystemExit(f"{which}: {answered} answers to {turns * CONNECTIONS} requests")
    for protocol, transport in conns:
        transport.close()
        protocol.connection_lost(None)
    return spent / (turns * CONNECTIONS) * 1e6


def count_instructions(requests: int) -> None:
    for which in PROTOCOLS:
        per = per_request("bench.server_cost", ["--once", which], requests)
        print(f"{which}: {per:,.0f} instructions per request")


async def compare(requests: int, rounds: int) -> None:
    found: dict[str, list[float]] = {which: [] for which in PROTOCOLS}
    for which in PROTOCOLS:
        await per_request_us(which, requests // 4)  # warm-up
    for i in range(rounds):
        order = list(PROTOCOLS) if i % 2 == 0 else list(reversed(PROTOCOLS))
        for which in order:
            found[which].append(await per_request_us(which, requests))
    mine, theirs = statistics.median(found["gatekeeper"]), statistics.median(found["uvicorn"])
    print(f"gatekeeper's protocol: {mine:.1f} µs per request; uvicorn's httptools protocol: "
          f"{theirs:.1f} µs; ratio {mine / theirs:.2f} (median of {rounds} rounds)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--instructions", action="store_true", help="count with callgrind")
    parser.add_argument("--once", choices=sorted(PROTOCOLS), help=argparse.SUPPRESS)
    a = parser.parse_args()
    if a.once:
        uvloop.run(per_request_us(a.once, a.requests))
    elif a.instructions:
        count_instructions(min(a.requests, 5_000))
    else:
        uvloop.run(compare(a.requests, a.rounds))


if __name__ == "__main__":
    main()
