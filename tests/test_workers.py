"""`gatekeeper run --workers 2`: real processes on one port, sharing rooms through real Redis."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from bench.procs import children
from gatekeeper.asgi import Receive, Scope, Send
from gatekeeper.supervisor import STARTUP_FAILURE, Supervisor, reserve
from tests.cluster_rig import ActiveSampler
from tests.conftest import unique_prefix
from tests.processes import gatekeeper_command
from tests.proxy_helpers import ThreadedServer
from tests.redis_server import free_port

CAPACITY = 3
VISITORS = 12
GRACE = 5.0
SLOW_S = 2.0
STARTED = "Application startup complete."


class Origin:
    """Answers `site`; `/slow` takes SLOW_S; remembers the request-id prefixes it saw (each
    gatekeeper process draws its own)."""

    def __init__(self) -> None:
        self.prefixes: set[bytes] = set()
        self.slow_started = threading.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        for key, value in scope["headers"]:
            if key == b"x-request-id":
                self.prefixes.add(value[:-12])  # the prefix, then a 12-digit counter
        if scope["path"] == "/slow":
            self.slow_started.set()
            await asyncio.sleep(SLOW_S)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"site"})


@pytest.fixture(scope="module")
def origin() -> Iterator[tuple[Origin, str]]:
    app = Origin()
    with ThreadedServer(app) as server:
        yield app, server.url


@dataclass
class Gatekeeper:
    """A running supervisor, its port and log."""

    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    prefix: str

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def workers(self) -> set[int]:
        """The supervisor's child processes, from /proc."""
        return set(children(self.proc.pid))

    def wait_started(self, count: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while self.log.read_text().count(STARTED) < count:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"workers did not start:\n{self.log.read_text()}")
            time.sleep(0.05)


@contextmanager
def gatekeeper(redis_url: str, origin_url: str, tmp_path: Path) -> Iterator[Gatekeeper]:
    """`gatekeeper run --workers 2` with both workers started; killed on the way out."""
    port, prefix, log = free_port(), unique_prefix(), tmp_path / "gatekeeper.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAITINGROOM_")}
    env |= {
        "WAITINGROOM_PROCESSING_CAPACITY": str(CAPACITY),
        "WAITINGROOM_PROCESSING_RATE_MS": "50",
        "WAITINGROOM_REDIS_KEY_PREFIX": prefix,
        "WAITINGROOM_GATE_COOKIE_SECURE": "false",
        "WAITINGROOM_GATE_DONE_PATHS": "/done",
        "WAITINGROOM_SERVER_GRACEFUL_TIMEOUT": str(GRACE),
        "WAITINGROOM_SERVER_MAX_HEAD_BYTES": "4096",
        # No WAITINGROOM_GATE_COOKIE_KEYS: the workers must share the key the supervisor draws.
    }
    command = [*gatekeeper_command(), "run", "--workers", "2", "--port", str(port)]
    command += ["--redis-url", redis_url, "--origin", origin_url]
    with log.open("wb") as out:
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=out)
    gk = Gatekeeper(proc, port, log, prefix)
    try:
        gk.wait_started(2)
        yield gk
    finally:
        if proc.poll() is None:
            proc.kill()  # the workers get SIGTERM from the kernel (PR_SET_PDEATHSIG)
        proc.wait()


def _established(port: int) -> set[str]:
    """Socket inodes of established TCP connections whose local port is `port`."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
                inodes.add(fields[9])
    return inodes


def serving(gk: Gatekeeper) -> set[int]:
    """The workers holding a client connection on the port right now."""
    inodes = _established(gk.port)
    found = set()
    for pid in gk.workers():
        try:
            links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        except OSError:
            continue
        if any(link[8:-1] in inodes for link in links if link.startswith("socket:[")):
            found.add(pid)
    return found


async def visit(base: str, hold_s: float) -> list[str]:
    """Queue with a cookie jar of one's own, use the site a moment, leave; the session ids
    the waiting answers named. No keep-alive: every request may reach either worker."""
    sessions: list[str] = []
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base, timeout=10, limits=limits) as client:
        while True:
            reply = await client.get("/", headers={"Accept": "application/json"})
            if reply.content == b"site":
                break
            assert reply.status_code == 200, reply.text
            sessions.append(reply.json()["sessionId"])
            await asyncio.sleep(0.1)
        await asyncio.sleep(hold_s)
        assert (await client.get("/done")).status_code == 200
    return sessions


@pytest.mark.redis
async def test_two_workers_share_the_rooms_and_the_cap(
    redis_url: str, origin: tuple[Origin, str], tmp_path: Path
) -> None:
    with gatekeeper(redis_url, origin[1], tmp_path) as gk:
        sampler = ActiveSampler(redis_url, f"{gk.prefix}:{{default}}:active").start()
        try:
            sessions = await asyncio.wait_for(
                asyncio.gather(*(visit(gk.base, 0.4) for _ in range(VISITORS))), 40
            )
        finally:
            sampler.stop()
        assert sampler.samples > 0 and sampler.max == CAPACITY  # full, and never more
        # Each visitor kept one session across both workers (one cookie key), and most waited.
        assert all(len(set(s)) <= 1 for s in sessions)
        assert sum(bool(s) for s in sessions) >= VISITORS - CAPACITY
        assert len(origin[0].prefixes) >= 2  # two processes forwarded to the origin
        # Which processes those were: 16 held connections, spread by the kernel (all on one
        # worker: 1 in 32768), each answered, then traced to its worker through /proc.
        held = [httpx.AsyncClient(base_url=gk.base, timeout=5) for _ in range(16)]
        try:
            for client in held:
                assert (await client.get("/_gatekeeper/healthz")).status_code == 200
            seen = serving(gk)
        finally:
            await asyncio.gather(*(client.aclose() for client in held))
        assert seen == gk.workers() and len(seen) == 2


@pytest.mark.redis
async def test_a_killed_worker_is_replaced_and_the_port_keeps_answering(
    redis_url: str, origin: tuple[Origin, str], tmp_path: Path
) -> None:
    with gatekeeper(redis_url, origin[1], tmp_path) as gk:
        before = gk.workers()
        victim = min(before)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while victim in gk.workers() or len(gk.workers()) < 2:
            assert time.monotonic() < deadline, gk.log.read_text()
            await asyncio.sleep(0.02)
        gk.wait_started(3)
        after = gk.workers()
        assert len(after) == 2 and victim not in after and after & before
        head = b"x" * 8192  # every worker keeps the head limits: 431
        async with httpx.AsyncClient(base_url=gk.base, timeout=5) as client:
            for _ in range(10):
                fresh = {"Connection": "close"}
                assert (await client.get("/_gatekeeper/healthz", headers=fresh)).status_code == 200
                reply = await client.get("/", headers={**fresh, "X-Big": head.decode()})
                assert reply.status_code == 431
        assert "was killed by SIGKILL: starting a new one" in gk.log.read_text()


@pytest.mark.redis
def test_sigterm_drains_every_worker_and_exits_0(
    redis_url: str, origin: tuple[Origin, str], tmp_path: Path
) -> None:
    with gatekeeper(redis_url, origin[1], tmp_path) as gk:
        workers = gk.workers()
        origin[0].slow_started.clear()
        result: list[httpx.Response] = []
        slow = threading.Thread(
            target=lambda: result.append(httpx.get(gk.base + "/slow", timeout=15)), daemon=True
        )
        slow.start()
        assert origin[0].slow_started.wait(10)
        started = time.monotonic()
        gk.proc.send_signal(signal.SIGTERM)
        assert gk.proc.wait(timeout=GRACE + 5) == 0
        slow.join(5)
        assert result and result[0].status_code == 200 and result[0].content == b"site"
        assert time.monotonic() - started >= SLOW_S - 0.5  # it waited for the request
        assert not any(Path(f"/proc/{pid}").exists() for pid in workers)
        with pytest.raises(httpx.ConnectError):
            httpx.get(gk.base + "/_gatekeeper/healthz", timeout=2)
        assert len(re.findall(r"worker \d \(pid \d+\) stopped", gk.log.read_text())) == 2


def test_two_workers_on_the_embedded_store_are_refused(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAITINGROOM_")}
    done = subprocess.run(
        [*gatekeeper_command(), "run", "--workers", "2", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert "server.workers" in done.stderr and "redis.url" in done.stderr


@pytest.mark.redis
def test_a_port_in_use_is_refused_not_shared(
    redis_url: str, origin: tuple[Origin, str], tmp_path: Path
) -> None:
    with gatekeeper(redis_url, origin[1], tmp_path) as gk:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WAITINGROOM_")}
        command = [*gatekeeper_command(), "run", "--workers", "2", "--port", str(gk.port)]
        done = subprocess.run(
            [*command, "--redis-url", redis_url],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 1
        assert f"cannot listen on 127.0.0.1:{gk.port}" in done.stderr


def test_workers_that_cannot_start_stop_the_supervisor_with_exit_1() -> None:
    sock = reserve("127.0.0.1", 0)
    started = time.monotonic()
    # uvicorn's startup failure: restarting would fail the same way, so no crash loop.
    assert Supervisor(sock, 2, lambda _: sys.exit(STARTUP_FAILURE), grace=1.0).run() == 1
    assert time.monotonic() - started < 5
    assert sock.fileno() == -1
