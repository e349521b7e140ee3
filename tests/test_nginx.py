"""examples/nginx: real nginx with auth_request in front of a real origin and gatekeeper."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

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


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[dict[str, str]]:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(nginx):
        pytest.fail("nginx is missing: `apt-get install nginx-light` (make system-deps)")
    ports = {name: free_port() for name in ("origin", "gate", "nginx")}
    conf = CONFIG.read_text()
    conf = conf.replace("127.0.0.1:9000", f"127.0.0.1:{ports['origin']}")
    conf = conf.replace("127.0.0.1:8080", f"127.0.0.1:{ports['gate']}")
    conf = conf.replace("listen 8000", f"listen 127.0.0.1:{ports['nginx']}")
    conf = conf.replace("/tmp/gatekeeper-nginx", str(tmp_path / "nginx"))
    if os.geteuid() == 0:
        # Workers would drop to `nobody`, who cannot write under pytest's private temp dir.
        conf = "user root;\n" + conf
    (tmp_path / "nginx.conf").write_text(conf)
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
            ("nginx", [nginx, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"),
                       "-g", "daemon off;"]),
        ):  # fmt: skip
            log = tmp_path / f"{name}.log"
            out = log.open("wb")
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=out)
            procs.append((proc, out))
            wait_http(f"http://127.0.0.1:{ports[name]}/_gatekeeper/healthz", proc, log)
        yield {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    finally:
        for proc, out in reversed(procs):
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
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
