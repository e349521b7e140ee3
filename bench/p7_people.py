"""P7: visitors as people: the cost of a join with an enqueue token beside one without (the JSON
API, in process, embedded store and Redis), and how often a waiter is let in inside the wait
range it was quoted (bench/eta.py's churning crowds, virtual clock)."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import MutableMapping
from typing import Any

from bench import eta
from bench.procs import Procs
from bench.report import Context, Row
from bench.servers import start_redis
from gatekeeper.app import Service, create_app
from gatekeeper.config import load_config
from gatekeeper.enqueue import EnqueueClaim, mint_enqueue_token
from gatekeeper.store.base import Store
from gatekeeper.store.memory import MemoryStore
from gatekeeper.store.redis import RedisStore

SITE_KEY = "bench-site-enqueue-key-0123456789"
COVERAGE_FLOOR = 0.8


async def _join(app: Service, body: bytes) -> int:
    """One `POST /sessions` through the app, in process; its status."""
    scope = {"type": "http", "method": "POST", "path": "/api/waiting-room/sessions",
             "raw_path": b"/api/waiting-room/sessions", "query_string": b"",
             "headers": [(b"content-type", b"application/json"),
                         (b"content-length", str(len(body)).encode())],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80), "scheme": "http",
             "http_version": "1.1", "root_path": ""}  # fmt: skip
    status = 0
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def _costs(store: Store, joins: int, rounds: int) -> dict[str, float]:
    """µs per join without and with a token: A B B A blocks of `joins`, medians of blocks."""
    settings = load_config(
        None,
        environ={"WAITINGROOM_ENQUEUE_TOKEN_SECRET": SITE_KEY},
        overrides={
            "waitingroom.processing.capacity": 10_000_000,
            "waitingroom.processing.client-joins-per-minute": 0,
        },
    )
    app = create_app(settings, store=store)
    assert isinstance(app, Service)
    expires = int(time.time()) + 3600
    plain = json.dumps({"eventId": "bench"}).encode()
    serial = iter(range(10**9))

    def with_token() -> bytes:
        claim = EnqueueClaim("bench", f"user-{next(serial)}", expires)
        return json.dumps(
            {"eventId": "bench", "enqueueToken": mint_enqueue_token(SITE_KEY, claim)}
        ).encode()

    samples: dict[str, list[float]] = {"plain": [], "token": []}
    for _ in range(rounds):
        for kind in ("plain", "token", "token", "plain"):
            bodies = [plain if kind == "plain" else with_token() for _ in range(joins)]
            started = time.perf_counter()
            for body in bodies:
                assert await _join(app, body) == 202
            samples[kind].append((time.perf_counter() - started) / joins * 1e6)
    return {kind: statistics.median(values) for kind, values in samples.items()}


def _eta_rows() -> list[Row]:
    rows = []
    for result in map(eta.measure, eta.SHAPES):
        share = result.last_inside
        measured = (
            f"**{share:.1%}** of {result.measured} waiters (median high/low "
            f"{result.ratio:.2f}; every quote {result.all_inside:.1%})"
        )
        what = f"ETA range, {result.shape.name} crowd: admitted inside the last quoted range"
        rows.append(
            Row("P7", what, measured, f"≥ {COVERAGE_FLOOR:.0%}", share >= COVERAGE_FLOOR, share)
        )
    return rows


def _cost_row(backend: str, costs: dict[str, float]) -> Row:
    ratio = costs["token"] / costs["plain"]
    measured = f"**{ratio:.2f}×** ({costs['token']:.0f} / {costs['plain']:.0f} µs per join)"
    what = f"join with an enqueue token / without, {backend} (API in process, same run)"
    return Row("P7", what, measured, "—", None, ratio)


def run(ctx: Context, selected: set[str]) -> list[Row]:
    """P7: token join costs on the embedded store and a throwaway Redis, then ETA coverage."""
    out = ctx.dir("p7_people")
    joins, rounds = (500, 2) if ctx.quick else (2_000, 3)
    costs = {"embedded store": asyncio.run(_costs(MemoryStore(), joins, rounds))}
    with Procs(out / "logs") as procs:
        url = start_redis(procs)

        async def on_redis() -> dict[str, float]:
            store = RedisStore.open(
                load_config(None, environ={}, overrides={"waitingroom.redis.url": url}).redis
            )
            try:
                return await _costs(store, joins, rounds)
            finally:
                await store.aclose()

        costs["Redis"] = asyncio.run(on_redis())
    (out / "p7.json").write_text(json.dumps(costs, indent=2))
    return [*(_cost_row(name, c) for name, c in costs.items()), *_eta_rows()]
