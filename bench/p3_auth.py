"""P3: nginx with auth_request to gatekeeper (decision cache on) vs plain nginx to the origin."""

from __future__ import annotations

from pathlib import Path

from bench.nginx import MAX_OPENED, check_keepalive
from bench.procs import BenchError, Procs
from bench.report import Context, Row, ratio_row
from bench.servers import (
    LONG,
    admitted_cookie,
    decisions,
    get,
    start_gated,
    start_nginx,
    start_origin,
    url,
)
from bench.targets import PAGE
from bench.wrk import Target, alternate

# As in P1: the pass outlives the run, so the fixed cookie's "yes" stays cached in nginx.
GATE_ENV = {
    "WAITINGROOM_GATE_COOKIE_PASS_TTL": LONG,
    "WAITINGROOM_PROCESSING_CAPACITY": "1000",
    "WAITINGROOM_LIFECYCLE_IDLE_TIMEOUT": LONG,
}
# Decisions nginx may ask for while it fills its cache (one per concurrent miss at most).
MAX_DECISIONS = 200


def run(ctx: Context, selected: set[str]) -> list[Row]:
    """Both nginx (1 worker each) run side by side; the admitted visitor has a fixed cookie."""
    out = ctx.dir("p3_auth")
    with Procs(out / "logs") as procs:
        origin = start_origin(procs)
        gate = start_gated(procs, origin, GATE_ENV, name="gatekeeper")
        auth = start_nginx(procs, "nginx-auth", origin, gate)
        plain = start_nginx(procs, "nginx-plain", origin)
        cookie = admitted_cookie(auth)
        if get(auth, "/seats", cookie) != PAGE:
            raise BenchError("nginx auth_request: the admitted visitor did not reach the origin")
        header = f"Cookie: {cookie}"
        kept = check_peers(ctx, out, auth, plain, header, origin, gate)
        before = decisions(gate)
        series = alternate(
            [Target("nginx-auth", url(auth), (header,)), Target("nginx", url(plain), (header,))],
            seconds=ctx.seconds,
            rounds=ctx.rounds,
            warmup=ctx.warmup,
            save_dir=out,
        )
        delta = {k: v - before.get(k, 0.0) for k, v in decisions(gate).items()}
    asked = sum(delta.values())
    if any(v for k, v in delta.items() if k != "pass"):
        raise BenchError(f"gatekeeper decided other than pass during the run: {delta}")
    if asked > MAX_DECISIONS:
        raise BenchError(f"nginx's decision cache missed: {asked:.0f} decisions asked")
    auth_rps, plain_rps = series["nginx-auth"].rps, series["nginx"].rps
    row = ratio_row("P3", "auth_request mode / plain nginx (admitted)", auth_rps, plain_rps, 0.95)
    total = series["nginx-auth"].requests
    note = Row("P3", "decisions gatekeeper made", f"{asked:.0f} for {total:,} requests (cached)")
    checks = [
        Row("P3", f"{peer} connections opened (keep-alive check)", found, f"≤ {MAX_OPENED}", True)
        for peer, found in kept.items()
    ]
    return [row, note, *checks]


def check_peers(
    ctx: Context, out: Path, auth: int, plain: int, header: str, origin: int, gate: int
) -> dict[str, str]:
    """Both nginx at their best: each reuses its connections to the origin, and the auth
    config its connections to gatekeeper (driven through /checkout/complete, which proxies
    every request to gatekeeper; not a done path here, so the visitor keeps the place)."""
    checks = (
        ("nginx-auth → origin", Target("nginx-auth", url(auth), (header,)), origin),
        ("nginx → origin", Target("nginx", url(plain), (header,)), origin),
        ("nginx-auth → gatekeeper",
         Target("nginx-auth-gate", url(auth, "/checkout/complete"), (header,)), gate),
    )  # fmt: skip
    return {
        peer: check_keepalive(peer, target, port, ctx.warmup, out / f"keepalive-{target.name}.txt")
        for peer, target, port in checks
    }
