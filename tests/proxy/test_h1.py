"""H1Upstream, the proxy's own HTTP/1.1 client, against real and misbehaving origins."""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from gatekeeper.asgi import Headers
from gatekeeper.config.settings import ProxySettings
from gatekeeper.errors import OriginTimeout, OriginUnavailable
from gatekeeper.proxy.h1 import pool as origin_pool
from gatekeeper.proxy.h1.client import H1Upstream
from tests.proxy_helpers import MB, Origin, ThreadedServer, port_of, raw_origin

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


@pytest.fixture(scope="module")
def origin_server() -> Iterator[tuple[Origin, str]]:
    app = Origin()
    with ThreadedServer(app) as server:
        yield app, server.url


@asynccontextmanager
async def upstream(url: str, **settings: object) -> AsyncIterator[H1Upstream]:
    client = H1Upstream(url, ProxySettings(**settings))  # type: ignore[arg-type]
    await client.open()
    try:
        yield client
    finally:
        await client.aclose()


async def fetch(
    client: H1Upstream,
    method: str = "GET",
    target: str = "/",
    headers: Headers | None = None,
    body: AsyncIterator[bytes] | None = None,
    length: int | None = None,
) -> tuple[int, Headers, bytes]:
    response = await client.send(method, target, headers or [], body, length)
    try:
        data = b"".join([chunk async for chunk in response.body()])
    finally:
        await response.aclose()
    return response.status, response.headers, data


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


class Recorder:
    """A keep-alive raw origin answering every request with `reply`; records what it saw."""

    def __init__(self, reply: bytes = OK) -> None:
        self.reply = reply
        self.requests: list[bytes] = []
        self.connections = 0

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        while True:
            self.requests.append(await read_request(reader))
            writer.write(self.reply)
            await writer.drain()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    lower = head.lower()
    if b"\r\ncontent-length: " in lower:
        size = int(lower.split(b"\r\ncontent-length: ")[1].split(b"\r\n")[0])
        return head + await reader.readexactly(size)
    if b"\r\ntransfer-encoding: chunked" in lower:
        return head + await reader.readuntil(b"0\r\n\r\n")
    return head


def answer_once(reply: bytes) -> Handler:
    """A raw origin that answers one request with `reply`, then hangs up."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(reply)

    return handle


async def test_request_head_is_byte_exact_with_framing_only() -> None:
    origin = Recorder()
    async with raw_origin(origin) as url, upstream(url) as client:
        host = url.removeprefix("http://")
        await fetch(client, "GET", "/p?q=%41", [(b"x-a", b"1"), (b"X-B", b"two")])
        await fetch(client, "GET", "/", [(b"host", b"shop.test")])
        await fetch(client, "POST", "/sized", [], chunks(b"ab", b"c"), 3)
        await fetch(client, "POST", "/streamed", [], chunks(b"abc", b"", b"de"))
        await fetch(client, "POST", "/empty")
        await fetch(client, "DELETE", "/gone")
    assert origin.requests == [
        f"GET /p?q=%41 HTTP/1.1\r\nHost: {host}\r\nx-a: 1\r\nX-B: two\r\n\r\n".encode(),
        b"GET / HTTP/1.1\r\nhost: shop.test\r\n\r\n",
        f"POST /sized HTTP/1.1\r\nHost: {host}\r\nContent-Length: 3\r\n\r\nabc".encode(),
        f"POST /streamed HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        + b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        f"POST /empty HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\n\r\n".encode(),
        f"DELETE /gone HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\n\r\n".encode(),
    ]
    assert origin.connections == 1


@pytest.mark.parametrize(
    ("target", "headers"),
    [("/x\r\nX-Evil: 1", []), ("/", [(b"x-a", b"1\r\nX-Evil: 1")]), ("/", [(b"x-a", b"1\n")])],
)
async def test_cr_or_lf_in_request_rejected(target: str, headers: Headers) -> None:
    origin = Recorder()
    async with raw_origin(origin) as url, upstream(url) as client:
        with pytest.raises(ValueError):
            await client.send("GET", target, headers, None, None)
    assert origin.requests == []


async def test_raw_headers_in_order_with_duplicates(origin_server: tuple[Origin, str]) -> None:
    async with upstream(origin_server[1]) as client:
        status, headers, body = await fetch(client, "GET", "/echo?tag=h")
    assert status == 200 and json.loads(body)["method"] == "GET"
    cookies = [value for name, value in headers if name.lower() == b"set-cookie"]
    assert cookies == [b"a=1; Path=/", b"b=2; Path=/; HttpOnly"]
    assert all(isinstance(name, bytes) and isinstance(value, bytes) for name, value in headers)


async def test_bodiless_answers_keep_the_connection() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        replies = [
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",  # to HEAD
            b"HTTP/1.1 204 No Content\r\n\r\n",
            b'HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\nETag: "v"\r\n\r\n',
            OK,
        ]
        for reply in replies:
            await read_request(reader)
            writer.write(reply)
        await reader.read()

    async with raw_origin(handle) as url, upstream(url) as client:
        assert await fetch(client, "HEAD") == (200, [(b"Content-Length", b"5")], b"")
        assert (await fetch(client, "GET", "/204"))[::2] == (204, b"")
        assert (await fetch(client, "GET", "/304"))[::2] == (304, b"")
        assert (await fetch(client, "GET", "/"))[::2] == (200, b"ok")


async def test_informational_answers_skipped() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n")
        writer.write(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\nX-Final: 1\r\n\r\nok")
        await reader.read()

    async with raw_origin(handle) as url, upstream(url) as client:
        status, headers, body = await fetch(client, "POST", "/", [], chunks(b"x"), 1)
    assert (status, headers, body) == (201, [(b"Content-Length", b"2"), (b"X-Final", b"1")], b"ok")


async def test_chunked_trailers_dropped_and_connection_kept() -> None:
    reply = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n"
    origin = Recorder(reply + b"2\r\nok\r\n0\r\nX-Sum: 1\r\n\r\n")
    async with raw_origin(origin) as url, upstream(url) as client:
        for _ in range(2):
            status, headers, body = await fetch(client)
            assert body == b"ok" and [name for name, _ in headers] == [
                b"Transfer-Encoding",
                b"Trailer",
            ]
    assert origin.connections == 1


async def test_early_answer_stops_the_upload() -> None:
    origin = Recorder()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        origin.connections += 1
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 3\r\n\r\nbig")
        while await reader.read(MB):
            pass  # drained, not closed: a reset could destroy the answer before it is read

    pulled = 0

    async def upload() -> AsyncIterator[bytes]:
        nonlocal pulled
        for _ in range(1024):
            pulled += 1
            yield b"u" * MB
            await asyncio.sleep(0.001)

    async with raw_origin(handle) as url, upstream(url) as client:
        assert await fetch(client, "POST", "/", [], upload()) == (
            413,
            [(b"Content-Length", b"3")],
            b"big",
        )
        assert pulled < 1024
        assert (await fetch(client, "POST", "/", [], chunks(b"x"), 1))[0] == 413
    assert origin.connections == 2


@pytest.mark.parametrize(
    ("reply", "reused"),
    [
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", False),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", False),
        (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok", True),
        (OK, True),
    ],
)
async def test_connection_reused_only_when_origin_keeps_it(reply: bytes, reused: bool) -> None:
    # The origin never closes: only the client's reading of the answer decides.
    origin = Recorder(reply)
    async with raw_origin(origin) as url, upstream(url) as client:
        for _ in range(3):
            assert (await fetch(client))[2] == b"ok"
    assert origin.connections == (1 if reused else 3)


async def test_body_read_until_close() -> None:
    origin_connections = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal origin_connections
        origin_connections += 1
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nfirst ")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"second")
        writer.close()

    async with raw_origin(handle) as url, upstream(url) as client:
        assert (await fetch(client))[2] == b"first second"
        assert (await fetch(client))[2] == b"first second"
    assert origin_connections == 2


async def test_idle_connection_the_origin_closed_is_not_used() -> None:
    origin = Recorder()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        origin.connections += 1
        await read_request(reader)
        writer.write(OK)  # keep-alive promised, then closed anyway

    async with raw_origin(handle) as url, upstream(url) as client:
        for _ in range(3):
            assert (await fetch(client, "POST", "/", [], chunks(b"x"), 1))[2] == b"ok"
            await asyncio.sleep(0.05)
    assert origin.connections == 3


async def test_idle_connections_closed_after_idle_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(origin_pool, "_IDLE_S", 0.2)
    closed = asyncio.Event()
    origin = Recorder()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        origin.connections += 1
        await read_request(reader)
        writer.write(OK)
        assert await reader.read() == b""
        closed.set()

    async with raw_origin(handle) as url, upstream(url) as client:
        await fetch(client)
        await asyncio.wait_for(closed.wait(), 2)
        await fetch(client)
    assert origin.connections == 2


@pytest.mark.parametrize(
    "reply",
    [
        b"",
        b"NOT HTTP AT ALL\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nCon",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: upgrade\r\n\r\n",
    ],
)
async def test_origin_hangs_up_or_talks_nonsense(reply: bytes) -> None:
    async with raw_origin(answer_once(reply)) as url, upstream(url) as client:
        with pytest.raises(OriginUnavailable):
            await fetch(client)


@pytest.mark.parametrize(
    "reply",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n",
    ],
)
async def test_origin_closes_mid_body(reply: bytes) -> None:
    async with raw_origin(answer_once(reply)) as url, upstream(url) as client:
        response = await client.send("GET", "/", [], None, None)
        received = b""
        with pytest.raises(OriginUnavailable):
            async for chunk in response.body():
                received += chunk
        await response.aclose()
    assert received == b"0123456789"


async def test_origin_never_answers_times_out_and_is_hung_up_on() -> None:
    hung_up = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        assert await reader.read() == b""
        hung_up.set()

    async with raw_origin(handle) as url, upstream(url, read_timeout=0.3) as client:
        started = time.monotonic()
        with pytest.raises(OriginTimeout):
            await fetch(client)
        assert time.monotonic() - started < 2
        await asyncio.wait_for(hung_up.wait(), 2)


async def test_origin_stalls_mid_body_times_out() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc")
        await reader.read()

    async with raw_origin(handle) as url, upstream(url, read_timeout=0.3) as client:
        response = await client.send("GET", "/", [], None, None)
        assert await anext(response.body()) == b"abc"
        with pytest.raises(OriginTimeout):
            await anext(response.body())
        await response.aclose()


async def test_refused_connection_is_unavailable() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = port_of(server.sockets[0])
    server.close()
    await server.wait_closed()
    async with upstream(f"http://127.0.0.1:{port}") as client:
        with pytest.raises(OriginUnavailable):
            await fetch(client)


async def test_tls_handshake_counts_towards_connect_timeout() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # accepts TCP, never speaks TLS

    async with raw_origin(handle) as url:
        https = url.replace("http://", "https://")
        async with upstream(https, connect_timeout=0.3, read_timeout=30) as client:
            started = time.monotonic()
            with pytest.raises(OriginTimeout):
                await fetch(client)
            assert time.monotonic() - started < 2


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_https_origin_verified_with_sni(
    certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = certificate
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the default context now trusts it
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    names: list[str | None] = []
    server_context.sni_callback = lambda sock, name, context: names.append(name)
    origin = Recorder()
    server = await asyncio.start_server(origin, "127.0.0.1", 0, ssl=server_context)
    port = port_of(server.sockets[0])
    try:
        async with upstream(f"https://localhost:{port}") as client:
            assert (await fetch(client))[2] == b"ok"
            assert (await fetch(client))[2] == b"ok"
    finally:
        server.close()
        await server.wait_closed()
    assert names == ["localhost"]
    assert origin.requests[0].startswith(f"GET / HTTP/1.1\r\nHost: localhost:{port}\r\n".encode())


async def test_untrusted_certificate_is_unavailable(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    server = await asyncio.start_server(Recorder(), "127.0.0.1", 0, ssl=server_context)
    try:
        async with upstream(f"https://localhost:{port_of(server.sockets[0])}") as client:
            with pytest.raises(OriginUnavailable):
                await fetch(client)
    finally:
        server.close()
        await server.wait_closed()


async def test_large_bodies_both_ways(origin_server: tuple[Origin, str]) -> None:
    async def upload(size: int) -> AsyncIterator[bytes]:
        block = b"u" * MB
        for _ in range(size // MB):
            yield block

    async with upstream(origin_server[1]) as client:
        for length in (None, 64 * MB):
            _, _, body = await fetch(client, "POST", "/upload", [], upload(64 * MB), length)
            assert json.loads(body)["body_bytes"] == 64 * MB
        for cl in ("", "&cl=1"):
            response = await client.send("GET", f"/download?mb=64{cl}", [], None, None)
            total = 0
            async for chunk in response.body():
                total += len(chunk)
            await response.aclose()
            assert total == 64 * MB


async def test_slow_reader_holds_back_the_origin() -> None:
    written = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal written
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (128 * MB))
        block = b"d" * (256 * 1024)
        for _ in range(512):
            writer.write(block)
            await writer.drain()
            written += len(block)

    async with raw_origin(handle) as url, upstream(url) as client:
        response = await client.send("GET", "/", [], None, None)
        received = len(await anext(response.body()))
        await asyncio.sleep(0.5)
        # Socket buffers hold a few MB; without back-pressure the origin would be done.
        assert written < 32 * MB
        async for chunk in response.body():
            assert len(chunk) <= 4 * MB
            received += len(chunk)
        await response.aclose()
    assert received == 128 * MB


async def test_slow_origin_holds_back_the_upload() -> None:
    pulled = 0
    reading = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await reading.wait()
        await reader.readexactly(128 * MB)
        writer.write(OK)
        await reader.read()

    async def upload() -> AsyncIterator[bytes]:
        nonlocal pulled
        block = b"u" * MB
        for _ in range(128):
            pulled += 1
            yield block

    async with raw_origin(handle) as url, upstream(url) as client:
        sending = asyncio.create_task(fetch(client, "PUT", "/", [], upload(), 128 * MB))
        await asyncio.sleep(0.5)
        assert pulled < 32
        reading.set()
        assert (await sending)[2] == b"ok"
    assert pulled == 128


@pytest.mark.parametrize(
    ("method", "body", "retried"),
    [("GET", None, True), ("HEAD", None, True), ("POST", b"x", False), ("GET", b"x", False)],
)
async def test_stale_connection_retried_only_when_safe(
    method: str, body: bytes | None, retried: bool
) -> None:
    origin = Recorder()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        origin.connections += 1
        first = origin.connections == 1
        while True:
            origin.requests.append(await read_request(reader))
            if first and len(origin.requests) == 2:
                return  # the keep-alive connection dies just as it is reused
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n")
            if method != "HEAD":
                writer.write(b"ok")

    async with raw_origin(handle) as url, upstream(url) as client:
        length = None if body is None else len(body)
        await fetch(client, method, "/", [], None if body is None else chunks(body), length)
        second = fetch(client, method, "/", [], None if body is None else chunks(body), length)
        if retried:
            assert (await second)[0] == 200
        else:
            with pytest.raises(OriginUnavailable):
                await second
    assert len(origin.requests) == (3 if retried else 2)


class Holding:
    """A raw origin answering each request once its tag is released; records order and load."""

    def __init__(self) -> None:
        self.order: list[bytes] = []
        self.open = self.max_open = self.connections = 0
        self.release: dict[bytes, asyncio.Event] = {}

    def gate(self, tag: bytes) -> asyncio.Event:
        return self.release.setdefault(tag, asyncio.Event())

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open += 1
        self.max_open = max(self.max_open, self.open)
        try:
            while True:
                head = await read_request(reader)
                tag = head.split(b" ")[1]
                self.order.append(tag)
                await self.gate(tag).wait()
                writer.write(OK)
        finally:
            self.open -= 1


async def test_pool_limit_and_fifo_waiters() -> None:
    origin = Holding()
    async with raw_origin(origin) as url, upstream(url, pool_size=2) as client:
        tags = [f"/{i}".encode() for i in range(6)]
        tasks = [asyncio.create_task(fetch(client, "GET", tag.decode())) for tag in tags]
        for tag in tags:
            await asyncio.sleep(0.05)
            origin.gate(tag).set()
        results = await asyncio.gather(*tasks)
    assert all(body == b"ok" for _, _, body in results)
    assert origin.max_open == origin.connections == 2
    assert origin.order == tags


async def test_cancelled_waiter_gives_up_its_turn() -> None:
    origin = Holding()
    async with raw_origin(origin) as url, upstream(url, pool_size=1) as client:
        first = asyncio.create_task(fetch(client, "GET", "/a"))
        gone = asyncio.create_task(fetch(client, "GET", "/gone"))
        third = asyncio.create_task(fetch(client, "GET", "/c"))
        await asyncio.sleep(0.05)
        gone.cancel()
        origin.gate(b"/a").set()
        origin.gate(b"/c").set()
        assert (await first)[2] == (await third)[2] == b"ok"
        assert gone.cancelled()
        assert (await asyncio.wait_for(fetch(client, "GET", "/a"), 2))[2] == b"ok"
    assert origin.order == [b"/a", b"/c", b"/a"] and origin.connections == 1


async def test_half_read_response_closes_its_connection(
    origin_server: tuple[Origin, str],
) -> None:
    origin, url = origin_server
    async with upstream(url, pool_size=1) as client:
        response = await client.send("GET", "/download?mb=1000&tag=half", [], None, None)
        assert await anext(response.body())
        await response.aclose()
        assert await origin.wait_count("download-gone:half")
        assert (await fetch(client, "GET", "/echo"))[0] == 200


async def test_aclose_closes_the_pool_and_a_later_send_reopens_it() -> None:
    origin = Recorder()
    async with raw_origin(origin) as url:
        client = H1Upstream(url, ProxySettings())
        assert not client.is_open
        assert (await fetch(client))[2] == b"ok"
        assert client.is_open
        await client.aclose()
        assert not client.is_open
        assert (await fetch(client))[2] == b"ok"
        await client.aclose()
    assert origin.connections == 2
