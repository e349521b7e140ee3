"""examples/nginx: real nginx with auth_request in front of a real origin and gatekeeper."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.redis_server import free_port

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "examples" / "nginx" / "nginx.conf"


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            if proc.poll() is not None:
                break
            time.sleep(0.05)
    pytest.fail(f"{url} did not come up:\n{log.read_text()}")


def nginx_command(tmp_path: Path, ports: dict[str, int]) -> list[str]:
    """The example config with these ports and paths, and the command running nginx on it."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(nginx):
        pytest.fail("nginx is missing: `apt-get install nginx-light` (make system-deps)")
    conf = CONFIG.read_text()
    conf = conf.replace("127.0.0.1:9000", f"127.0.0.1:{ports['origin']}")
    conf = conf.replace("127.0.0.1:8080", f"127.0.0.1:{ports['gate']}")
    conf = conf.replace("listen 8000", f"listen 127.0.0.1:{ports['nginx']}")
    conf = conf.replace("/tmp/gatekeeper-nginx", str(tmp_path / "nginx"))
    if os.geteuid() == 0:
        # Workers would drop to `nobody`, who cannot write under pytest's private temp dir.
        conf = "user root;\n" + conf
    (tmp_path / "nginx.conf").write_text(conf)
    return [nginx, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-g", "daemon off;"]


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[dict[str, str]]:
    ports = {name: free_port() for name in ("origin", "gate", "nginx")}
    nginx = nginx_command(tmp_path, ports)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("WAITINGROOM_")},
        "BENCH_ORIGIN": "unused",
        "WAITINGROOM_PROCESSING_CAPACITY": "2",
        "WAITINGROOM_PROCESSING_RATE_MS": "50",
        "WAITINGROOM_GATE_COOKIE_SECURE": "false",
        "WAITINGROOM_GATE_DONE_PATHS": "/checkout/complete",
        "WAITINGROOM_GATE_COOKIE_KEYS": "k" * 32,
    }
    procs: list[tuple[subprocess.Popen[bytes], object]] = []
    try:
        for name, cmd in (
            ("origin", [sys.executable, "-m", "uvicorn", "bench.targets:origin",
                        "--port", str(ports["origin"]), "--log-level", "warning"]),
            ("gate", [sys.executable, "-m", "gatekeeper", "run", "--port", str(ports["gate"]),
                      "--origin", f"http://127.0.0.1:{ports['origin']}", "--log-level", "warning"]),
            ("nginx", nginx),
        ):  # fmt: skip
            log = tmp_path / f"{name}.log"
            out = log.open("wb")
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=out)
            procs.append((proc, out))
            wait_http(f"http://127.0.0.1:{ports[name]}/_gatekeeper/healthz", proc, log)
        yield {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    finally:
        for proc, out in reversed(procs):
            stop(proc)
            out.close()  # type: ignore[attr-defined]


def decisions(gate: str, verdict: str) -> float:
    text = httpx.get(f"{gate}/_gatekeeper/metrics").text
    match = re.search(rf'gatekeeper_gate_decisions_total{{decision="{verdict}"}} ([\d.]+)', text)
    return float(match.group(1)) if match else 0.0


def test_nginx_queues_through_gatekeeper_and_caches_admission(stack: dict[str, str]):
    base = stack["nginx"]
    with (
        httpx.Client(base_url=base) as a,
        httpx.Client(base_url=base) as b,
        httpx.Client(base_url=base) as c,
    ):
        assert "seat map" in a.get("/").text
        assert "seat map" in b.get("/").text
        waiting = c.get("/")
        assert "in line" in waiting.text.lower()
        assert waiting.headers["cache-control"] == "no-store, private"
        # Admitted traffic: nginx asks gatekeeper once, then serves from its decision cache.
        before = decisions(stack["gate"], "pass")
        for _ in range(50):
            assert a.get("/seats").status_code == 200
        assert decisions(stack["gate"], "pass") - before <= 3
        # A done path goes through gatekeeper and frees the place for the visitor in line.
        assert a.post("/checkout/complete").status_code == 200
        deadline = time.monotonic() + 10
        while "seat map" not in c.get("/").text:
            assert time.monotonic() < deadline, "the waiting visitor was not let in"
            time.sleep(0.1)
        assert c.cookies.get("gk_session")
        # The origin never sees the gatekeeper's cookie or a forged proof.
        r = c.get("/", headers={"x-gatekeeper-proof": "forged"})
        assert r.status_code == 200


Answer = Callable[[str, str], tuple[int, dict[str, str], bytes]]


class Upstream(ThreadingHTTPServer):
    """An HTTP/1.1 stand-in for nginx's origin or gatekeeper: answers with `answer(path,
    cookie)`, keeps a connection open unless asked to close it, and counts those it accepted."""

    daemon_threads = True

    def __init__(self, answer: Answer) -> None:
        super().__init__(("127.0.0.1", 0), _UpstreamHandler)
        self.answer = answer
        self.accepted = 0
        self.closes_asked = 0

    def get_request(self) -> tuple[socket.socket, Any]:
        accepted = super().get_request()
        self.accepted += 1  # one accept at a time, on the serving thread
        return accepted


class _UpstreamHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # the head and the body go out in two writes
    server: Upstream

    def do_GET(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        if self.headers.get("connection", "").lower() == "close":
            self.server.closes_asked += 1
        status, headers, body = self.server.answer(self.path, self.headers.get("cookie", ""))
        self.send_response(status)
        for name, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, format: str, *args: object) -> None:
        pass


def origin_answer(path: str, cookie: str) -> tuple[int, dict[str, str], bytes]:
    return 200, {"Content-Type": "text/html"}, b"<title>seat map</title>"


def gate_answer(path: str, cookie: str) -> tuple[int, dict[str, str], bytes]:
    if path == "/_gatekeeper/auth":
        # As gatekeeper's decision: an empty 200 or 401. Expires 0: nginx asks every time.
        admitted = "gk_session=ok" in cookie
        return (200 if admitted else 401), {"X-Accel-Expires": "0"}, b""
    return 200, {"Content-Type": "text/html"}, b"you are in line"


@dataclass(frozen=True)
class Counted:
    nginx: str
    origin: Upstream
    gate: Upstream


@contextmanager
def nginx_in_front(tmp_path: Path, gate: Answer) -> Iterator[Counted]:
    """nginx on the example config in front of stand-ins for the origin and for gatekeeper
    (answering with `gate`), which count the connections they accepted."""
    origin, gatekeeper = Upstream(origin_answer), Upstream(gate)
    for server in (origin, gatekeeper):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    ports = {"origin": origin.server_port, "gate": gatekeeper.server_port, "nginx": free_port()}
    log = tmp_path / "nginx.log"
    try:
        with log.open("wb") as out:
            proc = subprocess.Popen(nginx_command(tmp_path, ports), stdout=out, stderr=out)
            try:
                wait_http(f"http://127.0.0.1:{ports['nginx']}/_gatekeeper/healthz", proc, log)
                yield Counted(f"http://127.0.0.1:{ports['nginx']}", origin, gatekeeper)
            finally:
                stop(proc)
    finally:
        for server in (origin, gatekeeper):
            server.shutdown()
            server.server_close()


@pytest.fixture
def counted(tmp_path: Path) -> Iterator[Counted]:
    with nginx_in_front(tmp_path, gate_answer) as found:
        yield found


def test_nginx_keeps_upstream_connections_alive(counted: Counted):
    """Every proxying location of the example reuses its upstream connections (keepalive)
    instead of sending `Connection: close` and opening one per request."""
    origin, gate = counted.origin, counted.gate
    origin.accepted = gate.accepted = 0
    n = 200
    with httpx.Client(base_url=counted.nginx) as client:
        for _ in range(n):
            # location / after location = /_gatekeeper/auth: a decision, then the origin.
            r = client.get("/seats", headers={"cookie": "gk_session=ok"})
            assert r.text == "<title>seat map</title>"
            # A "no" from the decision goes to location @gate.
            assert client.get("/").text == "you are in line"
            # The done path, and gatekeeper's own pages and API.
            assert client.post("/checkout/complete").status_code == 200
            assert client.get("/_gatekeeper/healthz").status_code == 200
            assert client.get("/api/waiting-room/status").status_code == 200
    # One request at a time: one connection each would do; a few allow for a reconnect.
    assert origin.accepted <= 4 and gate.accepted <= 4, (
        f"nginx opened {origin.accepted} connections to the origin and {gate.accepted} "
        f"to gatekeeper for {n} and {6 * n} requests (asked to close: origin "
        f"{origin.closes_asked}, gatekeeper {gate.closes_asked})"
    )


def test_nginx_follows_a_changed_decision_once_the_cached_one_expires(tmp_path: Path):
    """The decision cache keeps its files open (open_file_cache); a decision nginx fetched
    anew replaces the file, and nginx reads the new one, not the one it kept open."""
    decision = {"status": 200}

    def gate(path: str, cookie: str) -> tuple[int, dict[str, str], bytes]:
        if path == "/_gatekeeper/auth":
            return decision["status"], {"X-Accel-Expires": "1"}, b""
        return 200, {"Content-Type": "text/html"}, b"you are in line"

    with (
        nginx_in_front(tmp_path, gate) as stack,
        httpx.Client(base_url=stack.nginx, headers={"cookie": "gk_session=s1"}) as client,
    ):
        for _ in range(20):  # cached: the file is opened once and kept
            assert client.get("/seats").text == "<title>seat map</title>"
        decision["status"] = 401  # the pass was revoked
        deadline = time.monotonic() + 10
        while client.get("/seats").text != "you are in line":
            assert time.monotonic() < deadline, "nginx kept the expired decision"
            time.sleep(0.1)
        decision["status"] = 200  # and back: the third file is read as well
        while client.get("/seats").text != "<title>seat map</title>":
            assert time.monotonic() < deadline, "nginx kept the second decision"
            time.sleep(0.1)
