"""P6's simulated visitors: coroutines that arrive, wait, visit and leave, all in one process.

    python -m bench.crowd --base http://127.0.0.1:PORT --token ADMIN_TOKEN --out crowd.json

Each visitor opens the site like a browser (GET / for HTML). On the waiting page it polls the
status API at the advertised pollAfterMs (with the page's ±20% jitter) and, once ACTIVE,
reloads the page. Admitted, it stays a few seconds (one more page view midway), then leaves
through the done path or the leave API. A sampler reads the room's counts from the admin API.
Requests go through bench.http1 (keep-alive, httptools), which is far cheaper than aiohttp.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import os
import random
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httptools
import uvloop

from bench.http1 import Client
from bench.targets import PAGE

WAITING_MARK = b'id="gk-room"'
STATUS_URL = re.compile(rb'data-status-url="([^"]*)"')
POLL_AFTER = re.compile(rb'data-poll-after-ms="(\d+)"')
DONE_PATH = "/checkout/complete"
RELOAD = "reload"  # poll(): the status API does not know the session yet
STAY_S = (2.0, 4.0)
SAMPLE_S = 0.25
LAG_TICK_S = 0.01  # the loop-lag probe sleeps this long and records how late it wakes
HTML = "text/html,application/xhtml+xml"


@dataclass(slots=True)
class Reply:
    """One answer: status, body, milliseconds."""

    status: int
    body: bytes
    ms: float


@dataclass(slots=True)
class Crowd:
    """Shared counters of all visitors; every visitor coroutine updates them."""

    client: Client
    started: float = field(default_factory=time.perf_counter)
    requests: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    latency: dict[str, list[float]] = field(
        default_factory=lambda: {"waiting_page": [], "status_poll": [], "site_page": []}
    )
    waiting_pages: list[tuple[float, float]] = field(default_factory=list)
    arrived: int = 0
    waiting: int = 0
    admitted: int = 0
    in_site: int = 0
    left: int = 0

    async def fetch(
        self, method: str, path: str, cookie: str, kind: str, accept: str = HTML
    ) -> tuple[Reply, str] | None:
        """Send one request; (reply, cookie to keep) or None after a transport error."""
        headers = {"Accept": accept}
        if cookie:
            headers["Cookie"] = cookie
        self.requests += 1
        started = time.perf_counter()
        try:
            resp = await self.client.request(method, path, headers)
        except (OSError, TimeoutError, httptools.HttpParserError) as exc:
            self.errors[f"{kind}: {type(exc).__name__}"] += 1
            return None
        for value in resp.cookies:
            cookie = value.split(";", 1)[0]
        return Reply(resp.status, resp.body, (time.perf_counter() - started) * 1000), cookie

    def fail(self, kind: str, reply: Reply) -> None:
        """Count an unexpected answer."""
        self.errors[f"{kind}: HTTP {reply.status}"] += 1

    async def visitor(self, number: int, arrive_at: float) -> None:
        """One visitor's whole visit; a crash is counted as an error too."""
        await asyncio.sleep(max(0.0, arrive_at - (time.perf_counter() - self.started)))
        try:
            await self.arrive(number)
        except Exception as exc:  # a bad answer, or a bug here: count it, never hide it
            self.errors[f"crash: {type(exc).__name__}: {exc}"[:200]] += 1

    async def arrive(self, number: int) -> None:
        """Open the site; wait in line if asked to; visit."""
        self.arrived += 1
        got = await self.fetch("GET", "/", "", "arrive")
        if got is None:
            return
        reply, cookie = got
        session_url = ""
        if reply.status == 200 and WAITING_MARK in reply.body:
            self.latency["waiting_page"].append(reply.ms)
            self.waiting_pages.append((time.perf_counter() - self.started, reply.ms))
            found = await self.wait_in_line(reply.body, cookie)
            if found is None:
                return
            session_url, cookie = found
        elif reply.status != 200 or reply.body != PAGE:
            return self.fail("arrive", reply)
        else:
            self.latency["site_page"].append(reply.ms)
        self.admitted += 1
        self.in_site += 1
        try:
            await self.visit(number, session_url, cookie)
        finally:
            self.in_site -= 1

    async def visit(self, number: int, session_url: str, cookie: str) -> None:
        """Stay a few seconds (one more page view midway), then leave."""
        stay = random.uniform(*STAY_S)
        await asyncio.sleep(stay / 2)
        got = await self.fetch("GET", "/seats", cookie, "visit")
        if got is None:
            return
        reply, cookie = got
        if reply.status != 200 or reply.body != PAGE:
            return self.fail("visit (not the site)", reply)
        self.latency["site_page"].append(reply.ms)
        await asyncio.sleep(stay / 2)
        if session_url and number % 2:
            got = await self.fetch("POST", session_url + ":leave", "", "leave", "application/json")
            expected = 204
        else:
            got = await self.fetch("POST", DONE_PATH, cookie, "done")
            expected = 200
        if got is None:
            return
        if got[0].status != expected:
            return self.fail("leave", got[0])
        self.left += 1

    async def wait_in_line(self, page: bytes, cookie: str) -> tuple[str, str] | None:
        """Poll until ACTIVE, then reload the page: (status URL, cookie), or None on failure.

        As the page's script does: a page without a status URL (the first page of a lazy join)
        or a status API that does not know the session (404) means reload, and the reload with
        the cookie takes the place.
        """
        self.waiting += 1
        try:
            while True:
                found = await self.poll(page)
                if found != RELOAD:
                    break
                got = await self.fetch("GET", "/", cookie, "comeback")
                if got is None:
                    return None
                reply, cookie = got
                if reply.status == 200 and reply.body == PAGE:
                    self.latency["site_page"].append(reply.ms)
                    return "", cookie  # admitted at once when it came back
                if reply.status != 200 or WAITING_MARK not in reply.body:
                    self.fail("comeback", reply)
                    return None
                self.latency["waiting_page"].append(reply.ms)
                page = reply.body
        finally:
            self.waiting -= 1
        if found is None:
            return None
        got = await self.fetch("GET", "/", cookie, "admitted")
        if got is None:
            return None
        reply, cookie = got
        if reply.status != 200 or reply.body != PAGE:
            self.fail("admitted (not the site)", reply)
            return None
        self.latency["site_page"].append(reply.ms)
        return found, cookie

    async def poll(self, page: bytes) -> str | None:
        """Poll the status API until ACTIVE: the status URL, RELOAD when the session is not
        known yet, or None on failure."""
        url_match, poll_match = STATUS_URL.search(page), POLL_AFTER.search(page)
        if url_match is None or poll_match is None:
            self.errors["waiting page without status URL"] += 1
            return None
        status_url, poll_ms = url_match.group(1).decode(), int(poll_match.group(1))
        while True:
            await asyncio.sleep(min(max(poll_ms * random.uniform(0.8, 1.2), 500), 60_000) / 1000)
            if not status_url:
                return RELOAD  # the first page of a lazy join: nothing to poll yet
            got = await self.fetch("GET", status_url, "", "poll", "application/json")
            if got is None:
                return None
            reply = got[0]
            if reply.status == 404:
                return RELOAD
            if reply.status != 200:
                self.fail("poll", reply)
                return None
            self.latency["status_poll"].append(reply.ms)
            body = json.loads(reply.body)
            if body["status"] == "ACTIVE":
                break
            if body["status"] != "WAITING":
                self.errors[f"poll: place lost ({body['status']})"] += 1
                return None
            poll_ms = int(body["pollAfterMs"])
        return status_url


def cpu_seconds(pid: int) -> float:
    """CPU time a process has used (0 when it cannot be read)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def sample(
    crowd: Crowd, admin: Client, token: str, server_pid: int, out: list[list[float]]
) -> None:
    """Every SAMPLE_S: [t, waiting, active (server), admitted so far, in site (client),
    gatekeeper's CPU use since the last sample (share of one core), the client's own]."""
    headers = {"Authorization": f"Bearer {token}"}
    last_t, last_cpu, last_own = 0.0, cpu_seconds(server_pid), time.process_time()
    while True:
        t = time.perf_counter() - crowd.started
        cpu, own = cpu_seconds(server_pid), time.process_time()
        span = max(t - last_t, 1e-3)
        share, own_share = (cpu - last_cpu) / span, (own - last_own) / span
        last_t, last_cpu, last_own = t, cpu, own
        try:
            resp = await admin.request("GET", "/_gatekeeper/admin/rooms/default", headers)
            room = json.loads(resp.body)
            out.append([t, room["waiting"], room["active"], crowd.admitted, crowd.in_site, share,
                        own_share])  # fmt: skip
        except (OSError, TimeoutError, httptools.HttpParserError, KeyError, ValueError):
            crowd.errors["sampler"] += 1
        await asyncio.sleep(max(0.0, SAMPLE_S - (time.perf_counter() - crowd.started - t)))


async def watch_loop(lags: list[float]) -> None:
    """How late this process's event loop wakes up (ms): a busy client inflates latencies."""
    while True:
        started = time.perf_counter()
        await asyncio.sleep(LAG_TICK_S)
        lags.append((time.perf_counter() - started - LAG_TICK_S) * 1000)


def percentiles(values: list[float]) -> dict[str, float]:
    """n, p50, p90, p99 and max of a list of milliseconds."""
    if not values:
        return {"n": 0}
    s = sorted(values)

    def at(q: float) -> float:
        return round(s[max(0, math.ceil(q * len(s)) - 1)], 2)

    return {"n": len(s), "p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "max": round(s[-1], 2)}


async def main(args: argparse.Namespace) -> None:
    random.seed(args.seed)
    base = urlsplit(args.base)
    host, port = base.hostname or "127.0.0.1", base.port or 80
    crowd = Crowd(Client(host, port, limit=args.connections))
    admin = Client(host, port, limit=1)
    timeline: list[list[float]] = []
    lags: list[float] = []
    sampler = asyncio.create_task(sample(crowd, admin, args.token, args.server_pid, timeline))
    watcher = asyncio.create_task(watch_loop(lags))
    arrivals = sorted(random.uniform(0, args.arrive_s) for _ in range(args.visitors))
    cpu_started = time.process_time()
    tasks = [asyncio.create_task(crowd.visitor(i, t)) for i, t in enumerate(arrivals)]
    # 20,000 suspended visitors are ~150k objects: each full collection of the cyclic GC would
    # stall this loop for tens of ms and show up as server latency. Their garbage is acyclic
    # (reference counting frees it), so the collector stays off for the run.
    gc.collect()
    gc.freeze()
    gc.disable()
    _, pending = await asyncio.wait(tasks, timeout=args.duration_s)
    elapsed = time.perf_counter() - crowd.started
    client_cpu_s = time.process_time() - cpu_started
    still_waiting, still_in_site = crowd.waiting, crowd.in_site
    left = {*pending, sampler, watcher}
    for _ in range(3):  # visitors still in flight when time is up are abandoned
        for task in left:
            task.cancel()
        _, left = await asyncio.wait(left, timeout=5)
        if not left:
            break
    crowd.client.close()
    admin.close()
    sampler_errors = crowd.errors.pop("sampler", 0)
    result = {
        "visitors": args.visitors,
        "arrive_s": args.arrive_s,
        "duration_s": args.duration_s,
        "elapsed_s": round(elapsed, 2),
        "requests": crowd.requests,
        "errors": dict(crowd.errors),
        "sampler_errors": sampler_errors,
        "latency_ms": {k: percentiles(v) for k, v in crowd.latency.items()},
        "client_loop_lag_ms": percentiles(lags),
        "client_cpu": {
            "mean": round(client_cpu_s / max(elapsed, 1e-3), 3),
            "busiest": round(max((row[6] for row in timeline[1:]), default=0.0), 3),
        },
        "counts": {
            "arrived": crowd.arrived,
            "admitted": crowd.admitted,
            "left": crowd.left,
            "still_waiting": still_waiting,
            "still_in_site": still_in_site,
            "unfinished": len(pending),
        },  # fmt: skip
        "max_active": max((row[2] for row in timeline), default=-1),
        "max_waiting": max((row[1] for row in timeline), default=-1),
        "timeline": timeline,
        "waiting_pages": [[round(t, 3), round(ms, 2)] for t, ms in crowd.waiting_pages],
    }
    Path(args.out).write_text(json.dumps(result))
    if left:
        print(f"{len(left)} visitors ignored cancellation; exiting anyway", file=sys.stderr)
        sys.stderr.flush()
        os._exit(0)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base", required=True, help="the gated proxy, http://host:port")
    parser.add_argument("--token", required=True, help="admin token (for the sampler)")
    parser.add_argument("--out", required=True, help="where to write the JSON results")
    parser.add_argument("--server-pid", type=int, default=0, help="gatekeeper's pid (CPU use)")
    parser.add_argument("--visitors", type=int, default=50_000)
    parser.add_argument("--arrive-s", type=float, default=10.0)
    parser.add_argument("--duration-s", type=float, default=75.0)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    return parser.parse_args()


if __name__ == "__main__":
    uvloop.run(main(parse_args()))
