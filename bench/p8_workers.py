"""P8: more than one core: `gatekeeper run --workers 1` vs `--workers 2`, one Redis, wrk.

Both gatekeepers proxy the 2 KB origin and share one Redis (key prefixes of their own). Each
is driven with an admitted visitor's cookie (every request let through on its pass) and with
joins (`POST` to the API in a full room: every join queues, one store script each). CPU per
request is read from /proc for every process that serves it: the gatekeeper (with 2 workers,
the supervisor and both workers), Redis, the origin, and wrk itself.

On a 2-core machine the second worker has no core of its own: the one worker runs on CPU 0,
the two workers on CPUs 0 and 1, and wrk, Redis and the origin always on CPU 1, so the
second worker competes with the load generator. The throughput ratio is what that leaves;
the CPU per request is the figure that carries over to a machine with cores to spare.
"""

from __future__ import annotations

import os
import resource
import sys
from collections.abc import Callable
from pathlib import Path

from bench.p4_api import JOIN_SCRIPT, SESSIONS
from bench.procs import (
    LOAD_CPU,
    SERVER_CPU,
    BenchError,
    Procs,
    children,
    free_port,
    http_ready,
)
from bench.report import Context, Row, ratio_row
from bench.servers import BASE_ENV, HEALTH, LONG, admitted_cookie, get, start_redis, url, uvicorn
from bench.targets import PAGE
from bench.wrk import Series, Target, alternate

WORKERS = (1, 2)
# Capacity 1, taken by the cookie's visitor: every measured join queues, and the pass outlives
# the run, so wrk's one fixed cookie needs no renewal (as in P1 and P4).
ENV = {
    "WAITINGROOM_PROCESSING_CAPACITY": "1",
    "WAITINGROOM_GATE_COOKIE_PASS_TTL": LONG,
    "WAITINGROOM_LIFECYCLE_WAITING_TIMEOUT": LONG,
    "WAITINGROOM_LIFECYCLE_IDLE_TIMEOUT": LONG,
    "WAITINGROOM_LIFECYCLE_CLAIM_WINDOW": LONG,
    "WAITINGROOM_PROCESSING_CLIENT_JOINS_PER_MINUTE": "0",
}
CPU_NOTE = (
    "2 cores: 1 worker on CPU 0; 2 workers on CPUs 0-1, sharing CPU 1 with wrk, Redis and "
    "the origin"
)


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _listening(port: int) -> int:
    """How many sockets listen on `port` (one per worker that has started)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            count += int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A"
    return count


def start_gatekeeper(procs: Procs, workers: int, origin: int, redis_url: str) -> int:
    """`gatekeeper run --workers N` in proxy mode on Redis; returns once every worker listens."""
    port = free_port()
    cpus = str(SERVER_CPU) if workers == 1 else f"{SERVER_CPU},{LOAD_CPU}"
    # Procs pins to one CPU; the inner taskset widens it (both exec in place: one pid).
    cmd = ["taskset", "-c", cpus, sys.executable, "-m", "gatekeeper", "run", "--host",
           "127.0.0.1", "--port", str(port), "--log-level", "warning", "--origin",
           url(origin).rstrip("/"), "--redis-url", redis_url,
           "--workers", str(workers)]  # fmt: skip
    env = {**BASE_ENV, **ENV, "WAITINGROOM_REDIS_KEY_PREFIX": f"bench-w{workers}"}
    procs.start(f"gk-{workers}w", cmd, env=env, ready=lambda: _listening(port) == workers)
    if not http_ready(url(port, HEALTH))():
        raise BenchError(f"gatekeeper with {workers} workers does not answer")
    return port


def _cpu_reader(procs: Procs, name: str) -> Callable[[], dict[str, float]]:
    """CPU seconds so far of the gatekeeper (all its processes), Redis, the origin and wrk
    (wrk is this process's waited-for child: its time is in RUSAGE_CHILDREN after each run)."""

    def read() -> dict[str, float]:
        pid = procs.pid(name)
        waited = resource.getrusage(resource.RUSAGE_CHILDREN)
        return {
            "gatekeeper": _cpu_s(pid) + sum(_cpu_s(c) for c in children(pid)),
            "redis": procs.cpu_seconds("redis"),
            "origin": procs.cpu_seconds("origin"),
            "wrk": waited.ru_utime + waited.ru_stime,
        }

    return read


def run(ctx: Context, selected: set[str]) -> list[Row]:
    """Admitted requests, then joins, alternating 1 and 2 workers."""
    out = ctx.dir("p8_workers")
    # Other work on the machine takes from the second worker first: say how busy it was.
    load = os.getloadavg()[0]
    with Procs(out / "logs") as procs:
        redis_url = start_redis(procs, cpu=LOAD_CPU)
        origin = free_port()
        procs.start("origin", uvicorn("bench.targets:origin", origin), cpu=LOAD_CPU,
                    ready=http_ready(url(origin)))  # fmt: skip
        ports = {n: start_gatekeeper(procs, n, origin, redis_url) for n in WORKERS}
        cookies = {n: admitted_cookie(port) for n, port in ports.items()}
        for n, port in ports.items():  # fresh connections reach every worker
            if any(get(port, "/", cookies[n]) != PAGE for _ in range(8)):
                raise BenchError(f"{n} workers: the admitted cookie is not let through")
        cpu = {n: _cpu_reader(procs, f"gk-{n}w") for n in WORKERS}
        admitted = [Target(f"{n}w", url(p), (f"Cookie: {cookies[n]}",), cpu=cpu[n])
                    for n, p in ports.items()]  # fmt: skip
        joins = [Target(f"{n}w", url(p, SESSIONS), script=JOIN_SCRIPT, cpu=cpu[n])
                 for n, p in ports.items()]  # fmt: skip
        a = _measure(ctx, admitted, out / "admitted")
        j = _measure(ctx, joins, out / "joins")
    rows = [Row("P8", "setup", f"{CPU_NOTE}; load average {load:.1f} at the start")]
    rows += _rows(a, "admitted request", "origin")
    rows += _rows(j, "join", "redis")
    return rows


def _measure(ctx: Context, targets: list[Target], save_dir: Path) -> dict[str, Series]:
    return alternate(
        targets, seconds=ctx.seconds, rounds=ctx.rounds, warmup=ctx.warmup, save_dir=save_dir
    )


def _rows(series: dict[str, Series], what: str, other: str) -> list[Row]:
    one, two = series["1w"], series["2w"]
    per = [f"{s.cpu_us_of('gatekeeper'):.0f}" for s in (one, two)]
    others = [f"{s.cpu_us_of(other):.0f}" for s in (one, two)]
    load = [f"{s.cpu_us_of('wrk'):.0f}" for s in (one, two)]
    measured = (
        f"{per[0]} / {per[1]} µs ({other} {others[0]} / {others[1]} µs, "
        f"wrk {load[0]} / {load[1]} µs)"
    )
    return [
        ratio_row("P8", f"{what}s/s: 2 workers / 1 worker", two.rps, one.rps, None),
        Row("P8", f"gatekeeper CPU per {what}: 1 / 2 workers", measured),
    ]
