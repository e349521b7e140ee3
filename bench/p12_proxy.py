"""P1 (gate on vs off) and P2 (vs nginx and the origin): an admitted visitor's requests/s."""

from __future__ import annotations

from bench.nginx import MAX_OPENED, check_keepalive
from bench.procs import BenchError, Procs
from bench.report import Context, Row, ratio_row
from bench.servers import (
    LONG,
    admitted_cookie,
    decisions,
    start_gate_off,
    start_gated,
    start_nginx,
    start_origin,
    url,
)
from bench.wrk import Series, Target, alternate

# The pass outlives the run, so wrk's one fixed cookie stays valid without renewal (a browser
# would take the renewed cookie every few seconds; here the pass is never in its second half).
GATED_ENV = {
    "WAITINGROOM_GATE_COOKIE_PASS_TTL": LONG,
    "WAITINGROOM_PROCESSING_CAPACITY": "1000",
    "WAITINGROOM_LIFECYCLE_IDLE_TIMEOUT": LONG,
}


def run(ctx: Context, selected: set[str]) -> list[Row]:
    """Measure the targets P1 and/or P2 need, alternating, and return their rows."""
    out = ctx.dir("p12_proxy")
    with Procs(out / "logs") as procs:
        origin = start_origin(procs)
        gated = start_gated(procs, origin, GATED_ENV)
        cookie = f"Cookie: {admitted_cookie(gated)}"
        targets = [Target("gated", url(gated), (cookie,), cpu=procs.cpu_reader("gated"))]
        if "P1" in selected:
            off_port = start_gate_off(procs, origin)
            targets.append(
                Target("gate-off", url(off_port), (cookie,), cpu=procs.cpu_reader("gate-off"))
            )
        kept = ""
        if "P2" in selected:
            nginx = start_nginx(procs, "nginx", origin)
            targets.append(Target("nginx", url(nginx), (cookie,)))
            targets.append(Target("origin", url(origin), (cookie,)))
            # The peer at its best: nginx must reuse its upstream connections to the origin.
            kept = check_keepalive(
                "nginx → origin", targets[-2], origin, ctx.warmup, out / "keepalive-nginx.txt"
            )
        before = decisions(gated)
        series = alternate(
            targets, seconds=ctx.seconds, rounds=ctx.rounds, warmup=ctx.warmup, save_dir=out
        )
        check_pass_only(before, decisions(gated), series["gated"])
    rows: list[Row] = []
    g = series["gated"].rps
    if "P1" in selected:
        off = series["gate-off"].rps
        rows.append(ratio_row("P1", "admitted visitor: gated proxy / gate off", g, off, 0.95))
        on_us, off_us = series["gated"].cpu_us, series["gate-off"].cpu_us
        rows.append(
            Row("P1", "proxy process CPU per request: gated / gate off",
                f"{on_us:.0f} / {off_us:.0f} µs (the gate adds {on_us - off_us:.0f} µs)")
        )  # fmt: skip
    if "P2" in selected:
        rows.append(ratio_row("P2", "gated proxy / nginx proxy", g, series["nginx"].rps, 0.60))
        rows.append(ratio_row("P2", "gated proxy / origin direct", g, series["origin"].rps, None))
        rows.append(
            ratio_row("P2", "nginx proxy / origin direct", series["nginx"].rps,
                      series["origin"].rps, None)
        )  # fmt: skip
        rows.append(
            Row("P2", "nginx → origin connections opened (keep-alive check)", kept,
                f"≤ {MAX_OPENED}", True)
        )  # fmt: skip
    return rows


def check_pass_only(before: dict[str, float], after: dict[str, float], gated: Series) -> None:
    """Every measured gated request was let through on the cookie's pass, none queued."""
    delta = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    passed = delta.get("pass", 0.0)
    others = {k: v for k, v in delta.items() if k != "pass" and v}
    # The warm-up runs count too, so `pass` is at least the measured requests.
    if others or passed < gated.requests:
        raise BenchError(
            f"gated target not on the pass path: {delta} for {gated.requests} requests"
        )
