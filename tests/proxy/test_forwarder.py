"""ReverseProxy against real servers: a uvicorn origin, the proxy under uvicorn, raw sockets."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from gatekeeper.asgi import Headers
from gatekeeper.config.settings import ProxyClient, ProxySettings
from gatekeeper.errors import ConfigError, OriginTimeout
from gatekeeper.proxy.aiohttp_client import AiohttpUpstream
from gatekeeper.proxy.forwarder import CLIENTS, ReverseProxy
from gatekeeper.proxy.h1.client import H1Upstream
from gatekeeper.proxy.upstream import UpstreamResponse
from tests.proxy_helpers import (
    MB,
    Origin,
    ThreadedServer,
    memory_kib,
    port_of,
    raw_origin,
    raw_request,
    serve_proxy,
    spawn_proxy,
)


@pytest.fixture(scope="module")
def origin_server() -> Iterator[tuple[Origin, str]]:
    app = Origin()
    with ThreadedServer(app) as server:
        yield app, server.url


@pytest.fixture
def origin(origin_server: tuple[Origin, str]) -> Origin:
    return origin_server[0]


@pytest.fixture
def origin_url(origin_server: tuple[Origin, str]) -> str:
    return origin_server[1]


# Both origin clients (proxy.client) go through the forwarding, failure and disconnect tests.
@pytest.fixture(params=sorted(CLIENTS))
def kind(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


def test_every_proxy_client_has_one_class() -> None:
    assert sorted(CLIENTS) == sorted(ProxyClient)
    assert CLIENTS["builtin"] is H1Upstream and CLIENTS["aiohttp"] is AiohttpUpstream


@pytest.fixture
async def client(origin_url: str, kind: str) -> AsyncIterator[httpx.AsyncClient]:
    async with serve_proxy(origin_url, ProxySettings(client=kind)) as (_, url):
        async with httpx.AsyncClient(base_url=url, timeout=10) as c:
            yield c


def _echoed_headers(response: httpx.Response) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in response.json()["headers"]:
        out.setdefault(name, []).append(value)
    return out


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


async def test_forwards_methods_and_bodies(client: httpx.AsyncClient) -> None:
    for method in ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
        body = b"payload" if method in ("POST", "PUT", "PATCH") else b""
        response = await client.request(method, "/echo", content=body)
        assert response.status_code == 200
        assert response.json()["method"] == method
        assert response.json()["body_bytes"] == len(body)
    head = await client.head("/echo")
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["content-length"]) > 0


@pytest.mark.parametrize("status", [201, 204, 304, 400, 404, 418, 500, 503])
async def test_status_codes_preserved(client: httpx.AsyncClient, status: int) -> None:
    response = await client.get(f"/status/{status}")
    assert response.status_code == status


async def test_304_with_content_length_from_origin(kind: str) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b'HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\nETag: "v1"\r\n\r\n')
        await writer.drain()
        await reader.read()

    async with (
        raw_origin(handle) as url,
        serve_proxy(url, ProxySettings(client=kind)) as (_, proxy_url),
    ):
        async with httpx.AsyncClient(timeout=10) as c:
            response = await c.get(proxy_url + "/page")
    assert response.status_code == 304
    assert response.headers["etag"] == '"v1"'


async def test_raw_path_and_query_byte_exact(origin_url: str, kind: str) -> None:
    target = "/a%2Fb/../c/%41%7e;p=1?x=%20&y=1&y=2&z=%2F+q"
    async with serve_proxy(origin_url, ProxySettings(client=kind)) as (_, url):
        request = f"GET {target} HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n"
        status, _, body = await raw_request(_port(url), request.encode())
    assert status == 200
    echoed = json.loads(body)
    assert echoed["raw_path"] + "?" + echoed["query"] == target


async def test_repeated_set_cookie_kept_separate(client: httpx.AsyncClient) -> None:
    response = await client.get("/echo")
    assert response.headers.get_list("set-cookie") == ["a=1; Path=/", "b=2; Path=/; HttpOnly"]


async def test_no_cookie_jar_between_visitors(origin_url: str, kind: str) -> None:
    async with serve_proxy(origin_url, ProxySettings(client=kind)) as (_, url):
        async with httpx.AsyncClient(base_url=url, timeout=10) as alice:
            first = await alice.get("/cookie?tag=alice")
            assert first.headers["set-cookie"] == "who=alice; Path=/"
        async with httpx.AsyncClient(base_url=url, timeout=10) as bob:
            seen = _echoed_headers(await bob.get("/echo"))
    assert "cookie" not in seen


async def test_redirect_passed_through_not_followed(client: httpx.AsyncClient) -> None:
    response = await client.get("/redirect")
    assert response.status_code == 302
    assert response.headers["location"] == "/elsewhere"
    assert response.content == b"moved"


@pytest.mark.parametrize("mode", ["origin", "preserve"])
async def test_host_header(origin_url: str, mode: str, kind: str) -> None:
    async with serve_proxy(origin_url, ProxySettings(host_header=mode, client=kind)) as (_, url):
        async with httpx.AsyncClient(base_url=url, timeout=10) as c:
            seen = _echoed_headers(await c.get("/echo", headers={"host": "shop.test"}))
    expected = "shop.test" if mode == "preserve" else origin_url.removeprefix("http://")
    assert seen["host"] == [expected]
    assert seen["x-forwarded-host"] == ["shop.test"]


async def test_hop_by_hop_request_headers_stripped(origin_url: str, kind: str) -> None:
    request = (
        b"POST /echo HTTP/1.1\r\nHost: shop.test\r\n"
        b"Connection: close, X-Hop-Secret\r\nX-Hop-Secret: 1\r\nKeep-Alive: timeout=5\r\n"
        b"Proxy-Authorization: Basic eDp5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\n"
        b"Trailer: X-Checksum\r\nUpgrade: h2c\r\nX-End-To-End: kept\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    )
    async with serve_proxy(origin_url, ProxySettings(client=kind)) as (_, url):
        status, _, body = await raw_request(_port(url), request)
    assert status == 200
    echoed = json.loads(body)
    names = [name for name, _ in echoed["headers"]]
    for hop in ("x-hop-secret", "keep-alive", "proxy-authorization", "proxy-connection", "te"):
        assert hop not in names
    assert "trailer" not in names and "upgrade" not in names and "connection" not in names
    assert "x-end-to-end" in names
    assert echoed["body_bytes"] == 5
    # The origin sees the proxy's own framing, never the client's Transfer-Encoding header.
    assert ("transfer-encoding", "chunked") in map(tuple, echoed["headers"])
    assert "content-length" not in names


async def test_hop_by_hop_response_headers_stripped(client: httpx.AsyncClient) -> None:
    response = await client.get("/hop")
    names = {name for name, _ in response.headers.multi_items()}
    assert response.headers["x-kept"] == "yes"
    for hop in ("x-internal", "keep-alive", "proxy-authenticate", "proxy-connection", "trailer"):
        assert hop not in names
    assert "upgrade" not in names and response.content == b"hop"


async def test_content_length_only_when_client_sent_one(client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"abc"
        yield b"defg"

    sized = _echoed_headers(await client.post("/echo", content=b"1234567"))
    assert sized["content-length"] == ["7"] and "transfer-encoding" not in sized
    streamed = await client.post("/echo", content=chunks())
    assert streamed.json()["body_bytes"] == 7
    assert "content-length" not in _echoed_headers(streamed)
    plain = _echoed_headers(await client.get("/echo"))
    assert "content-length" not in plain and "transfer-encoding" not in plain


async def test_forwarded_headers_from_untrusted_client_replaced(client: httpx.AsyncClient) -> None:
    spoofed = {
        "host": "shop.test",
        "x-forwarded-for": "6.6.6.6",
        "x-forwarded-proto": "https",
        "x-forwarded-host": "evil.test",
        "x-forwarded-port": "443",
        "forwarded": "for=6.6.6.6;proto=https",
    }
    seen = _echoed_headers(await client.get("/echo", headers=spoofed))
    assert seen["x-forwarded-for"] == ["127.0.0.1"]
    assert seen["x-forwarded-proto"] == ["http"]
    assert seen["x-forwarded-host"] == ["shop.test"]
    assert "forwarded" not in seen and "x-forwarded-port" not in seen


async def test_forwarded_headers_from_trusted_proxy_extended(origin_url: str, kind: str) -> None:
    settings = ProxySettings(trusted_proxies=("10.0.0.0/8", "127.0.0.1"), client=kind)
    forwarded = {
        "host": "shop.test",
        "x-forwarded-for": "203.0.113.7, 10.1.2.3",
        "x-forwarded-proto": "https",
        "x-forwarded-host": "www.shop.test",
    }
    async with serve_proxy(origin_url, settings) as (_, url):
        async with httpx.AsyncClient(base_url=url, timeout=10) as c:
            seen = _echoed_headers(await c.get("/echo", headers=forwarded))
    assert seen["x-forwarded-for"] == ["203.0.113.7, 10.1.2.3, 127.0.0.1"]
    assert seen["x-forwarded-proto"] == ["https"]
    assert seen["x-forwarded-host"] == ["www.shop.test"]


async def test_response_streamed_chunk_by_chunk(
    client: httpx.AsyncClient, origin: Origin, kind: str
) -> None:
    async with client.stream("GET", f"/gate?tag=stream-{kind}") as response:
        chunks = response.aiter_raw()
        # The origin holds back the rest until we have seen the first chunk through the proxy.
        assert await anext(chunks) == b"first"
        origin.open_gate(f"stream-{kind}")
        assert b"".join([chunk async for chunk in chunks]) == b"second"


@contextmanager
def _refusing_origin() -> Iterator[str]:
    # Bound but not listening: every connection attempt is refused, reliably.
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    try:
        yield f"http://127.0.0.1:{port_of(sock)}"
    finally:
        sock.close()


@pytest.mark.parametrize(
    ("accept", "as_json"),
    [
        ("application/json", True),
        ("text/html;q=0.5, application/json", True),
        ("application/json, text/html", True),
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", False),
        ("text/html, application/json", False),
        ("application/json;q=0", False),
        (None, False),
    ],
)
async def test_502_when_origin_refuses(accept: str | None, as_json: bool, kind: str) -> None:
    with _refusing_origin() as url:
        async with serve_proxy(url, ProxySettings(client=kind)) as (_, proxy_url):
            async with httpx.AsyncClient(timeout=10) as c:
                headers = {"accept": accept} if accept else {}
                response = await c.get(proxy_url + "/x", headers=headers)
    assert response.status_code == 502
    assert response.headers["cache-control"] == "no-store"
    if as_json:
        assert response.headers["content-type"] == "application/json"
        assert response.json()["error"]["code"] == "bad_gateway"
        assert response.json()["error"]["message"]
    else:
        assert response.headers["content-type"].startswith("text/html")
        assert "502" in response.text


@pytest.mark.parametrize("reply", [b"", b"NOT HTTP AT ALL\r\n\r\n", b"HTTP/1.1 200 OK\r\nCon"])
async def test_502_when_origin_hangs_up_or_talks_nonsense(reply: bytes, kind: str) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(reply)

    async with (
        raw_origin(handle) as url,
        serve_proxy(url, ProxySettings(client=kind)) as (_, proxy_url),
    ):
        async with httpx.AsyncClient(timeout=10) as c:
            response = await c.get(proxy_url + "/", headers={"accept": "application/json"})
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "bad_gateway"


async def test_504_when_origin_slower_than_read_timeout(
    origin_url: str, origin: Origin, kind: str
) -> None:
    settings = ProxySettings(read_timeout=0.3, client=kind)
    async with serve_proxy(origin_url, settings) as (_, url):
        async with httpx.AsyncClient(base_url=url, timeout=10) as c:
            started = time.monotonic()
            response = await c.get(f"/slow?tag=t504-{kind}", headers={"accept": "application/json"})
    assert response.status_code == 504
    assert time.monotonic() - started < 5
    assert response.json()["error"]["code"] == "gateway_timeout"
    assert response.headers["cache-control"] == "no-store"
    # The proxy hung up on the origin rather than keeping the connection busy.
    assert await origin.wait_count(f"slow-gone:t504-{kind}")


async def test_504_when_origin_never_answers(kind: str) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    async with raw_origin(handle) as url:
        async with serve_proxy(url, ProxySettings(read_timeout=0.3, client=kind)) as (
            _,
            proxy_url,
        ):
            async with httpx.AsyncClient(timeout=10) as c:
                response = await c.get(proxy_url + "/")
    assert response.status_code == 504
    assert response.headers["content-type"].startswith("text/html")


@pytest.mark.parametrize(("path", "read_timeout"), [("/truncate", 30.0), ("/stall", 1.0)])
async def test_origin_failure_mid_body_aborts_response(
    origin_url: str, path: str, read_timeout: float, kind: str
) -> None:
    async with serve_proxy(origin_url, ProxySettings(read_timeout=read_timeout, client=kind)) as (
        _,
        url,
    ):
        async with httpx.AsyncClient(base_url=url, timeout=10) as c:
            with pytest.raises(httpx.RemoteProtocolError):
                await c.get(path)
            assert (await c.get("/echo")).status_code == 200


async def _abort_download(port: int, tag: str) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET /download?mb=100000&tag={tag} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    await asyncio.wait_for(reader.readexactly(64 * 1024), 10)
    writer.close()
    await writer.wait_closed()


async def test_client_disconnect_mid_download_frees_connection(
    origin_url: str, origin: Origin, kind: str
) -> None:
    async with serve_proxy(origin_url, ProxySettings(pool_size=4, client=kind)) as (_, url):
        for _ in range(50):
            await asyncio.gather(*(_abort_download(_port(url), f"abort-{kind}") for _ in range(4)))
        # Every aborted stream reached the origin as a disconnect: nothing kept reading.
        assert await origin.wait_count(f"download-gone:abort-{kind}", 200)
        async with httpx.AsyncClient(base_url=url, timeout=10) as c:
            responses = await asyncio.gather(*(c.get("/download?mb=1") for _ in range(8)))
    assert all(len(r.content) == MB for r in responses)


async def test_client_disconnect_mid_upload_frees_connection(
    origin_url: str, origin: Origin, kind: str
) -> None:
    tag = f"up-{kind}"
    async with serve_proxy(origin_url, ProxySettings(pool_size=2, client=kind)) as (_, url):
        for attempt in range(1, 11):
            reader, writer = await asyncio.open_connection("127.0.0.1", _port(url))
            head = (
                f"POST /upload?tag={tag} HTTP/1.1\r\nHost: t\r\nContent-Length: {100 * MB}\r\n\r\n"
            )
            writer.write(head.encode() + b"u" * MB)
            await writer.drain()
            assert await origin.wait_count(f"upload-start:{tag}", attempt)
            writer.close()
            await writer.wait_closed()
        assert await origin.wait_count(f"upload-gone:{tag}", 10)
        async with httpx.AsyncClient(base_url=url, timeout=10) as c:
            response = await c.post("/upload", content=b"z" * 1000)
    assert response.json()["body_bytes"] == 1000


async def test_client_disconnect_while_origin_thinks_frees_connection(
    origin_url: str, origin: Origin, kind: str
) -> None:
    async with serve_proxy(origin_url, ProxySettings(pool_size=1, client=kind)) as (_, url):
        reader, writer = await asyncio.open_connection("127.0.0.1", _port(url))
        writer.write(f"GET /slow?s=60&tag=think-{kind} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        assert await origin.wait_count(f"slow-start:think-{kind}")
        writer.close()
        await writer.wait_closed()
        assert await origin.wait_count(f"slow-gone:think-{kind}")
        async with httpx.AsyncClient(base_url=url, timeout=10) as c:
            assert (await c.get("/echo")).status_code == 200


async def _upload(port: int, size: int) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (
        f"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n"
    )
    writer.write(head.encode())
    block = b"u" * MB
    for _ in range(size // MB):
        writer.write(block)
        await writer.drain()
    reply = await asyncio.wait_for(reader.read(), 60)
    writer.close()
    await writer.wait_closed()
    count: int = json.loads(reply.partition(b"\r\n\r\n")[2])["body_bytes"]
    return count


async def _download(port: int, size: int) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = f"GET /download?mb={size // MB}&cl=1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    writer.write(request.encode())
    await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
    received = 0
    while chunk := await asyncio.wait_for(reader.read(1024 * 1024), 30):
        received += len(chunk)
    writer.close()
    await writer.wait_closed()
    return received


async def test_streaming_200mb_each_way_keeps_memory_flat(origin_url: str, kind: str) -> None:
    size = 200 * MB
    with spawn_proxy(origin_url, pool_size=4, client=kind) as (pid, port):
        # Warm up: imports done, pool and buffers allocated.
        assert await _upload(port, 8 * MB) == 8 * MB
        assert await _download(port, 8 * MB) == 8 * MB
        baseline = memory_kib(pid, "VmHWM")
        assert await _upload(port, size) == size
        assert await _download(port, size) == size
        peak = memory_kib(pid, "VmHWM")
    assert peak - baseline < 50 * 1024, f"proxy RSS grew by {(peak - baseline) // 1024} MiB"


async def test_lifespan_opens_and_closes_upstream(origin_url: str, kind: str) -> None:
    proxy = ReverseProxy(origin_url, ProxySettings(client=kind))
    assert proxy.upstream is None
    async with serve_proxy(proxy) as (_, url):
        async with httpx.AsyncClient(base_url=url, timeout=10) as c:
            assert (await c.get("/echo")).status_code == 200
        upstream = proxy.upstream
        assert isinstance(upstream, CLIENTS[kind]) and upstream.is_open
    assert not upstream.is_open


async def test_without_lifespan_opens_lazily_and_closes(origin_url: str, kind: str) -> None:
    settings = ProxySettings(client=kind)
    proxy = ReverseProxy(origin_url, settings)
    transport = httpx.ASGITransport(app=proxy)
    async with httpx.AsyncClient(transport=transport, base_url="http://shop.test") as c:
        response = await c.get("/echo?q=1")
    assert response.json()["query"] == "q=1"
    upstream = proxy.upstream
    assert isinstance(upstream, CLIENTS[kind]) and upstream.is_open
    await proxy.aclose()
    assert not upstream.is_open
    async with ReverseProxy(origin_url, settings) as scoped:
        assert isinstance(scoped.upstream, CLIENTS[kind]) and scoped.upstream.is_open
    assert not scoped.upstream.is_open


class _TimingOut:
    """An injected upstream whose origin never answers in time."""

    closed = False

    async def send(
        self,
        method: str,
        target: str,
        headers: Headers,
        body: AsyncIterator[bytes] | None,
        content_length: int | None,
    ) -> UpstreamResponse:
        raise OriginTimeout("too slow")

    async def aclose(self) -> None:
        self.closed = True


async def test_injected_upstream_errors_become_504() -> None:
    upstream = _TimingOut()
    async with ReverseProxy("http://origin.test", upstream=upstream) as proxy:
        transport = httpx.ASGITransport(app=proxy)
        async with httpx.AsyncClient(transport=transport, base_url="http://shop.test") as c:
            response = await c.get("/", headers={"accept": "application/json"})
    assert response.status_code == 504
    error = response.json()["error"]
    assert set(response.json()) == {"error"} and set(error) == {"code", "message"}
    assert error["code"] == "gateway_timeout" and isinstance(error["message"], str)
    assert upstream.closed


@pytest.mark.parametrize(
    "make",
    [
        lambda: ProxySettings(host_header="rewrite"),
        lambda: ProxySettings(client="httpx"),
        lambda: ReverseProxy("http://o.test", ProxySettings(trusted_proxies=("10.0.0.0/33",))),
        lambda: ReverseProxy("origin.test:8080"),
    ],
)
def test_bad_settings_raise_config_error(make: Any) -> None:
    with pytest.raises(ConfigError):
        make()
