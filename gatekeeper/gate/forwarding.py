"""Forwarding a request to the app: the one request-header rewrite, and the response's way back
(the origin's commands: `leave` gives up the visitor's place, `close` closes the room); an
admitted WebSocket is watched until its session ends (`gate.sockets`)."""

from __future__ import annotations

import itertools
import json
import logging
import secrets
import time
from collections.abc import Awaitable

from gatekeeper.asgi import ASGIApp, Headers, HeaderSeq, Message, Receive, Scope, Send
from gatekeeper.config.settings import Settings
from gatekeeper.core.invitations import HEADER
from gatekeeper.errors import StoreError
from gatekeeper.gate.admission import STRIP, Admission, Admitted, Strip
from gatekeeper.gate.bounce import MARKER, unmark
from gatekeeper.gate.cookies import strip_cookie
from gatekeeper.gate.proof import make_proof
from gatekeeper.gate.sockets import Sockets
from gatekeeper.metrics import Metrics
from gatekeeper.store.base import Control, Mode, Operations

log = logging.getLogger("gatekeeper.gate")

COMMAND_HEADER = b"x-gatekeeper-command"
# The site's enqueue token, for the gate alone (core/invitations.py): never forwarded.
_ENQUEUE = HEADER
_LEAVE = b"leave"
_CLOSE = b"close"
_CLOSED = {Control.MODE.value: Mode.CLOSED.value}
REQUEST_ID = b"x-request-id"
_COOKIE = b"cookie"
_CONNECTION = b"connection"
_CACHE_CONTROL = b"cache-control"
_OWS = b" \t"
# Directives that let a shared cache store the response: `private` replaces them, and
# `no-store` comes with it (a bare `private` is ours; `private="set-cookie"` is quoted).
_SHARED = frozenset({b"public", b"s-maxage"})


class Forwarding:
    """Runs the app for a request the gate lets through, and counts the response.

    `operations` is where the origin's `close` command sets the room's mode; the clock is the
    admission's (the one clock its cookies are signed on)."""

    def __init__(
        self,
        app: ASGIApp,
        admission: Admission,
        metrics: Metrics,
        settings: Settings,
        operations: Operations,
    ) -> None:
        self.app = app
        self._admission = admission
        self._metrics = metrics
        self._operations = operations
        self._clock = admission.clock
        self._cookie = settings.gate.cookie.name
        self._proof_header = settings.gate.proof_header.lower().encode()
        self._proof_secret = settings.proof_secret.encode() if settings.proof_secret else None
        self._id_prefix = secrets.token_hex(10).encode()
        self._ids = itertools.count()
        # Only a gate with return paths bounces, so only it has a marker to take off.
        self._marker = MARKER if settings.gate.return_paths else None
        self.sockets = Sockets(admission, metrics, settings)

    def headers(self, headers: HeaderSeq, admitted: Admitted | None) -> Headers:
        """The request headers the app sees: our cookies, any client-made proof header and an
        enqueue token removed, Connection tokens naming the headers the gate sets dropped,
        the proof (when configured and `admitted`) and a request id (unless the client sent
        one) added. The one rewrite, for the hot path, the full path and bypass alike."""
        out: Headers = []
        has_id = False
        proof = self._proof_header
        known = STRIP if admitted is None else admitted.cookie
        for item in headers:
            key = item[0].lower()
            if key == _COOKIE:
                if isinstance(known, Strip):
                    out += strip_cookie((item,), self._cookie, family=True)
                elif known is not None:
                    out.append((item[0], known))
            elif key == REQUEST_ID:
                has_id = True
                out.append(item)
            elif key == _CONNECTION:
                kept = self._connection(item)
                if kept is not None:
                    out.append(kept)
            elif key != proof and key != _ENQUEUE:
                out.append(item)
        if self._proof_secret is not None and admitted is not None:
            value = make_proof(self._proof_secret, admitted.session_id, self._clock() // 1000)
            out.append((self._proof_header, value.encode()))
        if not has_id:
            out.append(self._request_id())
        return out

    def _connection(self, item: tuple[bytes, bytes]) -> tuple[bytes, bytes] | None:
        """A Connection header without the tokens naming headers the gate sets (None: none
        left). A proxy drops the headers Connection names, so a client naming the proof or
        the request id would have them removed after the gate added them."""
        value = item[1].lower()
        if self._proof_header not in value and REQUEST_ID not in value:
            return item
        ours = (self._proof_header, REQUEST_ID)
        kept = [t for t in item[1].split(b",") if t.strip(_OWS).lower() not in ours]
        rest = b",".join(kept).strip(_OWS)
        return (item[0], rest) if rest.strip(_OWS + b",") else None

    def _request_id(self) -> tuple[bytes, bytes]:
        # One id follows a request from the gate into the origin's logs: unique per process
        # start and request, and cheaper than uuid4 (no random bytes per request).
        return (REQUEST_ID, b"%s%012x" % (self._id_prefix, next(self._ids)))

    async def forward(self, scope: Scope, receive: Receive, send: Send, admitted: Admitted) -> None:
        """Run the app for an admitted visitor: pass a renewed cookie on, obey the origin's
        commands (leave, close) and done paths, and count the response (status, time)."""
        inner = dict(scope)
        inner["headers"] = self.headers(scope["headers"], admitted)
        if self._marker is not None and self._marker in scope.get("query_string", b""):
            inner["query_string"] = unmark(scope["query_string"])  # the bounce's, not the app's
        if scope["type"] != "http":
            return await self.sockets.run(self.app, inner, receive, send, admitted)
        started = time.perf_counter()
        status = 0
        leave: str | None = None
        close = False
        room, session_id = admitted.room, admitted.session_id
        done, cookie = admitted.done, admitted.set_cookie

        # A plain function handing back `send`'s awaitable: no extra coroutine frame for
        # every message of every admitted request.
        def send_through(message: Message) -> Awaitable[None]:
            nonlocal leave, close, status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = message.get("headers", ())
                commanded = False
                for key, _ in headers:
                    if key.lower() == COMMAND_HEADER:
                        commanded = True
                        break
                if commanded or cookie is not None or (done and 200 <= status < 300):
                    out: Headers = []
                    for key, value in headers:
                        if key.lower() != COMMAND_HEADER:
                            out.append((key, value))
                            continue
                        commands = {c.strip().lower() for c in value.split(b",")}
                        if _LEAVE in commands:
                            leave = "origin_command"
                        close = close or _CLOSE in commands
                    if done and 200 <= status < 300:
                        leave = leave or "done_path"
                    if leave is not None:
                        # The pass ends with the place: the next request starts over in line.
                        out = private(out)
                        out.append(self._admission.set_cookie(room, session_id, 0, scope))
                    elif cookie is not None:
                        out = private(out)
                        out.append(cookie)
                    message = {**message, "headers": out}
            return send(message)

        try:
            await self.app(inner, receive, send_through)
        finally:
            self._metrics.response(status or 500, time.perf_counter() - started)
        if leave is not None:
            await self._admission.release(room, session_id, leave)
            self.sockets.end(session_id, "left")
        if close:
            await self._close(room)

    async def _close(self, room: str) -> None:
        """The origin's close command (sold out): the room's mode becomes closed for every
        replica (the store refuses joins at once), audited as the origin's. The visitor whose
        response carried it keeps their place, as every admitted visitor does."""
        rooms = self._admission.rooms
        if rooms.mode(room) is Mode.CLOSED:
            return  # closed already, as far as this replica knows: an origin may repeat it
        try:
            await self._operations.set_controls(room, dict(_CLOSED))
        except StoreError as exc:
            self._metrics.store_errors.labels("gate").inc()
            log.warning("could not close room %s on the origin's command: %s", room, exc)
            return
        log.info("room %s closed on the origin's command", room)
        detail = json.dumps(_CLOSED, separators=(",", ":"))
        entry = {"action": "room", "room": room, "detail": detail, "actor": "origin"}
        try:
            await self._operations.audit(entry)
            # This replica stops joins at once (the others at their next grant tick; until
            # then the store refuses them).
            rooms.set_live(room, await self._operations.controls(room))
        except StoreError as exc:
            log.warning("room %s closed on the origin's command, then: %s", room, exc)

    async def bypass(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app for a path the gate does not protect (headers rewritten, counted)."""
        inner = dict(scope)
        inner["headers"] = self.headers(scope["headers"], None)
        if scope["type"] != "http":
            return await self.app(inner, receive, send)  # a WebSocket has no status to count
        started = time.perf_counter()
        status = 0

        def send_through(message: Message) -> Awaitable[None]:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            return send(message)

        try:
            await self.app(inner, receive, send_through)
        finally:
            self._metrics.response(status or 500, time.perf_counter() - started)


def private(headers: Headers) -> Headers:
    """The headers of a response carrying our Set-Cookie, made uncacheable by shared caches
    (which would hand the pass to everyone): `private` merged into Cache-Control; where the
    origin said `public` (or `s-maxage`) those go and `no-store` comes too, so that nothing
    meant for sharing keeps a copy. `private` alone when there was none: the browser's own
    cache (and its back/forward cache) may still keep the visitor's page."""
    out: Headers = []
    directives: list[bytes] = [b"private"]
    for key, value in headers:
        if key.lower() != _CACHE_CONTROL:
            out.append((key, value))
        elif b'"' in value:
            # A quoted argument may hold commas: rather than parse it, store nothing at all.
            directives.append(b"no-store")
        else:
            for directive in value.split(b","):
                directive = directive.strip(_OWS)
                name = directive.partition(b"=")[0].rstrip(_OWS).lower()
                if name in _SHARED:
                    directives.insert(1, b"no-store")
                elif directive and name != b"private":
                    directives.append(directive)
    out.append((_CACHE_CONTROL, b", ".join(dict.fromkeys(directives))))
    return out
