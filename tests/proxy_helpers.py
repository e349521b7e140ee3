"""Real servers for the proxy tests: a test origin, uvicorn runners and raw-socket helpers."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import uvicorn

from gatekeeper.asgi import ASGIApp
from gatekeeper.config.settings import ProxySettings
from gatekeeper.proxy.forwarder import ReverseProxy
from tests.processes import stop

ROOT = Path(__file__).resolve().parent.parent
MB = 1024 * 1024
CHUNK = b"x" * (256 * 1024)
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

# Served the way production serves the gate: the proxy owns forwarding headers,
# and the origin's Date/Server headers are passed through rather than duplicated.
PROXY_CONFIG: dict[str, Any] = {
    "lifespan": "on",
    "proxy_headers": False,
    "server_header": False,
    "date_header": False,
}
_COMMON_CONFIG: dict[str, Any] = {
    "log_config": None,
    "log_level": "warning",
    "access_log": False,
    "ws": "none",
    "timeout_graceful_shutdown": 2,
}


def listen() -> socket.socket:
    """A listening socket on a random port: clients may connect before the server runs."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    return sock


def port_of(sock: socket.socket) -> int:
    port: int = sock.getsockname()[1]
    return port


class Origin:
    """The test origin (an ASGI app) plus counters tests can wait on from another thread."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._changed = threading.Condition()
        self._gates: dict[str, asyncio.Event] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def count(self, name: str) -> None:
        with self._changed:
            self._counts[name] += 1
            self._changed.notify_all()

    def _wait(self, name: str, at_least: int, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self._counts[name] >= at_least, timeout)

    async def wait_count(self, name: str, at_least: int = 1, timeout: float = 10.0) -> bool:
        """Wait (without blocking the caller's loop) until `name` was counted `at_least` times."""
        return await asyncio.to_thread(self._wait, name, at_least, timeout)

    def _gate(self, name: str) -> asyncio.Event:
        with self._changed:
            return self._gates.setdefault(name, asyncio.Event())

    def open_gate(self, name: str) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._gate(name).set)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        self._loop = asyncio.get_running_loop()
        query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
        tag = query.get("tag", "")
        path = scope["path"]
        if path == "/download":
            await self._download(receive, send, float(query.get("mb", "1")), "cl" in query, tag)
        elif path == "/slow":
            await self._slow(receive, send, float(query.get("s", "30")), tag)
        elif path == "/gate":
            await _drain(receive)
            await send(_start(200, []))
            await send({"type": "http.response.body", "body": b"first", "more_body": True})
            await asyncio.wait_for(self._gate(tag).wait(), 10)
            await send({"type": "http.response.body", "body": b"second"})
        elif path in ("/truncate", "/stall"):
            await _drain(receive)
            await send(_start(200, [(b"content-length", b"1000")]))
            await send({"type": "http.response.body", "body": b"0123456789", "more_body": True})
            if path == "/stall":
                with suppress(TimeoutError):
                    await asyncio.wait_for(receive(), 10)
        elif path == "/redirect":
            await _drain(receive)
            await _respond(send, 302, b"moved", [(b"location", b"/elsewhere")])
        elif path.startswith("/status/"):
            await _drain(receive)
            status = int(path.rsplit("/", 1)[1])
            await _respond(send, status, b"" if status in (204, 304) else b"status body")
        elif path == "/hop":
            await _drain(receive)
            await _respond(send, 200, b"hop", HOP_RESPONSE_HEADERS)
        else:
            await self._echo(scope, receive, send, tag)

    async def _echo(self, scope: Scope, receive: Receive, send: Send, tag: str) -> None:
        self.count(f"upload-start:{tag}")
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.count(f"upload-gone:{tag}")
                return
            size += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        echoed = {
            "method": scope["method"],
            "raw_path": scope["raw_path"].decode("latin-1"),
            "query": scope["query_string"].decode("latin-1"),
            "headers": [[n.decode("latin-1"), v.decode("latin-1")] for n, v in scope["headers"]],
            "body_bytes": size,
        }
        cookies = [(b"set-cookie", b"a=1; Path=/"), (b"set-cookie", b"b=2; Path=/; HttpOnly")]
        if scope["path"] == "/cookie":
            cookies = [(b"set-cookie", f"who={tag}; Path=/".encode())]
        body = json.dumps(echoed).encode()
        await _respond(send, 200, body, [(b"content-type", b"application/json"), *cookies])

    async def _download(self, receive: Receive, send: Send, mb: float, cl: bool, tag: str) -> None:
        await _drain(receive)
        total = int(mb * MB)
        disconnected = asyncio.ensure_future(receive())
        try:
            await send(_start(200, [(b"content-length", b"%d" % total)] if cl else []))
            sent = 0
            while sent < total:
                if disconnected.done():
                    self.count(f"download-gone:{tag}")
                    return
                n = min(len(CHUNK), total - sent)
                chunk = CHUNK if n == len(CHUNK) else CHUNK[:n]
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                sent += n
                # uvicorn's send() returns at once after a disconnect: yield so we notice it.
                await asyncio.sleep(0)
            await send({"type": "http.response.body", "body": b""})
        finally:
            disconnected.cancel()

    async def _slow(self, receive: Receive, send: Send, seconds: float, tag: str) -> None:
        await _drain(receive)
        self.count(f"slow-start:{tag}")
        try:
            await asyncio.wait_for(receive(), seconds)
        except TimeoutError:
            await _respond(send, 200, b"finally")
        else:
            self.count(f"slow-gone:{tag}")


HOP_RESPONSE_HEADERS = [
    (b"connection", b"x-internal, keep-alive"),
    (b"x-internal", b"secret"),
    (b"keep-alive", b"timeout=5"),
    (b"proxy-authenticate", b"Basic"),
    (b"proxy-connection", b"keep-alive"),
    (b"trailer", b"x-checksum"),
    (b"upgrade", b"h2c"),
    (b"x-kept", b"yes"),
]


def _start(status: int, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {"type": "http.response.start", "status": status, "headers": headers}


async def _respond(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    length = [] if status in (204, 304) else [(b"content-length", b"%d" % len(body))]
    await send(_start(status, [*length, *(headers or [])]))
    await send({"type": "http.response.body", "body": body})


async def _drain(receive: Receive) -> None:
    while (await receive()).get("more_body"):
        pass


class ThreadedServer:
    """uvicorn serving `app` on 127.0.0.1 from a background thread with its own loop."""

    def __init__(self, app: Any, **config: Any) -> None:
        self.sock = listen()
        self.url = f"http://127.0.0.1:{port_of(self.sock)}"
        options = {**_COMMON_CONFIG, "lifespan": "off", **config}
        self.server = uvicorn.Server(uvicorn.Config(app, **options))
        self._thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def __enter__(self) -> ThreadedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.should_exit = True
        self._thread.join(10)
        self.sock.close()


@asynccontextmanager
async def serve_app(app: ASGIApp, *, websockets: bool = False) -> AsyncIterator[str]:
    """Serve `app` with uvicorn in the current loop as a proxy is served (lifespan on, no Date
    or Server header of its own), WebSockets with `websockets`; yields its host:port once
    started."""
    sock = listen()
    ws = "websockets-sansio" if websockets else "none"
    server = uvicorn.Server(uvicorn.Config(app, **{**_COMMON_CONFIG, **PROXY_CONFIG, "ws": ws}))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not task.done():
        await asyncio.sleep(0.01)
    try:
        yield f"127.0.0.1:{port_of(sock)}"
    finally:
        server.should_exit = True
        await task
        sock.close()


@asynccontextmanager
async def serve_proxy(
    proxy: ReverseProxy | str, settings: ProxySettings | None = None
) -> AsyncIterator[tuple[ReverseProxy, str]]:
    """Serve a ReverseProxy with uvicorn in the current loop; yields it and its base URL."""
    app = proxy if isinstance(proxy, ReverseProxy) else ReverseProxy(proxy, settings)
    async with serve_app(app) as address:
        yield app, f"http://{address}"


@contextmanager
def spawn_proxy(origin: str, **settings: Any) -> Iterator[tuple[int, int]]:
    """Run the proxy under uvicorn in a child process; yields (pid, port)."""
    sock = listen()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [sys.executable, __file__, origin, str(sock.fileno()), json.dumps(settings)]
    child = subprocess.Popen(args, pass_fds=[sock.fileno()], cwd=ROOT, env=env)
    try:
        yield child.pid, port_of(sock)
    finally:
        stop(child)
        sock.close()


def memory_kib(pid: int, field: str) -> int:
    """A Vm* field (VmRSS, VmHWM) of /proc/<pid>/status, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)


@asynccontextmanager
async def raw_origin(
    handle: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[str]:
    """A hand-written origin on a raw asyncio socket server; yields its URL."""

    async def guarded(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await handle(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(guarded, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{port_of(server.sockets[0])}"
    finally:
        server.close()
        await server.wait_closed()


async def raw_request(
    port: int, request: bytes, timeout: float = 10.0
) -> tuple[int, list[tuple[str, str]], bytes]:
    """Send bytes exactly as given (include Connection: close); parse the whole reply."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        data = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
        with suppress(ConnectionError):
            await writer.wait_closed()
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = [(n.strip().lower(), v.strip()) for n, _, v in (x.partition(":") for x in lines)]
    if ("transfer-encoding", "chunked") in headers:
        body = _dechunk(body)
    return int(status_line.split()[1]), headers, body


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    while True:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return bytes(out)
        out += data[:size]
        data = data[size + 2 :]


def _serve_forever(origin: str, fd: int, settings: str) -> None:
    proxy = ReverseProxy(origin, ProxySettings(**json.loads(settings)))
    config = uvicorn.Config(proxy, **_COMMON_CONFIG, **PROXY_CONFIG)
    uvicorn.Server(config).run(sockets=[socket.socket(fileno=fd)])


if __name__ == "__main__":
    _serve_forever(sys.argv[1], int(sys.argv[2]), sys.argv[3])
