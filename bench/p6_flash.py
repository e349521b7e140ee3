"""P6: a flash crowd through the gated proxy, with churn, on the embedded store and on Redis."""

from __future__ import annotations

import json
import secrets
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.crowd import STAY_S
from bench.plot import plot_crowd
from bench.procs import LOAD_CPU, Procs
from bench.report import Context, Row
from bench.servers import start_gated, start_origin, start_redis, url

MAX_P99_MS = 250.0
BACKENDS = ("embedded", "redis")


@dataclass(frozen=True)
class Size:
    """How many visitors arrive within how long, into how many places; how long it runs."""

    visitors: int
    arrive_s: float
    capacity: int
    duration_s: float

    def title(self, backend: str) -> str:
        store = "embedded store" if backend == "embedded" else "Redis"
        return (f"{self.visitors:,} in {self.arrive_s:.0f} s, capacity {self.capacity:,}, "
                f"{store}")  # fmt: skip


FULL = Size(50_000, 10.0, 1_000, 75.0)
QUICK = Size(4_000, 5.0, 500, 25.0)


def run(ctx: Context, selected: set[str]) -> list[Row]:
    """The same crowd against each backend in turn, each with servers of its own."""
    size = QUICK if ctx.quick else FULL
    rows: list[Row] = []
    for backend in BACKENDS:
        out = ctx.dir(f"p6_flash/{backend}")
        r, server_cpu = crowd(out, size, backend)
        rows += result_rows(r, size, backend, server_cpu, out)
    return rows


def crowd(out: Path, size: Size, backend: str) -> tuple[dict[str, Any], float]:
    """Start origin, gate (and Redis), run the crowd process on the load CPU: its results and
    gatekeeper's mean CPU share (one core)."""
    token = secrets.token_hex(16)
    env = {
        "WAITINGROOM_PROCESSING_CAPACITY": str(size.capacity),
        # Up to 100 admissions per 100 ms tick, so churn, not the grant loop, sets the pace.
        "WAITINGROOM_PROCESSING_BATCH_SIZE": "100",
        "WAITINGROOM_PROCESSING_RATE_MS": "100",
        "WAITINGROOM_GATE_DONE_PATHS": "/checkout/complete",
        "WAITINGROOM_ADMIN_TOKEN": token,
        # The whole crowd connects from one address: a per-client join limit would count it
        # as one client (the limit has its own flood tests).
        "WAITINGROOM_PROCESSING_CLIENT_JOINS_PER_MINUTE": "0",
    }
    result_path = out / "crowd.json"
    with Procs(out / "logs") as procs:
        if backend == "redis":  # on the server CPU, beside gatekeeper and the origin
            env["WAITINGROOM_REDIS_URL"] = start_redis(procs)
        origin = start_origin(procs)
        gate = start_gated(procs, origin, env)
        cmd = [sys.executable, "-m", "bench.crowd", "--base", url(gate).rstrip("/"),
               "--token", token, "--out", str(result_path.resolve()),
               "--visitors", str(size.visitors), "--arrive-s", str(size.arrive_s),
               "--duration-s", str(size.duration_s),
               "--server-pid", str(procs.pid("gated"))]  # fmt: skip
        cpu_before = procs.cpu_seconds("gated")
        started = time.monotonic()
        procs.run("crowd", cmd, cpu=LOAD_CPU, timeout=size.duration_s + 120)
        server_cpu = (procs.cpu_seconds("gated") - cpu_before) / (time.monotonic() - started)
    return json.loads(result_path.read_text()), server_cpu


def result_rows(
    r: dict[str, Any], size: Size, backend: str, server_cpu: float, out: Path
) -> list[Row]:
    """One backend's rows: errors, max active, waiting-page latency (the targets), then the
    other latencies, CPU and the client's own load, and where the crowd ended."""
    title = (f"{size.visitors:,} visitors arriving in {size.arrive_s:.0f} s, capacity "
             f"{size.capacity:,}, stays {STAY_S[0]:.0f}–{STAY_S[1]:.0f} s ({backend})")  # fmt: skip
    plotted = plot_crowd(r["timeline"], r["waiting_pages"], size.capacity, title, out / "p6.png")
    errors = sum(r["errors"].values())
    wait = r["latency_ms"]["waiting_page"]
    poll = r["latency_ms"]["status_poll"]
    site = r["latency_ms"]["site_page"]
    lag = r["client_loop_lag_ms"]
    client = r.get("client_cpu", {})
    peak_cpu = max((row[5] for row in r["timeline"][1:]), default=0.0)
    c = r["counts"]
    p99 = float(wait.get("p99", float("inf")))
    listed = ", ".join(f"{k}: {v}" for k, v in sorted(r["errors"].items())) or "none"
    cap = size.capacity
    plot = f"p6_flash/{backend}/p6.png" if plotted else "not drawn (pip install matplotlib)"
    return [
        Row("P6", f"flash crowd ({size.title(backend)}): errors",
            f"**{errors}** of {r['requests']:,} requests ({listed})", "0", errors == 0, errors),
        Row("P6", f"max active, {backend} (admin API, sampled every 250 ms)",
            f"**{r['max_active']:,}** (capacity {cap:,})", f"≤ {cap:,}",
            0 <= r["max_active"] <= cap, r["max_active"]),
        Row("P6", f"waiting page latency p50 / p99, {backend} ({wait.get('n', 0):,} pages)",
            f"{wait.get('p50', 0):.0f} / **{p99:.0f} ms**", f"p99 < {MAX_P99_MS:.0f} ms",
            p99 < MAX_P99_MS, p99),
        Row("P6", f"status poll p50 / p99; site page p50 / p99, {backend}",
            f"{poll.get('p50', 0):.0f} / {poll.get('p99', 0):.0f} ms; "
            f"{site.get('p50', 0):.0f} / {site.get('p99', 0):.0f} ms"),
        Row("P6", f"gatekeeper CPU (one core): mean, busiest 250 ms; client (own core): CPU "
            f"mean, busiest; loop lag p99 / max, {backend}",
            f"{server_cpu:.0%}, {peak_cpu:.0%}; {client.get('mean', 0):.0%}, "
            f"{client.get('busiest', 0):.0%}; {lag.get('p99', 0):.0f} / {lag.get('max', 0):.0f} ms "
            "(a lagging client inflates the latencies)"),
        Row("P6", f"after {r['elapsed_s']:.0f} s, {backend}",
            f"{c['admitted']:,} admitted, {c['left']:,} left, {c['still_waiting']:,} still "
            f"waiting (max {r['max_waiting']:,}); plot: {plot}"),
    ]  # fmt: skip
