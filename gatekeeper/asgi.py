"""The ASGI type aliases and small helpers shared by every face: replies, body reads, lifespan."""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any, Protocol

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]
"""ASGI headers: (lower-case name, value) byte pairs, in order."""
HeaderSeq = Sequence[tuple[bytes, bytes]]


class Lifecycle(Protocol):
    """What starts and stops with the ASGI lifespan (the store, the grant loop)."""

    async def start(self) -> None:
        """Start (idempotent)."""
        ...

    async def stop(self) -> None:
        """Stop and release everything (idempotent)."""
        ...


NO_STORE = (b"cache-control", b"no-store, private")
# One encoder for every answer: json.dumps with options builds a new encoder on each call.
_JSON = json.JSONEncoder(separators=(",", ":"))


class BodyTooLarge(Exception):
    """The request body exceeds the configured limit."""


class ClientGone(Exception):
    """The client disconnected before its request body arrived."""


def header(scope: Scope, name: bytes) -> bytes | None:
    """The first value of a request header (name in lower case)."""
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def without_parameter(query: bytes, name: bytes) -> bytes:
    """The query string with every `name` parameter removed, the others kept as they came."""
    if name not in query:
        return query
    return b"&".join(p for p in query.split(b"&") if p.partition(b"=")[0] != name)


# Accept headers up to this long have their answer remembered (`_ranked`): browsers and
# clients send a few distinct ones.
_ACCEPT_MAX_LEN = 512


def prefers_json(accept: bytes) -> bool:
    """Whether Accept ranks application/json above text/html: by q, then by position."""
    return _ranked(accept) if len(accept) <= _ACCEPT_MAX_LEN else _rank_json(accept)


def _rank_json(accept: bytes) -> bool:
    ranks: dict[bytes, tuple[float, int]] = {}
    for position, item in enumerate(accept.lower().split(b",")):
        media, *params = (part.strip() for part in item.split(b";"))
        if media in (b"application/json", b"text/html") and media not in ranks:
            try:
                quality = float(next((p[2:] for p in params if p.startswith(b"q=")), b"1"))
            except ValueError:
                quality = 0.0
            ranks[media] = (quality, -position)
    as_json = ranks.get(b"application/json", (0.0, 0))
    return as_json[0] > 0 and as_json > ranks.get(b"text/html", (0.0, 0))


_ranked = functools.lru_cache(maxsize=512)(_rank_json)


def wants_json(scope: Scope) -> bool:
    """True for fetch/XHR requests and those that rank JSON above HTML in Accept."""
    if prefers_json(header(scope, b"accept") or b""):
        return True
    return header(scope, b"x-requested-with") == b"XMLHttpRequest"


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The whole request body, refusing more than `limit` bytes before reading them all."""
    declared = header(scope, b"content-length")
    # A Content-Length of thousands of digits is too large before int() has to read it.
    if (
        declared is not None
        and declared.isdigit()
        and (len(declared) > 18 or int(declared) > limit)
    ):
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def send_bytes(
    send: Send, status: int, body: bytes, content_type: bytes, headers: HeaderSeq = ()
) -> None:
    """Send a complete response with a known length and `Cache-Control: no-store`."""
    raw = [
        (b"content-type", content_type),
        (b"content-length", b"%d" % len(body)),
        NO_STORE,
        *headers,
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def send_json(send: Send, status: int, obj: object, headers: HeaderSeq = ()) -> None:
    """Send a JSON response."""
    body = _JSON.encode(obj).encode()
    await send_bytes(send, status, body, b"application/json", headers)


async def send_error(
    send: Send, status: int, code: str, message: str, headers: HeaderSeq = ()
) -> None:
    """Send the API's error shape: `{"error": {"code", "message"}}`."""
    await send_json(send, status, {"error": {"code": code, "message": message}}, headers)


async def serve_lifespan(lifecycle: Lifecycle, receive: Receive, send: Send) -> None:
    """Run the ASGI lifespan protocol for a lifecycle with no app of its own around it."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                await lifecycle.start()
            except Exception as exc:
                await send({"type": "lifespan.startup.failed", "message": str(exc)})
                return
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await lifecycle.stop()
            await send({"type": "lifespan.shutdown.complete"})
            return
