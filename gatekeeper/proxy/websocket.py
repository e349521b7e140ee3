"""WebSockets to the origin: the upgrade forwarded with the client's headers, frames relayed."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Sequence
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection
from websockets.client import ClientProtocol
from websockets.datastructures import Headers as WsHeaders
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException
from websockets.frames import EXTERNAL_CLOSE_CODES
from websockets.http11 import Request
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

from gatekeeper.asgi import Headers, Message, Receive, Send
from gatekeeper.config.settings import ProxySettings
from gatekeeper.errors import OriginTimeout, OriginUnavailable

# Frames read ahead from the origin before it is no longer read: with the server's own bound
# on what waits to be written to the client, a socket buffers a few messages at most.
_MAX_QUEUE = 4
# Bytes written to the origin before a send waits for it to read them.
_WRITE_LIMIT = 1 << 16
# Headers of the upgrade itself: the proxy makes its own (subprotocols are passed on as a list).
_HANDSHAKE = frozenset(
    b"sec-websocket-key sec-websocket-version sec-websocket-extensions sec-websocket-protocol"
    b" sec-websocket-accept".split()
)
# A response header that belongs to one hop's upgrade, or that ASGI sets itself.
_NOT_RELAYED = _HANDSHAKE | {b"upgrade", b"connection", b"content-length"}
# Seconds the closing handshake with the origin may take before its connection is dropped.
_CLOSE_TIMEOUT = 5.0
_NO_STATUS = 1005
_ABNORMAL = 1006


class OriginRefused(Exception):
    """The origin answered the upgrade with an HTTP response instead of switching protocols."""

    def __init__(self, status: int, headers: Headers, body: bytes) -> None:
        super().__init__(f"the origin refused the WebSocket with {status}")
        self.status = status
        self.headers = headers
        self.body = body


class _Handshake(ClientProtocol):
    """The opening handshake with the client's (rewritten) headers and the client's target."""

    def __init__(
        self, origin: _Origin, target: str, headers: Headers, subprotocols: Sequence[str]
    ) -> None:
        super().__init__(
            origin.uri,
            subprotocols=[Subprotocol(p) for p in subprotocols] or None,
            # proxy.websocket-max-message: a larger message from the origin closes with 1009
            # (what a client may send is bounded by the server's `ws_max_size`, the same key).
            max_size=origin.max_message,
        )
        self._target = target
        self._headers = headers

    def connect(self) -> Request:
        request = super().connect()
        own = request.headers
        out = WsHeaders()
        host = next((value for name, value in self._headers if name == b"host"), None)
        # proxy.host-header: preserve sends the client's Host, origin the origin's.
        out["Host"] = host.decode("latin-1") if host is not None else own["Host"]
        for name, value in own.raw_items():
            if name != "Host":
                out[name] = value
        for raw_name, raw_value in self._headers:
            if raw_name != b"host":
                out[raw_name.decode("latin-1")] = raw_value.decode("latin-1")
        request.path = self._target
        request.headers = out
        return request


class _Origin:
    """Where the origin is: address, TLS and path prefix (as the HTTP client reads `origin`)."""

    def __init__(self, origin: str, max_message: int) -> None:
        self.max_message = max_message
        parts = urlsplit(origin)
        self.tls = parts.scheme == "https"
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if self.tls else 80)
        self.prefix = parts.path.rstrip("/")
        self.uri = parse_uri(f"{'wss' if self.tls else 'ws'}://{parts.netloc}/")


class OriginSockets:
    """Opens WebSockets to one origin: no redirects followed, no proxy from the environment."""

    def __init__(self, origin: str, settings: ProxySettings) -> None:
        self._origin = _Origin(origin, settings.websocket_max_message)
        self._settings = settings
        self._context = ssl.create_default_context() if self._origin.tls else None

    async def open(
        self, target: str, headers: Headers, subprotocols: Sequence[str]
    ) -> ClientConnection:
        """A connection whose upgrade the origin accepted; `target` is the raw path and query.

        Raises `OriginRefused` (the origin's answer, to relay), `OriginTimeout` or
        `OriginUnavailable`."""
        origin = self._origin
        sent = [item for item in headers if item[0] not in _HANDSHAKE]
        protocol = _Handshake(origin, origin.prefix + target, sent, subprotocols)
        connection = ClientConnection(
            protocol, max_queue=_MAX_QUEUE, write_limit=_WRITE_LIMIT, close_timeout=_CLOSE_TIMEOUT
        )
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._settings.connect_timeout):
                await loop.create_connection(
                    lambda: connection,
                    origin.host,
                    origin.port,
                    ssl=self._context,
                    server_hostname=origin.host if self._context is not None else None,
                )
        except TimeoutError as exc:
            raise OriginTimeout("the origin did not accept a connection in time") from exc
        except OSError as exc:
            raise OriginUnavailable(f"the origin is unreachable: {exc!r}") from exc
        try:
            await self._handshake(connection)
        except BaseException:
            connection.transport.abort()
            raise
        connection.start_keepalive()
        return connection

    async def _handshake(self, connection: ClientConnection) -> None:
        try:
            async with asyncio.timeout(self._settings.read_timeout):
                await connection.handshake(None, None)
        except InvalidStatus as exc:
            response = exc.response
            headers = [
                (name.lower().encode("latin-1"), value.encode("latin-1"))
                for name, value in response.headers.raw_items()
            ]
            raise OriginRefused(
                response.status_code, headers, bytes(response.body or b"")
            ) from None
        except TimeoutError as exc:
            raise OriginTimeout("the origin did not answer the WebSocket upgrade in time") from exc
        except (OSError, WebSocketException, ValueError) as exc:
            raise OriginUnavailable(f"the origin's WebSocket upgrade failed: {exc!r}") from exc


def accept_message(connection: ClientConnection) -> Message:
    """The `websocket.accept` that completes the client's upgrade as the origin completed ours:
    its subprotocol, and the origin's response headers but those of its own hop."""
    headers: Headers = []
    if connection.response is not None:
        for name, value in connection.response.headers.raw_items():
            key = name.lower().encode("latin-1")
            if key not in _NOT_RELAYED:
                headers.append((key, value.encode("latin-1")))
    return {"type": "websocket.accept", "subprotocol": connection.subprotocol, "headers": headers}


async def relay(connection: ClientConnection, receive: Receive, send: Send) -> None:
    """Relay messages both ways until one side closes, then close the other with the same code
    and reason. Each direction awaits the other side's send before reading more (back-pressure:
    a slow reader slows its writer down, nothing queues without bound)."""
    up = asyncio.create_task(_client_to_origin(connection, receive))
    down = asyncio.create_task(_origin_to_client(connection, send))
    try:
        await asyncio.wait((up, down), return_when=asyncio.FIRST_COMPLETED)
        origin_closed = (down.done() and down.result()) or (up.done() and up.result() is None)
        if origin_closed:
            up.cancel()
            await down  # it passes the origin's close on to the client
        else:
            # The client closed (or went away while the origin was talking): its close code
            # arrives with the disconnect.
            closing = await up
            down.cancel()
            if closing is not None:
                await _close_origin(connection, *closing)
    finally:
        for task in (up, down):
            task.cancel()
        await asyncio.gather(up, down, return_exceptions=True)
        connection.transport.abort()


async def _client_to_origin(
    connection: ClientConnection, receive: Receive
) -> tuple[int, str] | None:
    """The client's close code and reason; None when the origin closed first."""
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "websocket.receive":
            text = message.get("text")
            try:
                await connection.send(text if text is not None else message.get("bytes") or b"")
            except ConnectionClosed:
                return None
        elif kind == "websocket.disconnect":
            return int(message.get("code", _NO_STATUS)), str(message.get("reason") or "")


async def _origin_to_client(connection: ClientConnection, send: Send) -> bool:
    """True once the origin closed (its close passed on), False when the client is gone."""
    try:
        while True:
            data = await connection.recv()
            if isinstance(data, str):
                await send({"type": "websocket.send", "text": data})
            else:
                await send({"type": "websocket.send", "bytes": data})
    except ConnectionClosed as exc:
        # The origin's close; or ours where the proxy ended the connection (a message over
        # the bound: 1009, no answer to pings: 1011), which the client is told in its place.
        frame = exc.rcvd or exc.sent
        if frame is None:
            return True  # dropped without a close frame: the client's connection just ends too
        # ASGI cannot send a close without a code: "no status" becomes a normal closure.
        code = 1000 if frame.code == _NO_STATUS else frame.code
        try:
            await send({"type": "websocket.close", "code": code, "reason": frame.reason})
        except OSError:
            pass
        return True
    except OSError:
        return False


async def _close_origin(connection: ClientConnection, code: int, reason: str) -> None:
    """Close the origin's side as the client closed ours: the same code and reason, "no
    status" (1005) as a close frame without a code; a client that dropped the connection
    (1006) drops ours too."""
    if code == _ABNORMAL:
        connection.transport.abort()
    elif code in EXTERNAL_CLOSE_CODES or 3000 <= code < 5000:
        await connection.close(code, reason)
    else:
        try:
            # `close()` always sends a code: the protocol's own call sends none.
            async with connection.send_context():
                connection.protocol.send_close()
        except ConnectionClosed:
            pass
