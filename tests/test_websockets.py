"""WebSockets through the gate and the reverse proxy, against a real `websockets` origin.

The gate runs under uvicorn (in this loop, or as a real `gatekeeper run` process for the flood
and the proof header) in front of a `websockets` server that is also the site's HTTP origin.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from gatekeeper.app import WaitingRoom, create_app
from gatekeeper.clock import wall_clock
from gatekeeper.gate.proof import verify_proof
from gatekeeper.store.base import Control, Mode, RoomPolicy, Store, Ticket
from gatekeeper.store.memory import MemoryStore
from tests.gate.harness import ENV, KEY, PROOF, CountingStore, gate_settings
from tests.processes import gatekeeper_process
from tests.proxy_helpers import MB, listen, memory_kib, serve_app

COOKIE = "gk_session"
API = "/api/waiting-room"
# Incompressible, so that no hop can shrink the flood (uvicorn offers permessage-deflate).
FRAME = os.urandom(64 * 1024)


@dataclass
class Seen:
    """One upgrade the origin accepted, and how it ended."""

    request: Request
    subprotocol: str | None = None
    close: tuple[int | None, str | None] | None = None


class WsOrigin:
    """The site: HTTP pages (`/leave-cmd` sends the leave command) and WebSockets (`/echo`,
    `/close?code=&reason=`, `/flood?mb=`, `/refuse`), recording every upgrade it saw."""

    def __init__(self) -> None:
        self.upgrades: list[Request] = []
        self.sockets: list[Seen] = []
        self.flood_sent = 0
        self.ended = asyncio.Condition()

    async def process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        if request.headers.get("Upgrade", "").lower() != "websocket":
            response = conn.respond(200, "page\n")
            if request.path.startswith("/leave-cmd"):
                response.headers["X-Gatekeeper-Command"] = "leave"
            return response
        self.upgrades.append(request)
        if request.path.startswith("/refuse"):
            response = conn.respond(401, "not you\n")
            response.headers["X-Origin-Said"] = "no"
            return response
        return None

    def select_subprotocol(
        self, conn: ServerConnection, offered: list[Subprotocol]
    ) -> Subprotocol | None:
        return next((p for p in offered if p in ("chat.v2", "chat.v1")), None)

    async def handler(self, ws: ServerConnection) -> None:
        seen = Seen(ws.request, ws.subprotocol)
        self.sockets.append(seen)
        url = urlsplit(ws.request.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        try:
            if url.path == "/close":
                await ws.close(int(query["code"]), query.get("reason", ""))
            elif url.path == "/flood":
                for _ in range(int(float(query["mb"]) * MB) // len(FRAME)):
                    await ws.send(FRAME)
                    self.flood_sent += len(FRAME)
                await ws.close(1000, "flood done")
            else:
                async for message in ws:
                    await ws.send(message)
        except ConnectionClosed:
            pass
        finally:
            await ws.wait_closed()
            async with self.ended:
                seen.close = (ws.close_code, ws.close_reason)
                self.ended.notify_all()

    async def wait_closed(self, index: int, timeout: float = 10) -> tuple[int | None, str | None]:
        """The close the origin saw on its `index`-th socket."""
        async with self.ended:
            await asyncio.wait_for(
                self.ended.wait_for(
                    lambda: len(self.sockets) > index and self.sockets[index].close is not None
                ),
                timeout,
            )
        close = self.sockets[index].close
        assert close is not None
        return close


@asynccontextmanager
async def ws_origin(send_buffer: int = 0) -> AsyncIterator[tuple[WsOrigin, str]]:
    """The origin; with `send_buffer` its sockets' kernel send buffers are that small."""
    origin = WsOrigin()
    sock = listen()
    if send_buffer:
        # Accepted sockets inherit the listener's buffer sizes (and lose their autotuning).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
    async with serve(
        origin.handler,
        sock=sock,
        process_request=origin.process_request,
        select_subprotocol=origin.select_subprotocol,
        compression=None,
    ) as server:
        yield origin, f"http://127.0.0.1:{_port(server)}"


def _port(server: Server) -> int:
    port: int = next(iter(server.sockets)).getsockname()[1]
    return port


@asynccontextmanager
async def gate(
    origin_url: str, store: Store | None = None, **overrides: object
) -> AsyncIterator[tuple[WaitingRoom, str]]:
    """The gate around the proxy, served by uvicorn in this loop with its WebSocket support."""
    settings = gate_settings(
        **{
            "gate.origin": origin_url,
            "gate.cookie.secure": False,
            "gate.cookie.pass-ttl": 1,
            "processing.rate-ms": 50,
            **overrides,
        }
    )
    app = create_app(settings, store=store)
    assert isinstance(app, WaitingRoom)
    async with serve_app(app, websockets=True) as address:
        yield app, address


@asynccontextmanager
async def gate_process(
    origin_url: str, tmp_path: Path, **env: str
) -> AsyncIterator[tuple[str, int]]:
    """A real `gatekeeper run --origin origin_url` (admitted visitors' cookies signed with KEY,
    plain HTTP); its address and pid. Started from a thread: its readiness check waits on the
    origin, which this loop serves."""
    env = {**ENV, "WAITINGROOM_GATE_COOKIE_KEYS": KEY, "WAITINGROOM_GATE_COOKIE_SECURE": "false",
           **env}  # fmt: skip
    process = gatekeeper_process(["--origin", origin_url], env, tmp_path / "gate.log")
    base, proc = await asyncio.to_thread(process.__enter__)
    try:
        yield urlsplit(base).netloc, proc.pid
    finally:
        process.__exit__(None, None, None)


async def admitted_cookie(address: str, path: str = "/") -> str:
    """A visitor's cookie once the gate let them through to a page."""
    async with httpx.AsyncClient(base_url=f"http://{address}", timeout=10) as client:
        for _ in range(20):
            response = await client.get(path)
            if response.text == "page\n":
                return f"{COOKIE}={client.cookies[COOKIE]}"
            await asyncio.sleep(0.1)
    raise AssertionError("never admitted")


async def waiting_cookie(address: str) -> str:
    """A visitor's cookie while they wait in line (their place taken: the cookie came back)."""
    async with httpx.AsyncClient(base_url=f"http://{address}", timeout=10) as client:
        for _ in range(2):
            response = await client.get("/", headers={"accept": "application/json"})
            assert response.json()["status"] == "WAITING"
        return f"{COOKIE}={client.cookies[COOKIE]}"


def _socket(address: str, path: str, cookie: str | None, **options: object) -> connect:
    headers = {"Cookie": cookie} if cookie else {}
    return connect(f"ws://{address}{path}", additional_headers=headers, **options)  # type: ignore[arg-type]


def _session_id(app: WaitingRoom, cookie: str) -> str:
    visitor = app.codec.loads(cookie.split("=", 1)[1])
    assert visitor is not None
    return visitor.session_id


async def _closed_within(ws: ClientConnection, seconds: float) -> tuple[int, str, float]:
    started = time.monotonic()
    with pytest.raises(ConnectionClosed) as caught:
        async with asyncio.timeout(seconds):
            while True:
                await ws.recv()
    frame = caught.value.rcvd
    assert frame is not None
    return frame.code, frame.reason, time.monotonic() - started


async def test_an_admitted_visitor_echoes_text_and_binary_with_a_subprotocol() -> None:
    async with ws_origin() as (origin, url), gate(url) as (_, address):
        cookie = await admitted_cookie(address)
        async with _socket(address, "/echo", cookie, subprotocols=["chat.v9", "chat.v1"]) as ws:
            assert ws.subprotocol == "chat.v1"
            await ws.send("hello")
            assert await ws.recv() == "hello"
            await ws.send(b"\x00\xffbin")
            assert await ws.recv() == b"\x00\xffbin"
            # A message near the bound goes through whole, both ways.
            big = bytes(range(256)) * 3000
            await ws.send(big)
            assert await ws.recv() == big
        assert origin.sockets[0].subprotocol == "chat.v1"
        offered = origin.upgrades[0].headers.get_all("Sec-WebSocket-Protocol")
        assert offered == ["chat.v9, chat.v1"]


async def test_close_codes_and_reasons_pass_both_ways() -> None:
    async with ws_origin() as (origin, url), gate(url) as (_, address):
        cookie = await admitted_cookie(address)
        async with _socket(address, "/close?code=4001&reason=sold+out", cookie) as ws:
            code, reason, _ = await _closed_within(ws, 5)
        assert (code, reason) == (4001, "sold out")
        async with _socket(address, "/echo", cookie) as ws:
            await ws.send("x")
            assert await ws.recv() == "x"
            await ws.close(4002, "tab closed")
        assert await origin.wait_closed(1) == (4002, "tab closed")


async def test_the_upgrade_carries_the_proof_and_the_forwarding_headers_but_not_our_cookie() -> (
    None
):
    async with ws_origin() as (origin, url), gate(url) as (app, address):
        cookie = await admitted_cookie(address)
        headers = {
            "Cookie": f"{cookie}; theirs=1",
            "X-Gatekeeper-Proof": "forged",
            "X-Gatekeeper-Enqueue": "token",
        }
        async with connect(f"ws://{address}/echo?q=1", additional_headers=headers) as ws:
            await ws.send("x")
            await ws.recv()
            # The pass the upgrade renewed comes back with its answer.
            assert ws.response is not None
            assert COOKIE in ws.response.headers.get("Set-Cookie", "")
        seen: Headers = origin.upgrades[0].headers
        assert seen.get_all("Cookie") == ["theirs=1"]
        assert "X-Gatekeeper-Enqueue" not in seen
        proofs = seen.get_all("X-Gatekeeper-Proof")
        assert len(proofs) == 1
        session = _session_id(app, cookie)
        assert verify_proof(PROOF.encode(), proofs[0], now_s=int(time.time())) == session
        assert seen["X-Forwarded-For"] == "127.0.0.1"
        assert seen["X-Forwarded-Proto"] == "http"
        assert seen["X-Forwarded-Host"] == address
        assert seen["Host"] == urlsplit(url).netloc  # proxy.host-header: origin
        assert origin.upgrades[0].path == "/echo?q=1"


async def test_the_client_host_is_kept_with_host_header_preserve() -> None:
    async with (
        ws_origin() as (origin, url),
        gate(url, **{"proxy.host-header": "preserve"}) as (
            _,
            address,
        ),
    ):
        cookie = await admitted_cookie(address)
        async with _socket(address, "/echo", cookie) as ws:
            await ws.send("x")
            await ws.recv()
        assert origin.upgrades[0].headers.get_all("Host") == [address]


async def test_waiters_and_newcomers_are_refused_before_the_upgrade() -> None:
    async with ws_origin() as (origin, url), gate(url) as (_, address):
        await admitted_cookie(address)  # takes the one place
        waiter = await waiting_cookie(address)
        for cookie in (waiter, None, f"{COOKIE}=forged"):
            with pytest.raises(InvalidStatus) as refused:
                async with _socket(address, "/echo", cookie):
                    pass
            response = refused.value.response
            assert response.status_code == 403
            assert b"not_admitted" in response.body
        assert origin.upgrades == []


async def test_the_origins_refusal_and_an_unreachable_origin_are_answered_before_the_upgrade() -> (
    None
):
    async with ws_origin() as (_, url), gate(url) as (_, address):
        cookie = await admitted_cookie(address)
        with pytest.raises(InvalidStatus) as refused:
            async with _socket(address, "/refuse", cookie):
                pass
        assert refused.value.response.status_code == 401
        assert refused.value.response.headers["X-Origin-Said"] == "no"
        assert refused.value.response.body == b"not you\n"
    # The origin is gone now: the gate answers 502 rather than accepting.
    async with ws_origin() as (_, url):
        pass
    async with gate(url) as (_, address):
        async with httpx.AsyncClient(base_url=f"http://{address}", timeout=10) as client:
            assert (await client.get("/")).status_code == 502  # admitted, but no site
            cookie = f"{COOKIE}={client.cookies[COOKIE]}"
        with pytest.raises(InvalidStatus) as refused:
            async with _socket(address, "/echo", cookie):
                pass
        assert refused.value.response.status_code == 502


@pytest.mark.parametrize("how", ["api", "revoke", "command"])
async def test_a_session_that_ends_closes_its_sockets_within_a_pass_ttl(how: str) -> None:
    async with ws_origin() as (origin, url), gate(url) as (app, address):
        cookie = await admitted_cookie(address)
        session = _session_id(app, cookie)
        async with (
            _socket(address, "/echo", cookie) as ws,
            _socket(address, "/echo", cookie) as ws2,
        ):
            await ws.send("before")
            assert await ws.recv() == "before"
            if how == "api":
                async with httpx.AsyncClient(base_url=f"http://{address}") as client:
                    left = await client.post(f"{API}/sessions/{session}:leave")
                    assert left.status_code == 204
            elif how == "revoke":
                runtime = app.runtime
                policy = runtime.rooms.policy("default")
                assert await runtime.store.leave(session, policy, revoke=True)
            else:
                async with httpx.AsyncClient(base_url=f"http://{address}") as client:
                    client.cookies.set(COOKIE, cookie.split("=", 1)[1])
                    await client.get("/leave-cmd")
            code, reason, took = await _closed_within(ws, 3)
            code2, _, _ = await _closed_within(ws2, 3)
        assert code == code2 == 1008
        assert reason.startswith("session ended")
        assert took < 1.6  # pass-ttl 1 s, and a store poll
        if how == "command":
            assert took < 0.5  # the leave went through this replica: at once
        # The origin hears why too.
        assert (await origin.wait_closed(0))[0] == 1008
        # And the visitor cannot open another.
        with pytest.raises(InvalidStatus):
            async with _socket(address, "/echo", cookie):
                pass


async def test_max_session_closes_the_sockets_at_the_sessions_end() -> None:
    async with ws_origin() as (_, url), gate(url, **{"lifecycle.max-session": 2}) as (_, address):
        started = time.monotonic()
        cookie = await admitted_cookie(address)
        async with _socket(address, "/echo", cookie) as ws:
            code, reason, _ = await _closed_within(ws, 4)
        assert (code, reason) == (1008, "session ended: session_limit")
        # Checked at the session's end, not at the next pass TTL after it.
        assert 1.9 < time.monotonic() - started < 2.6


async def test_queue_all_closes_the_sockets_of_admitted_visitors() -> None:
    async with ws_origin() as (_, url), gate(url) as (app, address):
        cookie = await admitted_cookie(address)
        async with _socket(address, "/echo", cookie) as ws:
            await app.runtime.store.set_controls("default", {Control.MODE.value: Mode.QUEUE_ALL})
            code, reason, took = await _closed_within(ws, 3)
        assert (code, reason) == (1013, "room held")
        assert took < 1.6


class PollCounter(MemoryStore):
    """The embedded store, counting polls."""

    def __init__(self) -> None:
        super().__init__(wall_clock)
        self.polls = 0

    async def poll(self, sid: str, policy: RoomPolicy) -> Ticket | None:
        self.polls += 1
        return await super().poll(sid, policy)


async def test_the_sockets_of_one_session_share_one_check_per_pass_ttl() -> None:
    store = PollCounter()
    async with ws_origin() as (_, url), gate(url, store) as (app, address):
        cookie = await admitted_cookie(address)
        async with contextlib.AsyncExitStack() as stack:
            sockets = [
                await stack.enter_async_context(_socket(address, "/echo", cookie)) for _ in range(5)
            ]
            assert app._forwarding.sockets.open_sessions == 1
            before = store.polls
            await asyncio.sleep(3.2)
            for ws in sockets:
                await ws.send("still here")
                assert await ws.recv() == "still here"
            assert 2 <= store.polls - before <= 4  # once a second, not five times
        await asyncio.sleep(0.1)
        assert app._forwarding.sockets.open_sessions == 0


async def test_a_store_down_closes_sockets_after_two_failed_checks() -> None:
    store = CountingStore(wall_clock)  # type: ignore[arg-type]
    async with ws_origin() as (_, url), gate(url, store) as (_, address):
        cookie = await admitted_cookie(address)
        async with _socket(address, "/echo", cookie) as ws:
            store.down = True
            code, reason, took = await _closed_within(ws, 4)
        assert (code, reason) == (1013, "store unavailable")
        assert 1.5 < took < 2.7


async def test_a_flood_to_a_slow_reader_is_held_back_by_the_origin_not_buffered(
    tmp_path: Path,
) -> None:
    """50 MB in 64 KB frames to a client that stops reading: the origin's sends block (the
    gate reads the origin only as fast as the client reads), and the gate's RSS stays flat."""
    async with ws_origin(send_buffer=64 * 1024) as (origin, url):
        pass_ttl = {"WAITINGROOM_GATE_COOKIE_PASS_TTL": "1"}
        async with gate_process(url, tmp_path, **pass_ttl) as (address, pid):
            cookie = await admitted_cookie(address)
            rss_before = memory_kib(pid, "VmRSS")
            # The client's kernel buffer is small too: what piles up can only pile up in the gate.
            client = socket.create_connection(address.split(":"))  # type: ignore[arg-type]
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            async with _socket(address, "/flood?mb=50", cookie, max_queue=4, sock=client) as ws:
                await asyncio.sleep(3)  # read nothing
                stalled_at = origin.flood_sent
                await asyncio.sleep(1)
                rss_stalled = memory_kib(pid, "VmRSS")
                assert origin.flood_sent == stalled_at  # the origin is blocked
                # What is in flight: kernel buffers of the gate's two sockets, a few frames.
                assert stalled_at < 20 * MB
                received = 0
                with pytest.raises(ConnectionClosed):
                    while True:
                        received += len(await ws.recv())
                        if received % (4 * MB) == 0:
                            await asyncio.sleep(0.01)  # still a slowish reader
            assert received == origin.flood_sent == 50 * MB
            rss_after = memory_kib(pid, "VmRSS")
        # Every upgrade reached the origin with a proof of its session.
        assert all("X-Gatekeeper-Proof" in r.headers for r in origin.upgrades)
        assert rss_stalled - rss_before < 16 * 1024, (rss_before, rss_stalled)
        assert rss_after - rss_before < 24 * 1024, (rss_before, rss_after)


async def test_a_client_message_over_the_bound_closes_with_1009(tmp_path: Path) -> None:
    """`proxy.websocket-max-message` bounds what a client sends too (the server's
    `ws_max_size`): one byte over it closes the socket with 1009; at the bound it passes."""
    async with ws_origin() as (origin, url):
        bound = {"WAITINGROOM_PROXY_WEBSOCKET_MAX_MESSAGE": "4096"}
        async with gate_process(url, tmp_path, **bound) as (address, _):
            cookie = await admitted_cookie(address)
            async with _socket(address, "/echo", cookie) as ws:
                await ws.send(b"x" * 4096)
                assert await ws.recv() == b"x" * 4096
                await ws.send(b"x" * 4097)
                with pytest.raises(ConnectionClosed) as closed:
                    await ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
