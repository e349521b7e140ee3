"""gatekeeper.server's protocol: one write for a head and its body, streaming kept, the
disconnect hook the proxy uses instead of a watcher task."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn

from gatekeeper.asgi import Receive, Scope, Send
from gatekeeper.proxy.forwarder import DISCONNECT
from gatekeeper.server import HeadLimits, limited_protocol
from tests.proxy_helpers import listen, port_of


@asynccontextmanager
async def _serve(app: Any) -> AsyncIterator[int]:
    sock = listen()
    config = uvicorn.Config(
        app,
        http=limited_protocol(HeadLimits()),
        lifespan="off",
        log_config=None,
        log_level="critical",
        access_log=False,
        ws="none",
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield port_of(sock)
    finally:
        server.should_exit = True
        await task
        sock.close()


async def _open(port: int, path: bytes = b"/") -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET " + path + b" HTTP/1.1\r\nHost: t\r\n\r\n")
    await writer.drain()
    return reader, writer


async def test_a_head_and_its_body_leave_in_one_write() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        assert isinstance(scope["extensions"][DISCONNECT], dict)  # the server offers the hook
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"4")]})  # fmt: skip
        await send({"type": "http.response.body", "body": b"seat"})

    async with _serve(app) as port:
        reader, writer = await _open(port)
        data = await asyncio.wait_for(reader.readuntil(b"seat"), 5)
        writer.close()
    assert data.startswith(b"HTTP/1.1 200 OK\r\n") and data.endswith(b"\r\n\r\nseat")


async def test_a_streamed_head_is_not_held_back_for_a_late_body() -> None:
    release = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await release.wait()
        await send({"type": "http.response.body", "body": b"late"})

    async with _serve(app) as port:
        reader, writer = await _open(port)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert b"transfer-encoding: chunked" in head
        release.set()
        assert (
            await asyncio.wait_for(reader.readuntil(b"0\r\n\r\n"), 5) == b"4\r\nlate\r\n0\r\n\r\n"
        )
        writer.close()


async def test_a_bad_header_value_never_reaches_the_client() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"x-a", b"ok"), (b"x-b", b"bad\r\nx-c: smuggled")]})  # fmt: skip

    async with _serve(app) as port:
        reader, writer = await _open(port)
        reply = await asyncio.wait_for(reader.read(), 5)
        writer.close()
    # As in uvicorn: the app's error after the response started closes the connection.
    assert b"smuggled" not in reply


async def test_the_disconnect_hook_is_called_once_when_the_client_leaves() -> None:
    called = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        scope["extensions"][DISCONNECT]["callback"] = called.set
        await asyncio.sleep(10)

    async with _serve(app) as port:
        _, writer = await _open(port)
        await asyncio.sleep(0.1)
        writer.close()
        await asyncio.wait_for(called.wait(), 5)
