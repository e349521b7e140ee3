"""P5: Redis memory per waiting visitor, and the time of one grant step as the queue grows."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from typing import Any, cast

import redis

from bench.procs import BenchError, Procs
from bench.report import Context, Row
from bench.servers import start_redis
from gatekeeper.config.settings import RedisSettings
from gatekeeper.ids import new_session_id
from gatekeeper.store.base import RoomPolicy
from gatekeeper.store.redis import RedisKeys, RedisStore

HOUR_MS = 3_600_000
# Joins see a full room (capacity 1, taken by the first visitor), so every later one waits.
JOIN = RoomPolicy(1, 100, HOUR_MS, HOUR_MS, HOUR_MS, HOUR_MS)
# Grants have room for everyone, so each call admits a full batch of 100.
GRANT = RoomPolicy(10_000_000, 100, HOUR_MS, HOUR_MS, HOUR_MS, HOUR_MS)
MEMORY_AT = 100_000
PIPELINE = 2_000
MAX_BYTES = 300
MAX_GROWTH = 1.5


class _Recorder:
    """Stands in for the Redis client to capture the exact EVALSHA a `RedisStore.join` sends."""

    def __init__(self) -> None:
        self.call: tuple[Any, ...] = ()

    async def evalsha(self, *args: Any) -> list[Any]:
        # The join is the first script a join sends (listing the room may follow).
        self.call = self.call or args
        return ["WAITING", 1, 1, 0, 0, 0, 0, 0, "", 0, ""]  # a ticket (lib.lua)

    async def zadd(self, *args: Any, **kwargs: Any) -> int:
        return 1


def keys_of(room: str) -> RedisKeys:
    """The Redis key names of a room, as the store names them (default prefix)."""
    return RedisStore(cast(Any, _Recorder())).keys(room)


class Loader:
    """Joins through gatekeeper's own join script, pipelined: what `RedisStore.join` sends."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url, decode_responses=True)
        self.url = url

    async def open_room(self, room: str) -> None:
        """The first visitor (admitted at once) through the real store; loads the scripts."""
        store = RedisStore.open(RedisSettings(url=self.url))
        try:
            ticket = await store.join(room, new_session_id(room), JOIN)
        finally:
            await store.aclose()
        if ticket.status.value != "ACTIVE":
            raise BenchError(f"{room}: the first visitor was not admitted")

    async def template(self, room: str) -> tuple[str, list[Any], str]:
        """(sha, numkeys + keys + args, placeholder token) of one join in `room`.

        The token is the random part of the placeholder session id: the call names the session
        by its whole id in some places and by the token alone in others (the waiter's member).
        """
        recorder = _Recorder()
        store = RedisStore(cast(Any, recorder))
        placeholder = new_session_id(room)
        await store.join(room, placeholder, JOIN)
        sha, *rest = recorder.call
        return sha, rest, placeholder.partition(".")[0]

    async def load(self, room: str, n: int) -> float:
        """Queue `n` new waiters in `room`; returns the seconds it took."""
        sha, call, placeholder = await self.template(room)
        slots = [i for i, x in enumerate(call) if isinstance(x, str) and placeholder in x]
        started = time.perf_counter()
        done = 0
        while done < n:
            pipe = self.client.pipeline(transaction=False)
            for _ in range(min(PIPELINE, n - done)):
                token = new_session_id(room).partition(".")[0]
                args = list(call)
                for i in slots:
                    args[i] = args[i].replace(placeholder, token)
                pipe.evalsha(sha, *args)
            replies = pipe.execute()
            if any(r[0] != "WAITING" for r in replies):
                raise BenchError(f"{room}: a join was not queued")
            done += len(replies)
        return time.perf_counter() - started

    def used_memory(self) -> int:
        """INFO memory used_memory, bytes."""
        return int(self.client.info("memory")["used_memory"])

    def waiting(self, room: str) -> int:
        """Live waiters of a room (its waiting set)."""
        return int(self.client.zcard(keys_of(room).waiting))

    def log_every_command(self) -> None:
        """Have the slow log record every command's duration (Redis-side, µs)."""
        self.client.config_set("slowlog-log-slower-than", 0)
        self.client.config_set("slowlog-max-len", 1024)
        self.client.slowlog_reset()

    def script_durations(self) -> list[int]:
        """Redis-side µs of each EVALSHA in the slow log since `log_every_command`."""
        entries: list[dict[str, Any]] = self.client.slowlog_get(1024)
        return [int(e["duration"]) for e in entries if _command(e).startswith("evalsha")]

    def breakdown(self, room: str, n: int) -> dict[str, float]:
        """MEMORY USAGE per waiter of the room's queue structures (a waiter has nothing else)."""
        keys = keys_of(room)
        usage = {
            "waiting zset": self.client.memory_usage(keys.waiting, samples=0),
            "joins stream": self.client.memory_usage(keys.joins, samples=0),
            "waiting-seq hash": self.client.memory_usage(keys.waiting_seq, samples=0),
        }
        return {k: int(v or 0) / n for k, v in usage.items()}


async def grant_times(loader: Loader, room: str, calls: int) -> tuple[float, float]:
    """Medians of `calls` grant steps that each admit 100: ms at the client and in Redis."""
    store = RedisStore.open(RedisSettings(url=loader.url))
    try:
        await store.grant(room, GRANT)  # the first call may re-send the script
        loader.log_every_command()
        times = []
        for _ in range(calls):
            started = time.perf_counter()
            report = await store.grant(room, GRANT)
            times.append((time.perf_counter() - started) * 1000)
            if len(report.granted) != GRANT.batch_size:
                raise BenchError(f"{room}: a grant step admitted {len(report.granted)}, not 100")
        return statistics.median(times), statistics.median(loader.script_durations()) / 1000
    finally:
        await store.aclose()


async def measure(loader: Loader, sizes: list[int], calls: int) -> dict[str, Any]:
    """Memory at MEMORY_AT waiters, then grant-step times at each queue size."""
    main = "p5-queue"
    await loader.open_room(main)
    before = loader.used_memory()
    load_s = await loader.load(main, MEMORY_AT)
    after = loader.used_memory()
    result: dict[str, Any] = {
        "memory": {"waiters": MEMORY_AT, "before": before, "after": after,
                   "bytes_per_waiter": (after - before) / MEMORY_AT,
                   "memory_usage_per_waiter": loader.breakdown(main, MEMORY_AT)},
        "loads": [{"room": main, "loaded": MEMORY_AT, "load_s": load_s}],
        "grant": [],
    }  # fmt: skip
    for size in sorted(sizes):
        if size < (calls + 1) * GRANT.batch_size:
            raise BenchError(f"{size} waiters are too few for {calls + 1} grant steps of 100")
        room = main if size >= MEMORY_AT else f"p5-{size}"
        if room != main:
            await loader.open_room(room)
        missing = size - loader.waiting(room)
        seconds = await loader.load(room, missing) if missing > 0 else 0.0
        at = loader.waiting(room)
        ms, redis_ms = await grant_times(loader, room, calls)
        result["grant"].append({"size": size, "waiting": at, "median_ms": ms, "redis_ms": redis_ms})
        if missing > 0:
            result["loads"].append({"room": room, "loaded": missing, "load_s": seconds})
    return result


def run(ctx: Context, selected: set[str]) -> list[Row]:
    """P5 against a throwaway Redis pinned to the server CPU; the loader runs here (load CPU)."""
    out = ctx.dir("p5_redis")
    sizes = [2_000, 10_000, 100_000] if ctx.quick else [10_000, 100_000, 1_000_000]
    calls = 11 if ctx.quick else 21
    with Procs(out / "logs") as procs:
        loader = Loader(start_redis(procs))
        try:
            result = asyncio.run(measure(loader, sizes, calls))
        finally:
            loader.client.close()
    (out / "p5.json").write_text(json.dumps(result, indent=2))
    return rows(result)


def rows(result: dict[str, Any]) -> list[Row]:
    """Memory per waiter, grant-step medians by queue size, and the loading speed."""
    mem = result["memory"]
    per = mem["bytes_per_waiter"]
    parts = ", ".join(f"{k} {v:.0f} B" for k, v in mem["memory_usage_per_waiter"].items())
    grants = result["grant"]
    growth = grants[-1]["redis_ms"] / grants[0]["redis_ms"]
    sizes = " / ".join(_count(g["size"]) for g in grants)
    redis_ms = " / ".join(f"{g['redis_ms']:.2f}" for g in grants)
    client_ms = " / ".join(f"{g['median_ms']:.2f}" for g in grants)
    load = max(result["loads"], key=lambda x: x["loaded"])
    return [
        Row("P5", f"Redis memory per waiting visitor ({_count(mem['waiters'])} waiting)",
            f"**{per:.0f} B** (used_memory +{(after_mib(mem)):.1f} MiB; MEMORY USAGE: {parts})",
            f"≤ {MAX_BYTES} B", per <= MAX_BYTES, per),
        Row("P5", f"grant step admitting 100, median at {sizes} waiting",
            f"Redis **{redis_ms} ms**, client {client_ms} ms ({growth:.2f}× first to last)",
            f"flat (≤ {MAX_GROWTH}×)", growth <= MAX_GROWTH, growth),
        Row("P5", f"loading {_count(load['loaded'])} waiters (pipelined EVALSHA of join.lua)",
            f"{load['load_s']:.1f} s ({load['loaded'] / max(load['load_s'], 1e-9):,.0f} joins/s)"),
    ]  # fmt: skip


def after_mib(mem: dict[str, Any]) -> float:
    """used_memory growth in MiB."""
    return float(mem["after"] - mem["before"]) / 2**20


def _command(entry: dict[str, Any]) -> str:
    command = entry.get("command", b"")
    text = command.decode(errors="replace") if isinstance(command, bytes) else str(command)
    return text.lower()


def _count(n: int) -> str:
    return f"{n // 1_000_000}M" if n >= 1_000_000 and n % 1_000_000 == 0 else f"{n // 1000}k"
