"""Requests/s of an admitted visitor through the gated proxy, the same proxy with the gate off,
and the origin directly — measured side by side in one run, alternating targets (A B C C B A).

    .venv/bin/python -m bench.proxy_overhead [--seconds 5] [--rounds 2]

Each server is a uvicorn process (httptools, one worker) pinned to CPU 0; wrk (1 thread,
64 connections) is pinned to CPU 1. The gated target is driven with one fixed, admitted cookie.
`pass-ttl=60` shows the steady state (the pass answers, no store call); `pass-ttl=0` shows the
worst case (one embedded-store call and a fresh Set-Cookie on every request).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
import urllib.request
from contextlib import ExitStack

from tests.redis_server import free_port

CPU_SERVER, CPU_LOAD = "0", "1"


def serve(app: str, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    cmd = ["taskset", "-c", CPU_SERVER, sys.executable, "-m", "uvicorn", app, "--factory",
           "--port", str(port), "--http", "httptools", "--loop", "uvloop", "--no-access-log",
           "--log-level", "warning", "--no-server-header", "--no-date-header"]  # fmt: skip
    if app.endswith(":origin"):
        cmd.remove("--factory")
    proc = subprocess.Popen(cmd, env={**os.environ, **env})
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/_gatekeeper/healthz", timeout=1)
            return proc
        except urllib.error.HTTPError:
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{app} did not start")


def admitted_cookie(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
        cookie = r.headers["set-cookie"].split(";")[0]
    return cookie


def wrk(url: str, seconds: int, cookie: str | None) -> float:
    cmd = ["taskset", "-c", CPU_LOAD, "wrk", "-t1", "-c64", f"-d{seconds}s", url]
    if cookie:
        cmd[4:4] = ["-H", f"Cookie: {cookie}"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise RuntimeError(f"{url}: {non2xx.group(1)} non-2xx responses\n{out}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert match, out
    return float(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    ports = {name: free_port() for name in ("origin", "proxy", "gate60", "gate0")}
    origin_url = f"http://127.0.0.1:{ports['origin']}"
    env = {"BENCH_ORIGIN": origin_url, "PYTHONPATH": os.getcwd()}
    with ExitStack() as stack:
        procs = [
            serve("bench.targets:origin", ports["origin"], env),
            serve("bench.targets:proxy", ports["proxy"], env),
            serve("bench.targets:gated", ports["gate60"], {**env, "BENCH_PASS_TTL": "60"}),
            serve("bench.targets:gated", ports["gate0"], {**env, "BENCH_PASS_TTL": "0"}),
        ]
        for p in procs:
            stack.callback(p.wait)
            stack.callback(p.kill)
        cookies = {name: admitted_cookie(ports[name]) for name in ("gate60", "gate0")}
        order = ["origin", "proxy", "gate60", "gate0"]
        results: dict[str, list[float]] = {name: [] for name in order}
        for _ in range(args.rounds):
            for name in order + order[::-1]:
                url = f"http://127.0.0.1:{ports[name]}/"
                results[name].append(wrk(url, args.seconds, cookies.get(name)))
    median = {name: statistics.median(v) for name, v in results.items()}
    labels = {
        "origin": "origin direct",
        "proxy": "proxy, gate off",
        "gate60": "gated proxy, pass (steady state)",
        "gate0": "gated proxy, store call every request",
    }
    print(f"wrk -t1 -c64, {args.seconds}s x {2 * args.rounds} per target, medians, same run")
    print(f"{'target':40}{'req/s':>10}{'vs proxy':>10}{'vs origin':>11}")
    for name in order:
        print(f"{labels[name]:40}{median[name]:>10,.0f}{median[name] / median['proxy']:>10.2f}"
              f"{median[name] / median['origin']:>11.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
