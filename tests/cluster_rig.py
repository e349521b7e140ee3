"""A multi-process rig: N `gatekeeper run` replicas, an origin, a sampler and simulated visitors.

Everything runs as real processes on loopback and is started and stopped by the tests:

- `OriginProcess`: a small ASGI app under uvicorn in a child process. It checks the proof header
  gatekeeper adds (`X-Gatekeeper-Proof: v1.<ts>.<sessionId>.<hmac>`), records every request as
  (epoch ms, session id, path), and answers `{"origin": true, "sessionId", "path"}`; on
  `/leave-cmd` it also sends `X-Gatekeeper-Command: leave`. Its records are read back through
  `/_rig/records` (asked directly, never through the gate).
- `Replica`: one `gatekeeper run --origin ... --redis-url ...` process on a free port; all
  replicas of a rig share one key prefix, cookie keys, proof secret and admin token.
- `Visitor`: an asyncio task with its own `httpx.AsyncClient` (own cookie jar) that picks a
  replica at random per request and retries another one on connection errors. `Rig.visit`
  joins (first request), polls with `Accept: application/json` until the origin answers,
  uses the site a few requests, then leaves (the configured done path or the origin's leave
  command). Every reply is checked on the spot: the session a reply speaks for must be the
  session in the visitor's cookie (no reply mix-ups), and a change of session is recorded as a
  re-queue.
- `ActiveSampler`: a thread with its own Redis connection reading `ZCARD <prefix>:{room}:active`
  every ~10 ms (max and sample count).

Server truth for the checks comes from Redis (session hashes: `seq`, `grantedAt`, `endedAt`,
`status`; room stats: `granted`) and from the origin's records.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import os
import random
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis
from redis.cluster import ClusterNode, RedisCluster

from gatekeeper.config.redis_url import CLUSTER_SCHEMES, parse_cluster_url
from gatekeeper.gate.proof import verify_proof
from gatekeeper.gate.tokens import CookieCodec
from tests.conftest import unique_prefix
from tests.processes import gatekeeper_command
from tests.redis_server import free_port

ROOT = Path(__file__).resolve().parent.parent
ROOM = "default"
COOKIE = "gk_session"
API = "/api/waiting-room"
ADMIN = "/_gatekeeper/admin"
DONE_PATH = "/done"
LEAVE_COMMAND_PATH = "/leave-cmd"
RECORDS_PATH = "/_rig/records"

KEY_1 = "rig-cookie-key-one-0123456789abcdef"
KEY_2 = "rig-cookie-key-two-0123456789abcdef"
ALL_KEYS = (KEY_1, KEY_2)
PROOF_SECRET = "rig-proof-secret-0123456789abcdef"
ADMIN_TOKEN = "rig-admin-token-0123456789abcdef"
COOKIE_MAX_AGE = 86_400

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
SyncRedis = redis.Redis | RedisCluster

# One TLS context for every client: httpx would otherwise build (and load CAs into) one per
# client, which costs real CPU for hundreds of visitors (and TLS is never used on loopback).
_SSL = ssl.create_default_context()


def new_client(**kwargs: Any) -> httpx.AsyncClient:
    """An HTTP client for loopback: no proxies from the environment, generous timeouts."""
    kwargs.setdefault("timeout", httpx.Timeout(15.0, connect=5.0))
    return httpx.AsyncClient(trust_env=False, verify=_SSL, **kwargs)


async def wait_until(
    predicate: Callable[[], Awaitable[bool]] | Callable[[], bool],
    timeout: float,
    what: str,
    interval: float = 0.02,
) -> float:
    """Wait until `predicate()` is true; returns the seconds it took, fails after `timeout`."""
    started = time.monotonic()
    while True:
        result = predicate()
        if not isinstance(result, bool):
            result = await result
        if result:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout:.1f} s waiting for: {what}")
        await asyncio.sleep(interval)


# --------------------------------------------------------------------------- the origin


def _origin_app(secret: bytes) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    records: list[tuple[int, str, str]] = []
    refused = [0]
    leaked = [0]  # requests that carried an enqueue token (query or header): never allowed

    async def respond(
        send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]]
    ) -> None:
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *extra,
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        path: str = scope["path"]
        if path == RECORDS_PATH:
            body = json.dumps(
                {"records": records, "refused": refused[0], "leaked": leaked[0]}
            ).encode()
            return await respond(send, 200, body, [])
        proof = b""
        for key, value in scope["headers"]:
            if key == b"x-gatekeeper-proof":
                proof = value
            if key == b"x-gatekeeper-enqueue":
                leaked[0] += 1
        if b"gk-enqueue" in scope.get("query_string", b""):
            leaked[0] += 1
        sid = verify_proof(secret, proof.decode("latin-1"), now_s=int(time.time()))
        if sid is None:
            refused[0] += 1
            return await respond(send, 403, b'{"error": "no valid proof"}', [])
        records.append((time.time_ns() // 1_000_000, sid, path))
        extra = [(b"x-gatekeeper-command", b"leave")] if path == LEAVE_COMMAND_PATH else []
        body = json.dumps({"origin": True, "sessionId": sid, "path": path}).encode()
        await respond(send, 200, body, extra)

    return app


def _serve_origin(fd: int, secret: str) -> None:
    import uvicorn

    config = uvicorn.Config(
        _origin_app(secret.encode()),
        log_config=None,
        log_level="warning",
        access_log=False,
        lifespan="off",
        ws="none",
        timeout_graceful_shutdown=1,
    )
    uvicorn.Server(config).run(sockets=[socket.socket(fileno=fd)])


@dataclass(frozen=True, slots=True)
class OriginRecord:
    """One request the origin served: when (epoch ms), for which session, which path."""

    at_ms: int
    sid: str
    path: str


class OriginProcess:
    """The recording origin in a child process, on a socket that listens before it starts."""

    def __init__(self, log_path: Path) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1024)
        self.port: int = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._log_path = log_path
        self._log: Any = None
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._log = self._log_path.open("ab")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        fd = self.sock.fileno()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.cluster_rig", "origin", str(fd), PROOF_SECRET],
            pass_fds=[fd],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
        )

    async def records(self) -> tuple[list[OriginRecord], int]:
        """Every request served so far, in arrival order, and how many proofs it refused."""
        async with new_client() as client:
            reply = await client.get(self.url + RECORDS_PATH)
        reply.raise_for_status()
        data = reply.json()
        return [OriginRecord(int(t), str(s), str(p)) for t, s, p in data["records"]], int(
            data["refused"]
        )

    async def leaked(self) -> int:
        """How many requests reached the origin carrying an enqueue token."""
        async with new_client() as client:
            reply = await client.get(self.url + RECORDS_PATH)
        reply.raise_for_status()
        return int(reply.json()["leaked"])

    def stop(self) -> None:
        if self.proc is not None:
            _terminate(self.proc, 10)
            self.proc = None
        self.sock.close()
        if self._log is not None:
            self._log.close()
            self._log = None


def _terminate(proc: subprocess.Popen[bytes], timeout: float) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
            return
        except subprocess.TimeoutExpired:
            proc.kill()
    proc.wait()


# --------------------------------------------------------------------------- the replicas


class Replica:
    """One `gatekeeper run` process; restartable on the same port with other settings."""

    def __init__(self, index: int, args: list[str], log_path: Path) -> None:
        self.index = index
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [*args, "--host", "127.0.0.1", "--port", str(self.port)]
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.env: dict[str, str] = {}
        self.starts = 0
        self._log: Any = None

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, env: dict[str, str]) -> None:
        assert not self.alive(), f"replica {self.index} is already running"
        self.env = env
        self._log = self.log_path.open("ab")
        self.starts += 1
        self._log.write(f"--- start #{self.starts}\n".encode())
        self._log.flush()
        self.proc = subprocess.Popen(
            self.args, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=self._log
        )

    async def wait_ready(self, client: httpx.AsyncClient, timeout: float = 40.0) -> None:
        """Until `/_gatekeeper/readyz` answers 200 (the store is reachable)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                reply = await client.get(self.url + "/_gatekeeper/readyz", timeout=2)
                if reply.status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.proc is None or self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"replica {self.index} did not come up:\n{self.log_tail()}")
            await asyncio.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: the process vanishes mid-request, as in a crash."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
        self._close_log()

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (graceful), SIGKILL after `timeout`."""
        if self.proc is not None:
            _terminate(self.proc, timeout)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


# --------------------------------------------------------------------------- Redis access


def sync_redis(url: str, timeout: float = 2.0) -> SyncRedis:
    """A synchronous client for a `redis://` or `redis+cluster://` URL (the rig's own)."""
    if url.startswith(tuple(f"{s}://" for s in CLUSTER_SCHEMES)):
        parsed = parse_cluster_url(url)
        return RedisCluster(
            startup_nodes=[ClusterNode(h, p) for h, p in parsed.nodes],  # type: ignore[no-untyped-call]
            decode_responses=True,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
        )
    return redis.Redis.from_url(
        url, decode_responses=True, socket_timeout=timeout, socket_connect_timeout=timeout
    )


class ActiveSampler:
    """Reads `ZCARD` of the room's active set every `interval` s from its own connection."""

    def __init__(self, url: str, key: str, interval: float = 0.01) -> None:
        self.url = url
        self.key = key
        self.interval = interval
        self.samples = 0
        self.max = 0
        self.errors = 0
        self.series: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="active-sampler", daemon=True)

    def start(self) -> ActiveSampler:
        self._thread.start()
        return self

    def _run(self) -> None:
        client: SyncRedis | None = None
        next_at = time.monotonic()
        while not self._stop.is_set():
            try:
                if client is None:
                    client = sync_redis(self.url, timeout=0.5)
                count = int(client.zcard(self.key))
            except Exception:  # a dead or stalled Redis: count it, reconnect, carry on
                self.errors += 1
                if client is not None:
                    _close_quietly(client)
                    client = None
                self._stop.wait(0.05)
                continue
            self.samples += 1
            self.max = max(self.max, count)
            self.series.append((time.monotonic(), count))
            next_at += self.interval
            self._stop.wait(max(0.0, next_at - time.monotonic()))
            next_at = max(next_at, time.monotonic() - self.interval)
        if client is not None:
            _close_quietly(client)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def _close_quietly(client: SyncRedis) -> None:
    try:
        client.close()
    except Exception:
        pass


# --------------------------------------------------------------------------- visitors


@dataclass(slots=True)
class Reply:
    """One answer a visitor got, classified."""

    kind: str
    """`origin` (admitted: the origin answered), `waiting` (gate status JSON or page),
    `unavailable` (503 with Retry-After), or `other` (anything else: a failure)."""
    status: int
    replica: int
    path: str
    sid: str | None
    """The session this reply speaks for (origin echo or status JSON)."""
    cookie_sid: str | None
    """The session in the visitor's cookie after this reply."""
    poll_after_ms: int | None
    retry_after: str | None
    sent_at: float
    latency: float
    content_type: str = ""
    detail: str = ""


@dataclass(slots=True)
class Requeue:
    """A visitor found itself holding a different session than before."""

    at: float
    old: str
    new: str
    was_admitted: bool
    replica: int
    path: str


@dataclass(slots=True)
class Visitor:
    """A simulated visitor: its own client and cookie jar, and what it saw."""

    index: int
    client: httpx.AsyncClient
    sid: str | None = None
    sids: list[str] = field(default_factory=list)
    active: bool = False
    join_started: float | None = None
    join_done: float | None = None
    placed_at_once: bool = False
    """The request that placed the visitor (the first, or the comeback) was let through."""
    admitted_at: float | None = None
    admitted_sid: str | None = None
    done_at: float | None = None
    left_sid: str | None = None
    leave_confirmed: bool = False
    rescued: bool = False
    finished: bool = False
    requeues: list[Requeue] = field(default_factory=list)
    mixups: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    kinds: dict[str, int] = field(default_factory=dict)
    transport_errors: int = 0
    max_latency: float = 0.0
    last_used: dict[int, float] = field(default_factory=dict)
    history: list[Reply] = field(default_factory=list)

    def cookie(self) -> str | None:
        value = self.client.cookies.get(COOKIE)
        return None if value is None else str(value)


@dataclass(frozen=True, slots=True)
class VisitPlan:
    """What a visitor does: join, poll until admitted, use the site, leave."""

    uses: int = 3
    think_s: tuple[float, float] = (0.01, 0.05)
    poll_s: tuple[float, float] = (0.05, 0.2)
    leave: str = "random"
    """`done` (the configured done path), `command` (the origin's leave command), `random`."""
    confirm_leave_s: float = 5.0
    """Wait this long for the session to read LEFT afterwards (0: do not check)."""
    rescue: bool = False
    """Leave through the API when the gate's own leave was lost (a replica killed mid-way)."""
    start_delay_s: float = 0.0
    unavailable_pause_s: tuple[float, float] = (0.1, 0.3)


@dataclass(frozen=True, slots=True)
class RigSettings:
    """How the replicas are configured (environment variables, plus a config file)."""

    replicas: int = 3
    capacity: int = 20
    rate_ms: int = 100
    batch_size: int = 10
    pass_ttl_s: float = 5.0
    keys: tuple[str, ...] = (KEY_1,)
    socket_timeout_ms: int = 500
    connect_timeout_ms: int = 500
    claim_window_s: float = 60.0
    idle_timeout_s: float = 300.0
    waiting_timeout_s: float = 300.0
    polling_min_ms: int = 100
    failure_policy: str = "closed"
    extra_env: tuple[tuple[str, str], ...] = ()


class Rig:
    """An origin, N replicas on one Redis (or cluster), and the visitors' plumbing."""

    def __init__(self, redis_url: str, workdir: Path, settings: RigSettings) -> None:
        self.redis_url = redis_url
        self.workdir = workdir
        self.settings = settings
        self.prefix = unique_prefix()
        self.active_key = f"{self.prefix}:{{{ROOM}}}:active"
        self.stats_key = f"{self.prefix}:{{{ROOM}}}:stats"
        self.session_prefix = f"{self.prefix}:{{{ROOM}}}:session:"
        self.reader = CookieCodec(ALL_KEYS, max_age_s=COOKIE_MAX_AGE)
        self.rng = random.Random()
        self.origin = OriginProcess(workdir / "origin.log")
        self.config_path = workdir / "gatekeeper.yaml"
        self.replicas: list[Replica] = []
        self.transport_errors: dict[int, int] = {}
        self.error_kinds: dict[str, int] = {}
        self.error_log: list[str] = []
        self.replies: list[Reply] = []
        self._control: httpx.AsyncClient | None = None
        self._redis: SyncRedis | None = None

    # -- lifecycle

    async def __aenter__(self) -> Rig:
        try:
            await self.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def env(self, keys: Sequence[str] | None = None) -> dict[str, str]:
        s = self.settings
        base = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("WAITINGROOM_") and k not in ("REDIS_URL",)
        }
        base.update(
            {
                "WAITINGROOM_PROCESSING_CAPACITY": str(s.capacity),
                "WAITINGROOM_PROCESSING_RATE_MS": str(s.rate_ms),
                "WAITINGROOM_PROCESSING_BATCH_SIZE": str(s.batch_size),
                "WAITINGROOM_REDIS_KEY_PREFIX": self.prefix,
                "WAITINGROOM_REDIS_SOCKET_TIMEOUT_MS": str(s.socket_timeout_ms),
                "WAITINGROOM_REDIS_CONNECT_TIMEOUT_MS": str(s.connect_timeout_ms),
                "WAITINGROOM_GATE_COOKIE_KEYS": ",".join(keys or s.keys),
                "WAITINGROOM_GATE_COOKIE_SECURE": "false",
                "WAITINGROOM_GATE_COOKIE_PASS_TTL": str(s.pass_ttl_s),
                "WAITINGROOM_GATE_PROOF_SECRET": PROOF_SECRET,
                "WAITINGROOM_GATE_FAILURE_POLICY": s.failure_policy,
                "WAITINGROOM_ADMIN_TOKEN": ADMIN_TOKEN,
                "WAITINGROOM_LIFECYCLE_CLAIM_WINDOW": str(s.claim_window_s),
                "WAITINGROOM_LIFECYCLE_IDLE_TIMEOUT": str(s.idle_timeout_s),
                "WAITINGROOM_LIFECYCLE_WAITING_TIMEOUT": str(s.waiting_timeout_s),
                "WAITINGROOM_POLLING_MIN_MS": str(s.polling_min_ms),
                # Every simulated visitor connects from 127.0.0.1: a per-client join limit
                # would count the whole crowd as one client (tests/test_join_flood.py has it).
                "WAITINGROOM_PROCESSING_CLIENT_JOINS_PER_MINUTE": "0",
                **dict(s.extra_env),
            }
        )
        return base

    async def start(self) -> None:
        self.config_path.write_text(
            "waitingroom:\n"
            "  gate:\n"
            f'    done-paths: ["{DONE_PATH}"]\n'
            "  server:\n"
            "    graceful-timeout: 2\n"
        )
        self._control = new_client()
        self.origin.start()
        args = [
            *gatekeeper_command(),
            "run",
            "--config", str(self.config_path),
            "--redis-url", self.redis_url,
            "--origin", self.origin.url,
            "--log-level", "warning",
        ]  # fmt: skip
        for i in range(self.settings.replicas):
            replica = Replica(i, args, self.workdir / f"replica-{i}.log")
            self.replicas.append(replica)
            self.transport_errors[i] = 0
            replica.start(self.env())
        await asyncio.gather(*(r.wait_ready(self._control) for r in self.replicas))

    async def close(self) -> None:
        await asyncio.gather(*(asyncio.to_thread(r.stop, 10.0) for r in self.replicas))
        self.origin.stop()
        if self._control is not None:
            await self._control.aclose()
            self._control = None
        if self._redis is not None:
            _close_quietly(self._redis)
            self._redis = None

    @property
    def control(self) -> httpx.AsyncClient:
        assert self._control is not None, "the rig is not started"
        return self._control

    @property
    def redis(self) -> SyncRedis:
        if self._redis is None:
            self._redis = sync_redis(self.redis_url)
        return self._redis

    async def restart_replica(self, index: int, keys: Sequence[str] | None = None) -> float:
        """Stop one replica gracefully and start it again (same port); returns the downtime."""
        replica = self.replicas[index]
        started = time.monotonic()
        await asyncio.to_thread(replica.stop, 15.0)
        replica.start(self.env(keys))
        await replica.wait_ready(self.control)
        return time.monotonic() - started

    def codec_for(self, keys: Sequence[str]) -> CookieCodec:
        """A cookie codec with these keys (the last one signs), as a replica would have."""
        return CookieCodec(keys, max_age_s=COOKIE_MAX_AGE)

    def sampler(self, interval: float = 0.01) -> ActiveSampler:
        return ActiveSampler(self.redis_url, self.active_key, interval)

    # -- talking to the replicas

    def pick(self) -> int:
        return self.rng.randrange(len(self.replicas))

    async def request(
        self,
        v: Visitor,
        path: str,
        *,
        replica: int | None = None,
        json_accept: bool = True,
        cookie: str | None = None,
        give_up_s: float = 60.0,
    ) -> Reply:
        """One visitor request through a random replica (or `replica`); on a connection error
        the visitor tries another random replica, as behind a load balancer. `cookie` sends
        that cookie value instead of the jar's (to replay an old or forged cookie)."""
        headers = {"accept": "application/json" if json_accept else "text/html"}
        if cookie is not None:
            headers["cookie"] = f"{COOKIE}={cookie}"
        deadline = time.monotonic() + give_up_s
        while True:
            index = self.pick() if replica is None else replica
            url = self.replicas[index].url + path
            sent = time.monotonic()
            try:
                response = await v.client.get(url, headers=headers)
            except httpx.TransportError as exc:
                v.transport_errors += 1
                self.transport_errors[index] += 1
                name = type(exc).__name__
                self.error_kinds[name] = self.error_kinds.get(name, 0) + 1
                # Typically uvicorn closing a keep-alive connection idle for ~5 s just as the
                # client reuses it; a browser retries such a GET the same way.
                idle = sent - v.last_used.get(index, sent)
                self.error_log.append(f"{name}: {exc} (replica {index}, {path}, idle {idle:.2f} s)")
                if replica is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        f"visitor {v.index}: {path} via replica {index}: {exc!r}"
                    ) from exc
                await asyncio.sleep(self.rng.uniform(0.01, 0.05))
                continue
            v.last_used[index] = time.monotonic()
            reply = self.classify(v, response, index, path, sent, cookie)
            self.observe(v, reply)
            return reply

    def classify(
        self,
        v: Visitor,
        response: httpx.Response,
        index: int,
        path: str,
        sent: float,
        sent_cookie: str | None = None,
    ) -> Reply:
        latency = time.monotonic() - sent
        # The visitor's cookie after this reply: a new one if the gate set one, else the one
        # it sent (a replayed cookie is not in the jar).
        raw_cookie = v.cookie()
        sets = any(c.startswith(f"{COOKIE}=") for c in response.headers.get_list("set-cookie"))
        if sent_cookie is not None and not sets:
            raw_cookie = sent_cookie
        cookie_sid = None
        if raw_cookie is not None:
            decoded = self.reader.loads(raw_cookie)
            cookie_sid = None if decoded is None else decoded.session_id
        status = response.status_code
        kind, sid, poll_after, detail = "other", None, None, ""
        data: Any = None
        if "json" in response.headers.get("content-type", ""):
            try:
                data = response.json()
            except ValueError:
                data = None
        retry_after = response.headers.get("retry-after")
        if status == 200 and isinstance(data, dict) and data.get("origin") is True:
            kind, sid = "origin", str(data["sessionId"])
        elif isinstance(data, dict) and data.get("status") in ("WAITING", "ACTIVE"):
            kind, sid = "waiting", str(data["sessionId"])
            poll_after = int(data.get("pollAfterMs") or 0)
        elif status == 503 and retry_after:
            kind = "unavailable"
        elif status == 200 and "text/html" in response.headers.get("content-type", ""):
            kind = "waiting"  # the HTML waiting page
            sid = cookie_sid
        else:
            detail = response.text[:200]
        return Reply(
            kind, status, index, path, sid, cookie_sid, poll_after, retry_after, sent, latency,
            response.headers.get("content-type", ""), detail,
        )  # fmt: skip

    def observe(self, v: Visitor, reply: Reply) -> None:
        self.replies.append(reply)
        v.history.append(reply)
        v.kinds[reply.kind] = v.kinds.get(reply.kind, 0) + 1
        v.max_latency = max(v.max_latency, reply.latency)
        if reply.kind == "other":
            v.unexpected.append(
                f"{reply.status} via replica {reply.replica} for {reply.path}: {reply.detail}"
            )
        if reply.sid is not None and reply.sid != reply.cookie_sid:
            v.mixups.append(
                f"reply for {reply.sid} but cookie holds {reply.cookie_sid} "
                f"({reply.kind} via replica {reply.replica}, {reply.path})"
            )
        if reply.sid is None:
            return
        if v.sid is None:
            v.sid = reply.sid
            v.sids.append(reply.sid)
        elif reply.sid != v.sid:
            v.requeues.append(
                Requeue(reply.sent_at, v.sid, reply.sid, v.active, reply.replica, reply.path)
            )
            v.sid = reply.sid
            v.sids.append(reply.sid)
            v.active = False
        if reply.kind == "origin":
            v.active = True
            if v.admitted_at is None:
                v.admitted_at = reply.sent_at + reply.latency
                v.admitted_sid = reply.sid

    def new_visitor(self, index: int) -> Visitor:
        return Visitor(index, new_client())

    async def visit(self, v: Visitor, plan: VisitPlan) -> None:
        """Join, poll until admitted, use the site `plan.uses` times, leave."""
        if plan.start_delay_s:
            await asyncio.sleep(plan.start_delay_s)
        leave_path = plan.leave
        if leave_path == "random":
            leave_path = self.rng.choice(("done", "command"))
        leave_url = DONE_PATH if leave_path == "done" else LEAVE_COMMAND_PATH
        used = 0
        path = f"/page/{used}?v={v.index}"
        reply = await self.request(v, path)
        v.join_started = reply.sent_at
        if reply.kind == "waiting":
            # A lazy join: the place in line is taken when the cookie comes back, as a
            # browser's waiting page does at once (its first poll reloads it).
            reply = await self.request(v, path)
        v.join_done = reply.sent_at + reply.latency
        v.placed_at_once = reply.kind == "origin"
        while True:
            if reply.kind == "origin":
                if reply.path == leave_url:
                    v.done_at = time.monotonic()
                    v.left_sid = reply.sid
                    break
                used += 1
                await asyncio.sleep(self.rng.uniform(*plan.think_s))
            elif reply.kind == "waiting":
                pause = self.rng.uniform(*plan.poll_s)
                if reply.poll_after_ms:
                    pause = min(pause, max(plan.poll_s[0], reply.poll_after_ms / 1000))
                await asyncio.sleep(pause)
            else:
                await asyncio.sleep(self.rng.uniform(*plan.unavailable_pause_s))
            path = leave_url if used >= plan.uses else f"/page/{used}?v={v.index}"
            reply = await self.request(v, path)
        if plan.confirm_leave_s > 0 and v.left_sid is not None:
            await self.confirm_left(v, v.left_sid, plan)
        v.finished = True

    async def stay(
        self, v: Visitor, stop: asyncio.Event, every_s: tuple[float, float] = (0.1, 0.2)
    ) -> None:
        """Keep using the site (an admitted visitor browsing) until `stop` is set."""
        n = 0
        while not stop.is_set():
            await self.request(v, f"/page/{n}?v={v.index}")
            n += 1
            try:
                await asyncio.wait_for(stop.wait(), self.rng.uniform(*every_s))
            except TimeoutError:
                pass

    async def wait_admitted(
        self, v: Visitor, timeout: float, poll_s: tuple[float, float] = (0.05, 0.1)
    ) -> Reply:
        """Poll (random replicas) until the origin answers for this visitor."""
        deadline = time.monotonic() + timeout
        while True:
            reply = await self.request(v, f"/page/wait?v={v.index}")
            if reply.kind == "origin":
                return reply
            if time.monotonic() > deadline:
                raise AssertionError(f"visitor {v.index} not admitted within {timeout} s: {reply}")
            await asyncio.sleep(self.rng.uniform(*poll_s))

    async def session_status(self, sid: str, replica: int | None = None) -> str | None:
        """A session's status through the JSON API of some replica (None: 404)."""
        while True:
            index = self.pick() if replica is None else replica
            try:
                reply = await self.control.get(f"{self.replicas[index].url}{API}/sessions/{sid}")
            except httpx.TransportError:
                if replica is not None:
                    raise
                await asyncio.sleep(0.02)
                continue
            if reply.status_code == 404:
                return None
            reply.raise_for_status()
            return str(reply.json()["status"])

    async def confirm_left(self, v: Visitor, sid: str, plan: VisitPlan) -> None:
        """The gate releases the place after answering: wait until the session reads LEFT.
        With `plan.rescue`, a release lost with a killed replica is done through the API."""
        deadline = time.monotonic() + plan.confirm_leave_s
        while time.monotonic() < deadline:
            if await self.session_status(sid) in ("LEFT", None):
                v.leave_confirmed = True
                return
            await asyncio.sleep(0.05)
        if plan.rescue:
            while True:
                index = self.pick()
                try:
                    r = await self.control.post(
                        f"{self.replicas[index].url}{API}/sessions/{sid}:leave"
                    )
                except httpx.TransportError:
                    await asyncio.sleep(0.02)
                    continue
                if r.status_code in (204, 404):
                    v.rescued = True
                    return

    async def admin(
        self, replica: int, method: str, path: str, body: dict[str, Any] | None = None
    ) -> httpx.Response:
        """An operator call to one replica's admin API."""
        reply = await self.control.request(
            method,
            f"{self.replicas[replica].url}{ADMIN}{path}",
            json=body,
            headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
        )
        assert reply.status_code in (200, 204), (
            f"admin {method} {path} via replica {replica}: {reply.status_code} {reply.text}"
        )
        return reply

    # -- server truth

    def session_hashes(self, sids: Iterable[str]) -> dict[str, dict[str, str]]:
        """The session hashes in Redis (missing sessions map to {})."""
        out: dict[str, dict[str, str]] = {}
        for sid in sids:
            found: Any = self.redis.hgetall(self.session_prefix + sid)
            out[sid] = {str(k): str(v) for k, v in found.items()}
        return out

    def all_session_ids(self) -> list[str]:
        pattern = self.session_prefix + "*"
        keys: Any = self.redis.scan_iter(match=pattern, count=1000)
        return sorted({str(k)[len(self.session_prefix) :] for k in keys})

    def room_stats(self) -> dict[str, str]:
        found: Any = self.redis.hgetall(self.stats_key)
        return {str(k): str(v) for k, v in found.items()}

    def active_count(self) -> int:
        return int(self.redis.zcard(self.active_key))


# --------------------------------------------------------------------------- checks


def fifo_violations(visitors: Sequence[Visitor], hashes: dict[str, dict[str, str]]) -> list[str]:
    """Visitors who kept polling are admitted in join order, with grant-batch granularity.

    Server truth: every session hash carries its join `seq` and `grantedAt` (Redis TIME of the
    grant step, shared by one batch). For visitors holding one session throughout, a smaller
    seq must never be granted strictly later. The client-side definition (A's join completed
    before B's join started ⇒ A admitted no later than B) is implied by it, and checked too.
    """
    rows: list[tuple[int, int, float, float, int]] = []
    for v in visitors:
        if v.requeues or v.admitted_sid is None or v.join_started is None:
            continue
        h = hashes.get(v.admitted_sid, {})
        if "seq" not in h or "grantedAt" not in h:
            continue
        assert v.join_done is not None
        rows.append((int(h["seq"]), int(h["grantedAt"]), v.join_started, v.join_done, v.index))
    problems: list[str] = []
    by_seq = sorted(rows)
    latest = (0, 0, -1)
    for seq, granted, _, _, index in by_seq:
        if granted < latest[1]:
            problems.append(
                f"visitor {index} (seq {seq}) granted at {granted}, before visitor {latest[2]} "
                f"(seq {latest[0]}, joined earlier) granted at {latest[1]}"
            )
        if granted >= latest[1]:
            latest = (seq, granted, index)
    # Client-side: if A's join completed before B's join started, A is granted no later.
    by_join_done = sorted(rows, key=lambda r: r[3])
    dones = [r[3] for r in by_join_done]
    prefix_max: list[tuple[int, int]] = []  # (latest grant among the first k, its visitor)
    best = (-1, -1)
    for _, granted, _, _, index in by_join_done:
        if granted > best[0]:
            best = (granted, index)
        prefix_max.append(best)
    for seq, granted, started, _, index in rows:
        k = bisect.bisect_left(dones, started)
        if k > 0 and prefix_max[k - 1][0] > granted:
            other_granted, other = prefix_max[k - 1]
            problems.append(
                f"visitor {index} (seq {seq}) started joining after visitor {other}'s join "
                f"completed, yet was granted first ({granted} < {other_granted})"
            )
    return problems


def client_order_inversions(visitors: Sequence[Visitor]) -> int:
    """Pairs admitted (as first seen by the clients) against join order: loose, informative."""
    rows = sorted(
        (v.join_done, v.admitted_at)
        for v in visitors
        if v.join_done is not None and v.admitted_at is not None
    )
    inversions = 0
    latest = 0.0
    for _, admitted in rows:
        if admitted < latest:
            inversions += 1
        latest = max(latest, admitted)
    return inversions


def origin_after_leave(
    records: Sequence[OriginRecord], hashes: dict[str, dict[str, str]]
) -> list[str]:
    """Requests the origin served for a session after that session ended (left / expired)."""
    problems = []
    for r in records:
        ended = hashes.get(r.sid, {}).get("endedAt")
        if ended is not None and r.at_ms > int(ended):
            problems.append(f"origin served {r.path} for {r.sid} at {r.at_ms} > ended {ended}")
    return problems


def origin_concurrency(records: Sequence[OriginRecord], since_ms: int = 0) -> int:
    """Most sessions the origin was serving at once, a session counting from its first to its
    last request (only sessions whose last request is at or after `since_ms`)."""
    spans: dict[str, list[int]] = {}
    for r in records:
        span = spans.setdefault(r.sid, [r.at_ms, r.at_ms])
        span[0], span[1] = min(span[0], r.at_ms), max(span[1], r.at_ms)
    events = sorted(
        (t, -delta)  # starts (+1) before ends (-1) at the same millisecond
        for first, last in spans.values()
        if last >= since_ms
        for t, delta in ((max(first, since_ms), 1), (last, -1))
    )
    most = now = 0
    for _, negated in events:
        now -= negated
        most = max(most, now)
    return most


async def gather_bounded(coros: Iterable[Awaitable[Any]], timeout: float, what: str) -> None:
    """Run `coros` together; all must finish within `timeout` (else cancel and fail)."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        done, pending = await asyncio.wait(tasks, timeout=timeout)
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    for t in pending:
        t.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    errors = [t.exception() for t in done if not t.cancelled() and t.exception() is not None]
    if errors:
        raise AssertionError(f"{what}: {len(errors)} task(s) failed, first: {errors[0]!r}")
    if pending:
        raise AssertionError(f"{what}: {len(pending)} task(s) still running after {timeout} s")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "origin":
        _serve_origin(int(sys.argv[2]), sys.argv[3])
    else:
        raise SystemExit("usage: python -m tests.cluster_rig origin FD SECRET")
