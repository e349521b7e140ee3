"""Join floods against a real `gatekeeper run --origin ...`: the line stays honest.

Real processes on loopback: the gate (embedded store or a throwaway redis-server), a counting
stand-in origin in a thread, and clients on raw keep-alive sockets (fast enough for 20 000
requests on two cores) bound to chosen loopback addresses (127.0.0.x), so that the gate sees
several clients. The room has one place, taken and claimed by an honest visitor first, so every
newcomer meets a busy room:

- a client that keeps no cookies adds nobody to the line however often it asks (lazy joins),
  and leaves Redis's memory as it was;
- a script that keeps its cookie creates at most its join budget of sessions (burst + refill),
  the rest get 429 with Retry-After; an honest visitor from another address who joins after it
  is behind no more than that;
- fifty addresses each get their own budget, no more;
- Redis at maxmemory turns newcomers away with 503 `queue_full` (never through to the origin,
  whatever the failure policy) while admitted visitors go on renewing their passes.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from gatekeeper.asgi import Receive, Scope, Send
from tests.processes import gatekeeper_process
from tests.proxy_helpers import ThreadedServer
from tests.redis_server import RedisServer

pytestmark = pytest.mark.slow

ADMIN_TOKEN = "flood-admin-token-0123456789abcd"  # 32 characters
COOKIE_KEY = "flood-cookie-key-0123456789abcdef0123"
FLOODER = "127.0.0.1"
HONEST = "127.0.0.2"
FIRST = "127.0.0.3"  # the honest visitor who holds the room's one place
PROTECTED = "/seats"
JSON_ACCEPT = b"accept: application/json\r\n"
IN_FLIGHT = 32
BURST = 60  # the shipped defaults of the per-client join limit
PER_MINUTE = 60
FLOOD_SECONDS_MAX = 60.0  # a cookie-less flood writes nothing: the gate answers it quickly
MEMORY_GROWTH_MAX = 1_000_000  # bytes of Redis used_memory a cookie-less flood may add


# --------------------------------------------------------------------------- the origin


class CountingOrigin:
    """A stand-in site: counts the requests that reached it, per path."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.hits[scope["path"]] += 1
        headers = [(b"content-type", b"text/plain"), (b"content-length", b"4")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"site"})


@pytest.fixture
def origin() -> Iterator[tuple[CountingOrigin, str]]:
    app = CountingOrigin()
    with ThreadedServer(app) as server:
        yield app, server.url


@contextmanager
def gate(origin_url: str, tmp_path: Path, **env: str) -> Iterator[str]:
    """`gatekeeper run --origin` with capacity 1 (unless `env` says otherwise); its base URL."""
    settings = {
        "WAITINGROOM_REDIS_URL": "memory://",
        "WAITINGROOM_PROCESSING_CAPACITY": "1",
        "WAITINGROOM_GATE_COOKIE_KEYS": COOKIE_KEY,
        "WAITINGROOM_GATE_COOKIE_SECURE": "false",
        "WAITINGROOM_ADMIN_TOKEN": ADMIN_TOKEN,
    }
    args = ["--origin", origin_url, "--log-level", "warning"]
    # Readiness on the gate's own path: `/readyz` is a protected path of the site here, and
    # asking it would join (and take the room's place).
    ready = "/_gatekeeper/readyz"
    with gatekeeper_process(args, settings | env, tmp_path / "gatekeeper.log", ready) as (base, _):
        yield base


# --------------------------------------------------------------------------- raw clients


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def cookie(self) -> str | None:
        """The `gk_session=...` pair of the reply's Set-Cookie, if any."""
        value = self.headers.get("set-cookie", "")
        return value.split(";", 1)[0] if value.startswith("gk_session=") else None


class Connection:
    """One keep-alive HTTP/1.1 connection from a chosen local address, requests in turn."""

    def __init__(self, base: str, local: str) -> None:
        host, _, port = base.removeprefix("http://").partition(":")
        self.host, self.port, self.local = host, int(port), local
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.opened = 0

    async def get(self, path: str, extra: bytes = b"") -> Reply:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(
                self.host, self.port, local_addr=(self.local, 0)
            )
            self.opened += 1
        assert self.reader is not None
        head = f"GET {path} HTTP/1.1\r\nhost: shop.test\r\nuser-agent: flood/1\r\n".encode()
        self.writer.write(head + extra + b"\r\n")
        lines = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            body = await self.reader.readexactly(int(headers["content-length"]))
        else:
            assert headers.get("transfer-encoding") == "chunked", headers
            body = await self._chunked()
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return Reply(status, headers, body)

    async def _chunked(self) -> bytes:
        assert self.reader is not None
        parts: list[bytes] = []
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await self.reader.readuntil(b"\r\n")
                return b"".join(parts)
            parts.append(await self.reader.readexactly(size))
            await self.reader.readexactly(2)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except ConnectionError:
                pass
            self.reader = self.writer = None


@asynccontextmanager
async def connections(base: str, local: str, n: int) -> AsyncIterator[list[Connection]]:
    conns = [Connection(base, local) for _ in range(n)]
    try:
        yield conns
    finally:
        await asyncio.gather(*(c.close() for c in conns))


def browser(base: str, local: str) -> httpx.AsyncClient:
    """An honest visitor: its own cookie jar, connecting from `local`."""
    transport = httpx.AsyncHTTPTransport(local_address=local)
    return httpx.AsyncClient(base_url=base, transport=transport, trust_env=False, timeout=10)


async def enter(client: httpx.AsyncClient, path: str = PROTECTED, **kwargs: Any) -> httpx.Response:
    """A browser's first two requests (lazy join, then back with the cookie); the second."""
    await client.get(path, **kwargs)
    return await client.get(path, **kwargs)


# --------------------------------------------------------------------------- server truth


async def room(control: httpx.AsyncClient) -> dict[str, Any]:
    """The operator API's live figures of the default room (`waiting`, `active`, ...)."""
    r = await control.get(
        "/_gatekeeper/admin/rooms/default", headers={"authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


async def joins_total(control: httpx.AsyncClient) -> int:
    """Sessions created so far (`gatekeeper_joins_total`, every label)."""
    text = (await control.get("/_gatekeeper/metrics")).text
    return int(
        sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("gatekeeper_joins_total{")
        )
    )


async def fill_the_room(base: str) -> None:
    """The room's one place, taken and claimed by an honest visitor from FIRST."""
    async with browser(base, FIRST) as first:
        assert (await first.get(PROTECTED)).text == "site"
        assert (await first.get(PROTECTED)).text == "site"  # the claim


# --------------------------------------------------------------------------- the floods


@dataclass
class CookielessFlood:
    statuses: Counter[int] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    connections: int = 0

    @property
    def rate(self) -> float:
        return sum(self.statuses.values()) / self.seconds


async def cookieless_flood(base: str, requests: int) -> CookielessFlood:
    """`requests` GETs of the protected path from FLOODER that never send a cookie back,
    IN_FLIGHT at a time over keep-alive connections; half ask for JSON, half for the page."""
    result = CookielessFlood()
    numbers = iter(range(requests))

    async def worker(conn: Connection) -> None:
        for n in numbers:
            as_json = n % 2 == 0
            r = await conn.get(PROTECTED, JSON_ACCEPT if as_json else b"")
            result.statuses[r.status] += 1
            if r.status == 200:
                page_ok = (
                    r.json()["status"] == "WAITING"
                    if as_json
                    else r.body.startswith(b"<!doctype html>")
                )
                if not page_ok or r.cookie is None:
                    result.problems.append(f"{r.status} {r.headers} {r.body[:200]!r}")
            elif r.status == 429:
                if "retry-after" not in r.headers:
                    result.problems.append(f"429 without Retry-After: {r.headers}")
            else:
                result.problems.append(f"{r.status} {r.headers} {r.body[:200]!r}")

    began = time.monotonic()
    async with connections(base, FLOODER, IN_FLIGHT) as conns:
        await asyncio.gather(*(worker(c) for c in conns))
        result.connections = sum(c.opened for c in conns)
    result.seconds = time.monotonic() - began
    return result


@dataclass
class ScriptFlood:
    created: set[str] = field(default_factory=set)
    limited: int = 0
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0


async def cookie_keeping_flood(base: str, local: str, attempts: int, in_flight: int) -> ScriptFlood:
    """`attempts` joins from `local` by a script that keeps its cookie: each a fresh jar doing
    GET, then GET with the cookie it was given. A 200 WAITING on the second is a session."""
    result = ScriptFlood()
    numbers = iter(range(attempts))

    async def worker(conn: Connection) -> None:
        for _ in numbers:
            first = await conn.get(PROTECTED, JSON_ACCEPT)
            if first.status != 200 or first.cookie is None:
                result.problems.append(f"first: {first.status} {first.headers} {first.body!r}")
                continue
            cookie = f"cookie: {first.cookie}\r\n".encode()
            second = await conn.get(PROTECTED, JSON_ACCEPT + cookie)
            if second.status == 200 and second.json()["status"] == "WAITING":
                result.created.add(second.json()["sessionId"])
            elif (
                second.status == 429
                and int(second.headers.get("retry-after", "0")) > 0
                and second.json()["error"]["code"] == "rate_limited"
            ):
                result.limited += 1
            else:
                result.problems.append(f"second: {second.status} {second.headers} {second.body!r}")

    began = time.monotonic()
    async with connections(base, local, in_flight) as conns:
        await asyncio.gather(*(worker(c) for c in conns))
    result.seconds = time.monotonic() - began
    return result


def redis_figures(server: RedisServer | None) -> tuple[int, set[str]]:
    """Redis's `used_memory` and key names (nothing without a Redis)."""
    if server is None:
        return 0, set()
    client = redis.Redis(port=server.port, decode_responses=True)
    try:
        return int(client.info("memory")["used_memory"]), {str(k) for k in client.keys()}
    finally:
        client.close()


async def flood_one_address(
    base: str, requests: int, label: str, server: RedisServer | None
) -> None:
    """The two floods from one address (cookie-less, then cookie-keeping) and the honest
    visitors after each; `server` is the Redis behind the gate, if any."""
    async with httpx.AsyncClient(base_url=base, trust_env=False, timeout=10) as control:
        await fill_the_room(base)
        assert (await room(control))["active"] == 1
        joins_before = await joins_total(control)
        memory_before, keys_before = redis_figures(server)

        # 1. Cookie-less: nobody is added to the line, nothing is written.
        bots = await cookieless_flood(base, requests)
        memory_after, keys_after = redis_figures(server)
        figures = await room(control)
        made = await joins_total(control) - joins_before
        growth = memory_after - memory_before
        print(
            f"\n[{label}] {requests} cookie-less requests from {FLOODER} in {bots.seconds:.1f} s "
            f"({bots.rate:.0f} req/s, {bots.connections} connections): {dict(bots.statuses)}; "
            f"sessions created {made}, waiting {figures['waiting']}, active {figures['active']}"
            + (
                f"; Redis used_memory {memory_before} -> {memory_after} B ({growth:+d}), "
                f"keys {len(keys_before)} -> {len(keys_after)}"
                if server
                else ""
            )
        )
        assert not bots.problems, f"{len(bots.problems)} bad answers, e.g. {bots.problems[:3]}"
        assert set(bots.statuses) <= {200, 429}, bots.statuses
        assert sum(bots.statuses.values()) == requests
        assert bots.seconds < FLOOD_SECONDS_MAX, f"the flood took {bots.seconds:.1f} s"
        assert figures["waiting"] == 0 and made == 0, (
            f"a client that keeps no cookies put {figures['waiting']} sessions in line "
            f"({made} joins counted) with {requests} requests"
        )
        assert figures["active"] == 1
        if server:
            assert growth < MEMORY_GROWTH_MAX, f"Redis grew {growth} B under a cookie-less flood"
            assert keys_after <= keys_before, f"new Redis keys: {keys_after - keys_before}"

        # An honest visitor from the flooder's own address is first in line: the lazy page
        # views spent none of the address's join budget.
        async with browser(base, FLOODER) as honest:
            honest_began = time.monotonic()
            body = (await enter(honest, headers={"accept": "application/json"})).json()
        print(f"[{label}] honest visitor after the cookie-less flood: {body}")
        assert body["status"] == "WAITING" and body["position"] == 0, body

        # 2. A script that keeps its cookie: its join budget of sessions, then 429.
        attempts = requests // 10
        script = await cookie_keeping_flood(base, FLOODER, attempts, IN_FLIGHT)
        minutes = (time.monotonic() - honest_began) / 60
        bound = BURST + PER_MINUTE * minutes + 1
        waiting_before = (await room(control))["waiting"]
        async with browser(base, HONEST) as other:
            late = (await enter(other, headers={"accept": "application/json"})).json()
        print(
            f"[{label}] {attempts} cookie-keeping joins from {FLOODER} in {script.seconds:.1f} s "
            f"({2 * attempts / script.seconds:.0f} req/s): {len(script.created)} sessions "
            f"created (+1 honest from the same address; bound {bound:.1f}), {script.limited} got "
            f"429; waiting {waiting_before}; honest visitor from {HONEST} then at position "
            f"{late['position']}"
        )
        assert not script.problems, f"{len(script.problems)} bad answers: {script.problems[:3]}"
        assert len(script.created) + script.limited == attempts
        assert len(script.created) + 1 <= bound, (
            f"{len(script.created)} sessions (+1 honest) from one address in {minutes:.2f} min: "
            f"over burst {BURST} + {PER_MINUTE}/min"
        )
        assert len(script.created) >= BURST - 1, "the address's budget was spent before"
        assert waiting_before == len(script.created) + 1, "sessions the script did not see"
        assert late["status"] == "WAITING"
        assert late["position"] <= waiting_before <= bound, (
            f"the honest visitor from {HONEST} is at position {late['position']}, behind "
            f"{waiting_before} sessions (bound {bound:.1f})"
        )


async def test_twenty_thousand_cookieless_requests_add_nobody_to_the_line(
    origin: tuple[CountingOrigin, str], tmp_path: Path
) -> None:
    with gate(origin[1], tmp_path) as base:
        await flood_one_address(base, 20_000, "memory", None)
    assert origin[0].hits[PROTECTED] == 2, "only the first visitor reached the origin"


@pytest.mark.redis
async def test_the_flood_on_redis_adds_nobody_and_no_memory(
    origin: tuple[CountingOrigin, str], redis_server: RedisServer, tmp_path: Path
) -> None:
    with gate(origin[1], tmp_path, WAITINGROOM_REDIS_URL=redis_server.url) as base:
        await flood_one_address(base, 20_000, "redis", redis_server)
    assert origin[0].hits[PROTECTED] == 2, "only the first visitor reached the origin"


# --------------------------------------------------------------------------- many addresses

ADDRESSES = [f"127.0.0.{n}" for n in range(10, 60)]
SMALL_BURST = 5
SMALL_PER_MINUTE = 5
JOINS_PER_ADDRESS = 100
SLACK = 1


async def test_fifty_addresses_each_get_their_own_small_budget(
    origin: tuple[CountingOrigin, str], tmp_path: Path
) -> None:
    env = {
        "WAITINGROOM_PROCESSING_CLIENT_JOIN_BURST": str(SMALL_BURST),
        "WAITINGROOM_PROCESSING_CLIENT_JOINS_PER_MINUTE": str(SMALL_PER_MINUTE),
    }
    with gate(origin[1], tmp_path, **env) as base:
        async with httpx.AsyncClient(base_url=base, trust_env=False, timeout=10) as control:
            await fill_the_room(base)
            began = time.monotonic()
            floods = await asyncio.gather(
                *(cookie_keeping_flood(base, a, JOINS_PER_ADDRESS, 1) for a in ADDRESSES)
            )
            seconds = time.monotonic() - began
            figures = await room(control)
    per_address = {a: len(f.created) for a, f in zip(ADDRESSES, floods, strict=True)}
    total = sum(per_address.values())
    bound = SMALL_BURST + SMALL_PER_MINUTE * seconds / 60 + SLACK
    requests = 2 * JOINS_PER_ADDRESS * len(ADDRESSES)
    print(
        f"\n[50 addresses] {len(ADDRESSES)} x {JOINS_PER_ADDRESS} cookie-keeping joins "
        f"({requests} requests) in {seconds:.1f} s ({requests / seconds:.0f} req/s): sessions per "
        f"address {sorted(Counter(per_address.values()).items())} (count: addresses), total "
        f"{total}, waiting {figures['waiting']}; 429s {sum(f.limited for f in floods)}; "
        f"per-address bound {bound:.2f}"
    )
    problems = [p for f in floods for p in f.problems]
    assert not problems, f"{len(problems)} bad answers, e.g. {problems[:3]}"
    over = {a: n for a, n in per_address.items() if n > bound}
    assert not over, f"addresses over burst {SMALL_BURST} + refill: {over}"
    starved = {a: n for a, n in per_address.items() if n < SMALL_BURST}
    assert not starved, f"addresses that did not get their burst {SMALL_BURST}: {starved}"
    assert total <= len(ADDRESSES) * (SMALL_BURST + SLACK)
    assert figures["waiting"] == total and figures["active"] == 1
    assert all(f.limited == JOINS_PER_ADDRESS - len(f.created) for f in floods)


# --------------------------------------------------------------------------- Redis at maxmemory

JSON_HEADERS = {"accept": "application/json"}
RENEWALS = 3


@contextmanager
def at_maxmemory(server: RedisServer) -> Iterator[None]:
    """Redis at `maxmemory` (1 byte, policy noeviction) inside the block, unlimited after."""
    client = redis.Redis(port=server.port, decode_responses=True)
    try:
        assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
        client.config_set("maxmemory", 1)
        try:
            yield
        finally:
            client.config_set("maxmemory", 0)
    finally:
        client.close()


async def newcomer_turned_away(base: str, app: CountingOrigin, label: str) -> None:
    """A newcomer's page, JSON and API join all get 503 `queue_full`, none reaches the origin."""
    async with browser(base, HONEST) as newcomer:
        page = await newcomer.get("/newcomer")
        as_json = await newcomer.get("/newcomer", headers=JSON_HEADERS)
        api = await newcomer.post("/api/waiting-room/sessions", json={})
    print(
        f"\n[{label}] newcomer: page {page.status_code} Retry-After "
        f"{page.headers.get('retry-after')}, JSON {as_json.status_code} {as_json.text}, API join "
        f"{api.status_code} {api.text}; origin hits for the newcomer {app.hits['/newcomer']}"
    )
    assert page.status_code == 503, (page.status_code, page.headers, page.text[:300])
    assert page.headers["retry-after"] == "30", page.headers
    assert "The line is full" in page.text and "set-cookie" not in page.headers
    assert as_json.status_code == 503 and as_json.headers["retry-after"] == "30"
    assert as_json.json()["error"]["code"] == "queue_full", as_json.text
    assert api.status_code == 503 and api.json()["error"]["code"] == "queue_full", api.text
    assert app.hits["/newcomer"] == 0, "a newcomer was let through to the origin at maxmemory"


@pytest.mark.redis
@pytest.mark.parametrize("policy", ["closed", "open"])
async def test_redis_at_maxmemory_turns_newcomers_away_and_keeps_admitted_visitors(
    origin: tuple[CountingOrigin, str], redis_server: RedisServer, tmp_path: Path, policy: str
) -> None:
    app, origin_url = origin
    label = f"maxmemory, failure policy {policy}"
    env = {
        "WAITINGROOM_REDIS_URL": redis_server.url,
        "WAITINGROOM_PROCESSING_CAPACITY": "2",
        "WAITINGROOM_GATE_COOKIE_PASS_TTL": "1",
        "WAITINGROOM_GATE_FAILURE_POLICY": policy,
    }
    with gate(origin_url, tmp_path, **env) as base:
        async with (
            httpx.AsyncClient(base_url=base, trust_env=False, timeout=10) as control,
            browser(base, FIRST) as a,
            browser(base, "127.0.0.4") as b,
            browser(base, "127.0.0.5") as waiter,
        ):
            # A and B take the two places (claimed); one visitor waits.
            for who, path in ((a, "/a"), (b, "/b")):
                assert (await enter(who, path)).text == "site"
            body = (await enter(waiter, "/w", headers=JSON_HEADERS)).json()
            assert body["status"] == "WAITING" and body["position"] == 0, body
            figures = await room(control)
            assert (figures["active"], figures["waiting"]) == (2, 1), figures

            with at_maxmemory(redis_server):
                began = time.monotonic()
                await newcomer_turned_away(base, app, label)
                # A goes on across several pass renewals (each one a store poll); the waiter's
                # polls are answered too.
                for n in range(RENEWALS):
                    await asyncio.sleep(1.2)  # past the 1 s pass: the gate must ask the store
                    r = await a.get(f"/a/{n}")
                    assert r.status_code == 200 and r.text == "site", (n, r.status_code, r.text)
                    assert "gk_session=" in r.headers.get("set-cookie", ""), "pass not renewed"
                    polled = await waiter.get("/w", headers=JSON_HEADERS)
                    assert polled.status_code == 200, polled.text
                    assert polled.json()["status"] == "WAITING", polled.text
                for path in ("/_gatekeeper/readyz", "/_gatekeeper/healthz"):
                    assert (await control.get(path)).status_code == 200, path
                figures = await room(control)
                print(
                    f"[{label}] A reached the origin across {RENEWALS} pass renewals in "
                    f"{time.monotonic() - began:.1f} s; room {figures}"
                )
                assert (figures["active"], figures["waiting"]) == (2, 1), figures

            # Memory back: newcomers join again (behind the waiter).
            async with browser(base, HONEST) as newcomer:
                body = (await enter(newcomer, "/newcomer", headers=JSON_HEADERS)).json()
            print(f"[{label}] after maxmemory 0, a newcomer: {body}")
            assert body["status"] == "WAITING" and body["position"] == 1, body
            assert (await room(control))["waiting"] == 2
    assert app.hits["/newcomer"] == 0
    assert app.hits["/a"] == app.hits["/b"] == 2
    assert sum(app.hits[f"/a/{n}"] for n in range(RENEWALS)) == RENEWALS
