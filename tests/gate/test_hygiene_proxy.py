"""The gate in front of a real ReverseProxy and a real origin: a client's Connection header
cannot make the proxy's hop-by-hop removal strip the headers the gate added."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import uvicorn

from gatekeeper.app import Runtime, WaitingRoom
from gatekeeper.gate.proof import verify_proof
from gatekeeper.proxy.forwarder import ReverseProxy
from tests.conftest import FakeClock
from tests.gate.harness import PROOF, CountingStore, gate_settings
from tests.proxy_helpers import PROXY_CONFIG, Origin, ThreadedServer, listen, port_of


@pytest.fixture(scope="module")
def origin_url() -> Iterator[str]:
    with ThreadedServer(Origin()) as server:
        yield server.url


@pytest.fixture
async def gate_url(origin_url: str) -> AsyncIterator[tuple[str, FakeClock]]:
    """The gate around the proxy, served by uvicorn in this loop as in production."""
    clock = FakeClock()
    # Plain HTTP on loopback: a Secure cookie would not come back.
    settings = gate_settings(**{"gate.cookie.secure": False})
    runtime = Runtime(settings, store=CountingStore(clock), clock=clock)
    app = WaitingRoom(ReverseProxy(origin_url), runtime=runtime, clock=clock)
    sock = listen()
    config = uvicorn.Config(app, log_config=None, log_level="warning", ws="none", **PROXY_CONFIG)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield f"http://127.0.0.1:{port_of(sock)}", clock
    finally:
        server.should_exit = True
        await task
        sock.close()


def _echoed(response: httpx.Response) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in response.json()["headers"]:
        out.setdefault(name, []).append(value)
    return out


async def test_connection_naming_the_gate_headers_cannot_strip_them_at_the_proxy(
    gate_url: tuple[str, FakeClock],
) -> None:
    url, clock = gate_url
    naming = {"connection": "keep-alive, x-gatekeeper-proof, x-request-id, x-custom"}
    async with httpx.AsyncClient(base_url=url, timeout=10) as alice:
        for path in ("/seats", "/seats", "/app.css"):  # full path, hot path, bypass
            r = await alice.get(path, headers={**naming, "x-custom": "hop", "x-kept": "yes"})
            echoed = _echoed(r)
            assert r.status_code == 200 and r.json()["raw_path"] == path
            assert len(echoed["x-request-id"]) == 1, path
            assert echoed["x-kept"] == ["yes"]
            assert "x-custom" not in echoed  # the rest of Connection still works
            if path == "/app.css":
                assert "x-gatekeeper-proof" not in echoed
            else:
                (proof,) = echoed["x-gatekeeper-proof"]
                assert verify_proof(PROOF.encode(), proof, now_s=clock.now // 1000)
