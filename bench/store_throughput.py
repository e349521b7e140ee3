"""Join, poll and grant throughput of one process against each store backend, side by side.

    .venv/bin/python -m bench.store_throughput [--redis-url URL] [--n 20000]

Without --redis-url a throwaway redis-server is started on a free port. Figures are operations
per second of one asyncio process with `--concurrency` calls in flight; the last column is the
Redis figure as a share of the embedded store's, measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import time
from collections.abc import Awaitable, Callable

from gatekeeper.config.settings import RedisSettings
from gatekeeper.ids import new_session_id
from gatekeeper.store.base import RoomPolicy, Store
from gatekeeper.store.memory import MemoryStore
from gatekeeper.store.redis import RedisStore

POLICY = RoomPolicy(
    capacity=10_000_000,
    batch_size=500,
    waiting_timeout_ms=600_000,
    claim_window_ms=600_000,
    idle_timeout_ms=600_000,
    retention_ms=600_000,
)
FULL = RoomPolicy(1, 500, 600_000, 600_000, 600_000, 600_000)


async def _bounded(calls: list[Callable[[], Awaitable[object]]], concurrency: int) -> float:
    sem = asyncio.Semaphore(concurrency)

    async def run(call: Callable[[], Awaitable[object]]) -> None:
        async with sem:
            await call()

    start = time.perf_counter()
    await asyncio.gather(*(run(c) for c in calls))
    return time.perf_counter() - start


async def measure(store: Store, n: int, concurrency: int) -> dict[str, float]:
    room = f"bench{time.monotonic_ns()}"
    await store.join(room, new_session_id(room), FULL)
    ids = [new_session_id(room) for _ in range(n)]
    joins = await _bounded([functools.partial(store.join, room, s, FULL) for s in ids], concurrency)
    polls = await _bounded([functools.partial(store.poll, s, FULL) for s in ids], concurrency)
    start = time.perf_counter()
    granted = 0
    while granted < n:
        report = await store.grant(room, POLICY)
        granted += len(report.granted)
        if not report.granted:
            break
    grants = time.perf_counter() - start
    return {"join/s": n / joins, "poll/s": n / polls, "grant/s": granted / grants}


async def main(redis_url: str | None, n: int, concurrency: int) -> None:
    server = None
    if redis_url is None:
        from tests.redis_server import RedisServer

        server = RedisServer().start()
        redis_url = server.url
    try:
        memory = await measure(MemoryStore(), n, concurrency)
        redis_store = RedisStore.open(
            RedisSettings(url=redis_url, key_prefix=f"bench-{time.time_ns()}")
        )
        redis = await measure(redis_store, n, concurrency)
        await redis_store.aclose()
    finally:
        if server is not None:
            server.stop()
    print(f"{n} sessions, {concurrency} calls in flight, one process")
    print(f"{'':10}{'memory':>12}{'redis':>12}{'redis/memory':>14}")
    for key in ("join/s", "poll/s", "grant/s"):
        print(f"{key:10}{memory[key]:>12,.0f}{redis[key]:>12,.0f}{redis[key] / memory[key]:>14.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--redis-url")
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    asyncio.run(main(args.redis_url, args.n, args.concurrency))
