"""gatekeeper.server's protocol and its request-response cycle: one write for a head and its
body, streaming kept, the disconnect hook the proxy uses instead of a watcher task, and the
HTTP/1.1 rules the cycle keeps (100-continue, pipelining, HEAD, framing, closing)."""

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


async def _exchange(port: int, data: bytes, until: bytes | None = None) -> bytes:
    """Send `data`; read until `until` (or until the server closes)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    try:
        if until is None:
            return await asyncio.wait_for(reader.read(), 5)
        return await asyncio.wait_for(reader.readuntil(until), 5)
    finally:
        writer.close()


async def _echo(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers with the request's body and how many messages it came in."""
    body, parts, more = b"", 0, True
    while more:
        message = await receive()
        body += message.get("body", b"")
        parts += 1
        more = message.get("more_body", False)
    answer = b"%d:%b" % (parts, body)
    headers = [(b"content-length", b"%d" % len(answer))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": answer})


async def test_a_body_sent_after_100_continue_reaches_the_app() -> None:
    async with _serve(_echo) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 8\r\nExpect: 100-continue\r\n\r\n"
        )
        # The interim answer comes only once the app asks for the body.
        assert await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5) == (
            b"HTTP/1.1 100 Continue\r\n\r\n"
        )
        writer.write(b"seat")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"-12A")
        reply = await asyncio.wait_for(reader.readuntil(b"seat-12A"), 5)
        writer.close()
    assert reply.startswith(b"HTTP/1.1 200 OK\r\n")
    assert reply.endswith(b"\r\n\r\n2:seat-12A")  # two messages: the body came in two reads


async def test_pipelined_requests_are_answered_in_order() -> None:
    request = b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\n%b"
    async with _serve(_echo) as port:
        data = b"".join(request % bytes([c]) for c in b"abc")
        reply = await _exchange(port, data, until=b"1:c")
    assert [part[-3:] for part in reply.split(b"HTTP/1.1 200 OK")[1:]] == [b"1:a", b"1:b", b"1:c"]


def _answer(body: bytes, length: int) -> Any:
    """An app answering `body` under a Content-Length of `length`."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-length", b"%d" % length)]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


async def test_a_head_request_gets_the_head_and_no_body() -> None:
    async with _serve(_answer(b"seat", 4)) as port:
        reply = await _exchange(port, b"HEAD / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"content-length: 4\r\n" in reply and reply.endswith(b"\r\n\r\n")


async def test_an_app_error_before_the_answer_is_a_500_and_a_close() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("the origin's bug")

    async with _serve(app) as port:
        reply = await _exchange(port, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
    assert b"connection: close\r\n" in reply and reply.endswith(b"Internal Server Error")


async def test_a_body_longer_than_its_content_length_is_never_sent() -> None:
    async with _serve(_answer(b"smuggled", 2)) as port:
        reply = await _exchange(port, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    # The head may have left; the body that would break the framing never does.
    assert b"smuggled" not in reply


async def test_http_1_0_and_an_app_asking_to_close_end_the_connection() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-length", b"2")]
        if scope["path"] == "/bye":
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"ok"})

    async with _serve(app) as port:
        old = await _exchange(port, b"GET / HTTP/1.0\r\nHost: t\r\n\r\n")  # read until closed
        bye = await _exchange(port, b"GET /bye HTTP/1.1\r\nHost: t\r\n\r\n")
    assert b"connection: close\r\n" in old and old.endswith(b"ok")
    assert bye.count(b"connection: close") == 1 and bye.endswith(b"ok")
