"""ReverseProxy's WebSockets alone (no gate): edge closes, the message bound, refusals."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from gatekeeper.config.settings import ProxySettings
from gatekeeper.proxy.forwarder import ReverseProxy
from tests.proxy_helpers import serve_app

MAX_MESSAGE = ProxySettings().websocket_max_message


class Origin:
    """`/drop` drops the connection, `/nocode` closes without a code, `/big` sends one message
    over the bound, anything else echoes; the close each socket saw is recorded."""

    def __init__(self) -> None:
        self.closes: asyncio.Queue[int | None] = asyncio.Queue()

    async def handler(self, ws: ServerConnection) -> None:
        path = ws.request.path
        try:
            if path == "/drop":
                ws.transport.abort()
            elif path == "/nocode":
                async with ws.send_context():
                    ws.protocol.send_close()  # a close frame without a code
                await ws.wait_closed()
            elif path == "/big":
                await ws.send(b"x" * (MAX_MESSAGE + 1))
                await ws.wait_closed()
            else:
                async for message in ws:
                    await ws.send(message)
        except ConnectionClosed:
            pass
        finally:
            await ws.wait_closed()
            await self.closes.put(ws.close_code)


@asynccontextmanager
async def proxied() -> AsyncIterator[tuple[Origin, str]]:
    origin = Origin()
    async with serve(origin.handler, "127.0.0.1", 0, compression=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        proxy = ReverseProxy(f"http://127.0.0.1:{port}")
        async with serve_app(proxy, websockets=True) as address:
            yield origin, f"ws://{address}"


async def _close_code(url: str) -> int | None:
    async with connect(url, compression=None, max_size=None) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
    return None if closed.value.rcvd is None else closed.value.rcvd.code


async def test_an_origin_that_drops_the_connection_drops_the_clients() -> None:
    async with proxied() as (_, url):
        assert await _close_code(url + "/drop") is None  # 1006: no close frame


async def test_a_client_that_drops_the_connection_ends_the_origins() -> None:
    async with proxied() as (origin, url):
        async with connect(url + "/echo") as ws:
            await ws.send("x")
            await ws.recv()
            ws.transport.abort()
        # uvicorn reports a lost connection as 1005 (no status): the origin hears that, or
        # 1006 from servers that tell the two apart.
        assert await asyncio.wait_for(origin.closes.get(), 5) in (1005, 1006)


async def test_a_close_without_a_code_reaches_the_client_as_a_normal_closure() -> None:
    # ASGI cannot send a close without a code.
    async with proxied() as (_, url):
        assert await _close_code(url + "/nocode") == 1000


async def test_a_client_close_without_a_code_reaches_the_origin_without_one() -> None:
    async with proxied() as (origin, url):
        async with connect(url + "/echo") as ws:
            await ws.send("x")
            await ws.recv()
            async with ws.send_context():
                ws.protocol.send_close()
            await ws.wait_closed()
        assert await asyncio.wait_for(origin.closes.get(), 5) == 1005


async def test_an_origin_message_over_the_bound_closes_with_1009() -> None:
    async with proxied() as (origin, url):
        assert await _close_code(url + "/big") == 1009
        assert await asyncio.wait_for(origin.closes.get(), 5) == 1009


async def test_without_the_http_response_extension_a_failed_origin_is_a_close() -> None:
    proxy = ReverseProxy("http://127.0.0.1:9")  # nothing listens on the discard port
    sent: list[dict[str, Any]] = []
    inbox = [{"type": "websocket.connect"}]

    async def receive() -> dict[str, Any]:
        return inbox.pop(0) if inbox else await asyncio.Event().wait()  # type: ignore[func-returns-value]

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "websocket", "path": "/", "headers": [], "query_string": b""}
    await proxy(scope, receive, send)
    assert sent == [{"type": "websocket.close", "code": 1014}]
