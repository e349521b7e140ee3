"""The servers a scenario starts (origin, gatekeeper, Redis, nginx) and what it asks them."""

from __future__ import annotations

import re
import secrets
import shutil
import sys
import urllib.request
from pathlib import Path

import redis

from bench.nginx import auth_conf, plain_conf
from bench.procs import SERVER_CPU, BenchError, Procs, free_port, http_ready
from bench.targets import PAGE

COOKIE = "gk_session"
HEALTH = "/_gatekeeper/healthz"
# Every gatekeeper process of a run signs with the same key; plain HTTP on loopback.
BASE_ENV = {
    "WAITINGROOM_GATE_COOKIE_KEYS": secrets.token_hex(24),
    "WAITINGROOM_GATE_COOKIE_SECURE": "false",
}
LONG = "3600"
"""Seconds: longer than any run, so nothing times out while it is measured."""


def url(port: int, path: str = "/") -> str:
    """A loopback URL."""
    return f"http://127.0.0.1:{port}{path}"


def uvicorn(
    app: str, port: int, *, factory: bool = False, proxy: bool = False, http: str = "httptools"
) -> list[str]:
    """One uvicorn worker with the flags every benchmark server uses, on the `http` protocol.

    Like `gatekeeper run`: no Server header and no X-Forwarded-* handling in uvicorn (the gate
    decides whom to trust), idle connections kept 30 s (`server.keep-alive`); a proxy passes
    the origin's Date instead of adding its own.
    """
    cmd = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
           "--http", http, "--loop", "uvloop", "--no-access-log", "--log-level", "warning",
           "--no-server-header", "--no-proxy-headers", "--timeout-keep-alive", "30"]  # fmt: skip
    if factory:
        cmd.append("--factory")
    if proxy:
        cmd.append("--no-date-header")
    return cmd


def start_origin(procs: Procs, name: str = "origin") -> int:
    """The 2 KB origin page; returns its port."""
    port = free_port()
    procs.start(name, uvicorn("bench.targets:origin", port), ready=http_ready(url(port)))
    return port


# The HTTP protocol `gatekeeper run` serves with (gatekeeper.server: uvicorn's httptools
# protocol with head limits, the response head and body in one write, a disconnect hook), at
# its default limits; for the gated and the gate-off proxy alike, so P1 compares the gate alone.
PROTOCOL = "gatekeeper.server:LimitedHttpToolsProtocol"


def _proxy_cmd(app: str, port: int) -> list[str]:
    return uvicorn(app, port, factory=True, proxy=True, http=PROTOCOL)


def start_gated(procs: Procs, origin: int, env: dict[str, str], name: str = "gated") -> int:
    """The gated proxy as `gatekeeper run --origin` serves it (`bench.targets:gated`, embedded
    store unless env says otherwise)."""
    port = free_port()
    full = {**BASE_ENV, "BENCH_ORIGIN": url(origin).rstrip("/"), **env}
    procs.start(name, _proxy_cmd("bench.targets:gated", port), env=full,
                ready=http_ready(url(port, HEALTH)))  # fmt: skip
    return port


def start_gate_off(procs: Procs, origin: int, name: str = "gate-off") -> int:
    """The same reverse proxy on the same server, with no gate."""
    port = free_port()
    env = {**BASE_ENV, "BENCH_ORIGIN": url(origin).rstrip("/")}
    procs.start(name, _proxy_cmd("bench.targets:proxy", port), env=env, ready=http_ready(url(port)))
    return port


def start_api(procs: Procs, name: str, env: dict[str, str], redis_url: str | None = None) -> int:
    """`gatekeeper run` in API mode (no origin)."""
    port = free_port()
    cmd = [sys.executable, "-m", "gatekeeper", "run", "--host", "127.0.0.1", "--port", str(port),
           "--log-level", "warning"]  # fmt: skip
    if redis_url:
        cmd += ["--redis-url", redis_url]
    procs.start(name, cmd, env={**BASE_ENV, **env}, ready=http_ready(url(port, "/healthz")))
    return port


def start_redis(procs: Procs, name: str = "redis", cpu: int = SERVER_CPU) -> str:
    """A throwaway redis-server (no persistence) pinned to `cpu`; returns its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise BenchError("redis-server is not installed (make system-deps)")
    port = free_port()
    workdir = procs.logdir / f"{name}-data"
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
           "--dir", str(workdir)]  # fmt: skip

    def ready() -> bool:
        try:
            return bool(redis.Redis(port=port, socket_timeout=0.5).ping())
        except redis.RedisError:
            return False

    procs.start(name, cmd, cpu=cpu, ready=ready)
    return f"redis://127.0.0.1:{port}/0"


def nginx_binary() -> str:
    """The nginx executable."""
    found = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(found).exists():
        raise BenchError("nginx is missing: apt-get install nginx-light (make system-deps)")
    return found


def start_nginx(procs: Procs, name: str, origin: int, gate: int | None = None) -> int:
    """nginx (1 worker) proxying the origin; with `gate`, the repo's auth_request config."""
    port = free_port()
    prefix = (procs.logdir / name).resolve()
    prefix.mkdir(parents=True, exist_ok=True)
    conf = (
        plain_conf(prefix, port, origin) if gate is None else auth_conf(prefix, port, origin, gate)
    )
    (prefix / "nginx.conf").write_text(conf)
    cmd = [nginx_binary(), "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-g", "daemon off;"]
    procs.start(name, cmd, ready=http_ready(url(port, HEALTH)))
    return port


def admitted_cookie(port: int) -> str:
    """Visit as a newcomer (admitted at once: the room is empty), then once more with the
    cookie, which claims the place and renews the pass: the `Cookie:` value, a full pass."""
    cookie = ""
    for _ in range(2):
        req = urllib.request.Request(url(port), headers={"Cookie": cookie} if cookie else {})
        with urllib.request.urlopen(req, timeout=10) as r:
            body = r.read()
            cookies = r.headers.get_all("set-cookie") or []
        found = [str(c).split(";", 1)[0] for c in cookies if str(c).startswith(f"{COOKIE}=")]
        if body != PAGE or not found:
            raise BenchError(f"port {port}: the first visitor was not admitted")
        cookie = found[0]
    return cookie


def get(port: int, path: str, cookie: str) -> bytes:
    """GET with a cookie; the body."""
    req = urllib.request.Request(url(port, path), headers={"Cookie": cookie})
    with urllib.request.urlopen(req, timeout=10) as r:
        return bytes(r.read())


def decisions(port: int) -> dict[str, float]:
    """The gate's decision counters (pass, admitted, waiting, ...) from its metrics."""
    with urllib.request.urlopen(url(port, "/_gatekeeper/metrics"), timeout=10) as r:
        text = r.read().decode()
    found = re.findall(r'gatekeeper_gate_decisions_total\{decision="(\w+)"\} ([\d.e+]+)', text)
    return {name: float(value) for name, value in found}
