"""P6: a flash crowd through the gated proxy (embedded store), capacity 500, with churn."""

from __future__ import annotations

import json
import secrets
import sys
import time

from bench.crowd import STAY_S
from bench.plot import plot_crowd
from bench.procs import LOAD_CPU, Procs
from bench.report import Context, Row
from bench.servers import start_gated, start_origin, url

CAPACITY = 500
MAX_P99_MS = 250.0


def run(ctx: Context, selected: set[str]) -> list[Row]:
    """Start origin and gate, run the crowd process on the load CPU, read its results."""
    out = ctx.dir("p6_flash")
    visitors, arrive_s, duration_s = (4_000, 5.0, 25.0) if ctx.quick else (20_000, 10.0, 75.0)
    token = secrets.token_hex(16)
    env = {
        "WAITINGROOM_PROCESSING_CAPACITY": str(CAPACITY),
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
        origin = start_origin(procs)
        gate = start_gated(procs, origin, env)
        cmd = [sys.executable, "-m", "bench.crowd", "--base", url(gate).rstrip("/"),
               "--token", token, "--out", str(result_path.resolve()),
               "--visitors", str(visitors), "--arrive-s", str(arrive_s),
               "--duration-s", str(duration_s),
               "--server-pid", str(procs.pid("gated"))]  # fmt: skip
        cpu_before = procs.cpu_seconds("gated")
        started = time.monotonic()
        procs.run("crowd", cmd, cpu=LOAD_CPU, timeout=duration_s + 120)
        server_cpu = (procs.cpu_seconds("gated") - cpu_before) / (time.monotonic() - started)
    r = json.loads(result_path.read_text())
    title = (f"{visitors:,} visitors arriving in {arrive_s:.0f} s, capacity {CAPACITY}, "
             f"stays {STAY_S[0]:.0f}–{STAY_S[1]:.0f} s (embedded store)")  # fmt: skip
    plotted = plot_crowd(r["timeline"], r["waiting_pages"], CAPACITY, title, out / "p6.png")
    errors = sum(r["errors"].values())
    wait = r["latency_ms"]["waiting_page"]
    poll = r["latency_ms"]["status_poll"]
    site = r["latency_ms"]["site_page"]
    lag = r["client_loop_lag_ms"]
    peak_cpu = max((row[5] for row in r["timeline"][1:]), default=0.0)
    c = r["counts"]
    p99 = float(wait.get("p99", float("inf")))
    listed = ", ".join(f"{k}: {v}" for k, v in sorted(r["errors"].items())) or "none"
    return [
        Row("P6", f"flash crowd ({visitors:,} in {arrive_s:.0f} s, capacity {CAPACITY}, "
            "embedded store): errors", f"**{errors}** of {r['requests']:,} requests ({listed})",
            "0", errors == 0, errors),
        Row("P6", "max active (admin API, sampled every 250 ms)",
            f"**{r['max_active']}** (capacity {CAPACITY})", f"≤ {CAPACITY}",
            0 <= r["max_active"] <= CAPACITY, r["max_active"]),
        Row("P6", f"waiting page latency p50 / p99 ({wait.get('n', 0):,} pages)",
            f"{wait.get('p50', 0):.0f} / **{p99:.0f} ms**", f"p99 < {MAX_P99_MS:.0f} ms",
            p99 < MAX_P99_MS, p99),
        Row("P6", "status poll p50 / p99; site page p50 / p99",
            f"{poll.get('p50', 0):.0f} / {poll.get('p99', 0):.0f} ms; "
            f"{site.get('p50', 0):.0f} / {site.get('p99', 0):.0f} ms"),
        Row("P6", "gatekeeper CPU (share of one core): mean, busiest 250 ms; client loop lag p99",
            f"{server_cpu:.0%}, {peak_cpu:.0%}; {lag.get('p99', 0):.0f} ms (a lagging client "
            "inflates the latencies)"),
        Row("P6", f"after {r['elapsed_s']:.0f} s",
            f"{c['admitted']:,} admitted, {c['left']:,} left, {c['still_waiting']:,} still "
            f"waiting (max {r['max_waiting']:,}); plot: "
            + ("p6_flash/p6.png" if plotted else "not drawn (pip install matplotlib)")),
    ]  # fmt: skip
