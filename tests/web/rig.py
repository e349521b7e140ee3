"""An API-only app with the admin API on, and a raw ASGI caller for it.

The raw caller puts whatever a test likes into the scope (a path with lone surrogates, any
method, a bogus Content-Length), which no HTTP client can send, and checks the answer follows
the ASGI protocol: one `http.response.start`, then body messages, the last without more_body.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from gatekeeper.app import Service, create_app
from gatekeeper.asgi import Message
from gatekeeper.clock import Clock
from gatekeeper.config import load_config
from gatekeeper.store.base import Store

TOKEN = "t" * 32
AUTH = (b"authorization", f"Bearer {TOKEN}".encode())
API = "/api/waiting-room"
ADMIN = "/_gatekeeper/admin"
TEXT_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
"""Paths answered in text (health and metrics), bare or under the static prefix."""


def api_only_app(store: Store, clock: Clock) -> Service:
    """API-only mode (no origin) with the operator API enabled by WAITINGROOM_ADMIN_TOKEN."""
    settings = load_config(
        None,
        environ={"WAITINGROOM_ADMIN_TOKEN": TOKEN},
        overrides={"waitingroom.processing.capacity": 2},
    )
    app = create_app(settings, store=store, clock=clock)
    assert isinstance(app, Service)
    return app


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[bytes, bytes]
    body: bytes


async def call(
    app: Service,
    method: str,
    path: str,
    *,
    query: bytes = b"",
    headers: Sequence[tuple[bytes, bytes]] = (),
    body: bytes = b"",
) -> Reply:
    """One request straight into the ASGI app; the body arrives in two messages when long."""
    half = len(body) // 2 if len(body) > 64 else len(body)
    pending: list[Message] = [
        {"type": "http.request", "body": body[:half], "more_body": half < len(body)},
    ]
    if half < len(body):
        pending.append({"type": "http.request", "body": body[half:], "more_body": False})
    sent: list[Message] = []

    async def receive() -> Message:
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode("utf-8", "surrogatepass"),
        "query_string": query,
        "root_path": "",
        "headers": [(k.lower(), v) for k, v in headers],
        "client": ("127.0.0.1", 50000),
        "server": ("gk", 80),
    }
    await app(scope, receive, send)
    assert sent, f"no answer to {method} {path!r}"
    start, *bodies = sent
    assert start["type"] == "http.response.start"
    assert bodies and all(m["type"] == "http.response.body" for m in bodies)
    assert all(m.get("more_body", False) for m in bodies[:-1])
    assert not bodies[-1].get("more_body", False)
    return Reply(
        start["status"],
        {bytes(k): bytes(v) for k, v in start["headers"]},
        b"".join(m.get("body", b"") for m in bodies),
    )


def assert_sane(
    status: int, content_type: str, body: bytes, path: str, *, head: bool = False
) -> None:
    """No 5xx; JSON (the error shape on 4xx) wherever the route answers JSON (`head`: the
    client dropped the body of a HEAD answer, so only its type is checked)."""
    assert 200 <= status < 500, (status, path, body[:200])
    if status == 204:
        assert body == b""
        return
    if status == 200 and path.removeprefix("/_gatekeeper") in TEXT_PATHS:
        assert content_type.startswith("text/plain")
        return
    assert content_type == "application/json", (status, path, content_type)
    if head:
        return
    decoded = json.loads(body)
    if status >= 400:
        assert set(decoded) == {"error"}
        assert set(decoded["error"]) == {"code", "message"}
        assert all(isinstance(v, str) for v in decoded["error"].values())
