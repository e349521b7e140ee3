"""The middleware examples work as their docstrings say: the gate queues, the done path frees.

Starlette runs in-process; the Django and FastAPI shops are served by uvicorn in a child process
(the embedded store), driven over HTTP by two visitors.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from examples import middleware_starlette
from gatekeeper.app import WaitingRoom
from gatekeeper.ids import room_of
from tests.gate.harness import lifespan
from tests.processes import stop, wait_until_ready
from tests.redis_server import free_port

ROOT = Path(__file__).resolve().parent.parent
PROOF_SECRET = "example-proof-secret-0123456789abcdef"


def find_gate(app: object) -> WaitingRoom:
    node = app.middleware_stack  # type: ignore[attr-defined]
    while not isinstance(node, WaitingRoom):
        node = node.app
    return node


async def test_middleware_example_queues_the_third_visitor_and_frees_on_purchase():
    app = middleware_starlette.app
    async with lifespan(app):
        transport = httpx.ASGITransport(app=app)
        clients = [httpx.AsyncClient(transport=transport, base_url="http://shop") for _ in range(3)]
        try:
            a, b, c = clients
            assert "Sneaker drop" in (await a.get("/")).text
            assert "Sneaker drop" in (await b.get("/")).text
            assert "in line" in (await c.get("/")).text.lower()
            assert (await a.post("/buy")).status_code == 303
            assert "Thanks" in (await a.get("/thanks")).text
            await find_gate(app).runtime.granter.tick()
            assert "Sneaker drop" in (await c.get("/")).text
        finally:
            for client in clients:
                await client.aclose()


@contextmanager
def served(app: str, log: Path) -> Iterator[str]:
    """`uvicorn <app>` on a free port with the embedded store and a proof secret; its base URL."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAITINGROOM_")}
    env["WAITINGROOM_GATE_PROOF_SECRET"] = PROOF_SECRET
    env["WAITINGROOM_PROCESSING_RATE_MS"] = "50"  # the freed place is granted sooner
    command = [sys.executable, "-m", "uvicorn", app, "--port", str(port), "--lifespan", "on"]
    with log.open("wb") as log_file:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log_file, stderr=log_file)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(proc, f"{base}/_gatekeeper/readyz", log, app)
        yield base
    finally:
        stop(proc)


def shop_through_the_gate(base: str, title: str) -> httpx.Cookies:
    """Capacity 1: the first visitor shops (the origin sees the gate's proof), the second waits
    on the waiting page, and is let in once the first reaches the done path; the second's
    cookies (now holding the place)."""
    with httpx.Client(base_url=base, timeout=5) as first, httpx.Client(base_url=base) as second:
        page = first.get("/")
        assert page.status_code == 200 and title in page.text
        vouched = re.search(r"Admitted as ([^<]+)</p>", page.text)
        assert vouched is not None, "the origin saw no valid proof header"
        assert room_of(vouched.group(1)) is not None

        waiting = second.get("/")
        assert "in line" in waiting.text.lower() and title not in waiting.text
        assert "no-store" in waiting.headers["cache-control"]

        assert first.post("/buy").headers["location"] == "/thanks"
        assert "Thanks for your order" in first.get("/thanks").text

        deadline = time.monotonic() + 10
        while title not in (page := second.get("/")).text:
            assert time.monotonic() < deadline, "the freed place never reached the second visitor"
            time.sleep(0.1)
        assert "Admitted as" in page.text
        return second.cookies


def test_django_asgi_example_queues_the_second_visitor_and_frees_on_purchase(
    tmp_path: Path,
) -> None:
    with served("examples.django.asgi:application", tmp_path / "django.log") as base:
        shop_through_the_gate(base, "Concert tickets")


def test_fastapi_example_queues_the_second_visitor_and_frees_on_purchase(
    tmp_path: Path,
) -> None:
    with served("examples.fastapi.app:app", tmp_path / "fastapi.log") as base:
        admitted = shop_through_the_gate(base, "Festival passes")
        json_only = {"accept": "application/json"}
        with (
            httpx.Client(base_url=base, cookies=admitted) as second,
            httpx.Client(base_url=base) as third,
        ):
            assert second.get("/api/stock", headers=json_only).json() == {"passes": 42}
            status = third.get("/api/stock", headers=json_only)
            assert status.json()["status"] == "WAITING"
