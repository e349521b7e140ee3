"""P4: joins/s and polls/s of one `gatekeeper run` (embedded, Redis) vs a bare JSON endpoint."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from bench.procs import LOAD_CPU, BenchError, Procs, free_port, http_ready
from bench.report import Context, Row, ratio_row
from bench.servers import LONG, start_api, start_redis, url, uvicorn
from bench.wrk import Series, Target, alternate

JOIN_SCRIPT = Path(__file__).resolve().parent / "lua" / "join.lua"
SESSIONS = "/api/waiting-room/sessions"
# Capacity 1 and one visitor inside: every measured join queues (the flash-crowd case), and
# nothing times out or is reaped while the run lasts.
API_ENV = {
    "WAITINGROOM_PROCESSING_CAPACITY": "1",
    "WAITINGROOM_LIFECYCLE_WAITING_TIMEOUT": LONG,
    "WAITINGROOM_LIFECYCLE_IDLE_TIMEOUT": LONG,
    "WAITINGROOM_LIFECYCLE_CLAIM_WINDOW": LONG,
    # wrk is one client address: its joins measure the store, not the per-client join limit.
    "WAITINGROOM_PROCESSING_CLIENT_JOINS_PER_MINUTE": "0",
}


def join(port: int) -> dict[str, object]:
    """One join through the API; its status object."""
    req = urllib.request.Request(url(port, SESSIONS), data=b"{}", method="POST",
                                 headers={"Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(req, timeout=10) as r:
        body: dict[str, object] = json.loads(r.read())
    return body


def waiting_session(port: int) -> str:
    """Fill the room (one ACTIVE visitor), then queue one more: the session id to poll."""
    first, second = join(port), join(port)
    if first.get("status") != "ACTIVE" or second.get("status") != "WAITING":
        raise BenchError(f"unexpected join answers: {first} then {second}")
    return str(second["sessionId"])


def run(ctx: Context, selected: set[str]) -> list[Row]:
    """Joins alternate over the three servers, then polls do."""
    out = ctx.dir("p4_api")
    with Procs(out / "logs") as procs:
        bare = free_port()
        procs.start("bare", uvicorn("bench.targets:bare", bare), ready=http_ready(url(bare)))
        memory = start_api(procs, "gk-embedded", API_ENV)
        # Redis is a service of its own (in production, another host): it runs on the load
        # core, so the ratio is that of the gatekeeper process. Its CPU per call is reported.
        redis_url = start_redis(procs, cpu=LOAD_CPU)
        redis = start_api(procs, "gk-redis", API_ENV, redis_url)
        polls = {name: f"{SESSIONS}/{waiting_session(port)}" for name, port in
                 (("gk-embedded", memory), ("gk-redis", redis))}  # fmt: skip
        polls["bare"] = f"{SESSIONS}/Yx2hN1c0dGsFvQ8mWkPq3A.default"
        ports = {"gk-embedded": memory, "gk-redis": redis, "bare": bare}
        # CPU per request of everything that serves a target; Redis counts for the Redis one.
        serving = {"gk-embedded": ["gk-embedded"], "gk-redis": ["gk-redis", "redis"],
                   "bare": ["bare"]}  # fmt: skip
        cpu = {n: procs.cpu_reader(*names) for n, names in serving.items()}
        join_targets = [Target(n, url(p, SESSIONS), script=JOIN_SCRIPT, cpu=cpu[n])
                        for n, p in ports.items()]  # fmt: skip
        poll_targets = [Target(n, url(p, polls[n]), cpu=cpu[n]) for n, p in ports.items()]
        joins = measure(ctx, join_targets, out / "joins")
        poll = measure(ctx, poll_targets, out / "polls")
    return rows(joins, "joins", 0.40) + rows(poll, "polls", 0.50)


def measure(ctx: Context, targets: list[Target], save_dir: Path) -> dict[str, Series]:
    """Alternate the targets with the run's durations."""
    return alternate(
        targets, seconds=ctx.seconds, rounds=ctx.rounds, warmup=ctx.warmup, save_dir=save_dir
    )


def rows(series: dict[str, Series], what: str, floor: float) -> list[Row]:
    """The embedded and Redis figures as shares of the bare endpoint's."""
    bare, redis = series["bare"].rps, series["gk-redis"]
    return [
        ratio_row("P4", f"{what}/s, embedded store / bare endpoint", series["gk-embedded"].rps,
                  bare, floor),
        ratio_row("P4", f"{what}/s, Redis store / bare endpoint", series["gk-redis"].rps,
                  bare, floor),
        Row("P4", f"server CPU per {what[:-1]}: embedded; Redis (gatekeeper + redis-server); bare",
            f"{series['gk-embedded'].cpu_us:.0f}; {redis.cpu_us_of('gk-redis'):.0f} + "
            f"{redis.cpu_us_of('redis'):.0f}; {series['bare'].cpu_us:.0f} µs"),
    ]  # fmt: skip
