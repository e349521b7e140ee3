"""Admitted visitors' WebSockets: the pass passed on at the upgrade, closed when the session ends.

A WebSocket outlives the request that opened it, so its pass is not enough: every session with
open sockets on this replica is polled once per pass TTL (one store call per session however
many sockets it has, one task per session), and when the store no longer says ACTIVE its
sockets are closed with 1008 and the session's end as the reason. A room in queue-all closes
them with 1013 (try again later); so does a store that fails two checks in a row under the
closed failure policy. A poll is the visitor's heartbeat, so an open socket keeps its session
from idling out; `max-session` still ends it.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress

from gatekeeper.asgi import ASGIApp, Message, Receive, Scope, Send
from gatekeeper.config.settings import FailurePolicy, Settings
from gatekeeper.errors import StoreError
from gatekeeper.gate.admission import Admission, Admitted
from gatekeeper.metrics import Metrics
from gatekeeper.store.base import Mode, Status

log = logging.getLogger("gatekeeper.gate")

POLICY = 1008
"""The close code of a socket whose session ended ("policy violation")."""
TRY_AGAIN = 1013
"""The close code of a socket held back (queue-all, store down): "try again later"."""
# A check past a session's `max-session` end is this late at most, so that it finds it ended.
_SLACK_S = 0.05


class GateClosed(OSError):
    """The gate closed this socket: what the app's `send` raises afterwards, as an ASGI server
    does once its client is gone."""


class _Socket:
    """One forwarded WebSocket: the app's `send` passes through it, and the gate may close it."""

    __slots__ = ("_send", "_cookie", "_closed", "_closing")

    def __init__(self, send: Send, cookie: tuple[bytes, bytes] | None) -> None:
        self._send = send
        self._cookie = cookie
        self._closed = False
        self._closing: asyncio.Task[None] | None = None

    async def send(self, message: Message) -> None:
        if self._closed:
            raise GateClosed("the gate closed this WebSocket")
        kind = message["type"]
        if kind == "websocket.accept" and self._cookie is not None:
            # A new or renewed pass comes with the upgrade's answer, as with any response.
            message = {**message, "headers": [*message.get("headers", ()), self._cookie]}
        elif kind == "websocket.close":
            self._closed = True
        await self._send(message)

    def close(self, code: int, reason: str) -> None:
        """Close the socket (once): the client gets the close frame (a 403 before the upgrade),
        and the app's next receive the disconnect, with this code and reason."""
        if self._closed:
            return
        self._closed = True
        self._closing = asyncio.ensure_future(
            self._send({"type": "websocket.close", "code": code, "reason": reason})
        )
        self._closing.add_done_callback(_retrieve)

    async def finish(self) -> None:
        """Wait for the close this socket's gate is sending, if any."""
        if self._closing is not None:
            with suppress(Exception):
                await self._closing


def _retrieve(task: asyncio.Task[None]) -> None:
    # A close to a client that has gone fails: nothing to do about it, nothing to log.
    if not task.cancelled():
        task.exception()


class _Session:
    """The open sockets of one session on this replica, and the task that checks it."""

    __slots__ = ("room", "sockets", "task")

    def __init__(self, room: str) -> None:
        self.room = room
        self.sockets: set[_Socket] = set()
        self.task: asyncio.Task[None] | None = None


class Sockets:
    """Runs the app for admitted WebSockets and closes them when their session ends."""

    def __init__(self, admission: Admission, metrics: Metrics, settings: Settings) -> None:
        self._admission = admission
        self._metrics = metrics
        self._every_s = settings.gate.cookie.pass_ttl
        self._fail_open = settings.gate.failure_policy is FailurePolicy.OPEN
        self._sessions: dict[str, _Session] = {}

    @property
    def open_sessions(self) -> int:
        """Sessions with open sockets on this replica (each checked once per pass TTL)."""
        return len(self._sessions)

    async def run(
        self, app: ASGIApp, scope: Scope, receive: Receive, send: Send, admitted: Admitted
    ) -> None:
        """Run `app` for the WebSocket of `admitted`, watched until it ends."""
        socket = _Socket(send, admitted.set_cookie)
        session = self._sessions.get(admitted.session_id)
        if session is None:
            session = self._sessions[admitted.session_id] = _Session(admitted.room)
            session.task = asyncio.create_task(self._watch(admitted.session_id, session))
        session.sockets.add(socket)
        try:
            await app(scope, receive, socket.send)
        finally:
            session.sockets.discard(socket)
            if not session.sockets and self._sessions.get(admitted.session_id) is session:
                del self._sessions[admitted.session_id]
                if session.task is not None:
                    session.task.cancel()
            await socket.finish()

    def end(self, session_id: str, reason: str) -> None:
        """Close the session's sockets now: it ended through this replica (a leave)."""
        session = self._sessions.pop(session_id, None)
        if session is not None:
            self._close(session, POLICY, f"session ended: {reason}")

    def _close(self, session: _Session, code: int, reason: str) -> None:
        if session.task is not None and session.task is not asyncio.current_task():
            session.task.cancel()
        for socket in list(session.sockets):
            socket.close(code, reason)

    async def _watch(self, session_id: str, session: _Session) -> None:
        """Check the session once per pass TTL until its sockets close or it ends."""
        admission, rooms = self._admission, self._admission.rooms
        failures = 0
        delay = self._every_s
        while True:
            await asyncio.sleep(delay)
            delay = self._every_s
            mode = rooms.mode(session.room)
            if mode is Mode.QUEUE_ALL:
                return self._stop(session_id, session, TRY_AGAIN, "room held")
            if mode is Mode.PASSTHROUGH:
                continue  # the gate is off: nobody is held back, sockets included
            try:
                ticket = await admission.store.poll(session_id, rooms.policy(session.room))
            except StoreError as exc:
                self._metrics.store_errors.labels("gate").inc()
                failures += 1
                if failures >= 2 and not self._fail_open:
                    log.warning("store unavailable, WebSockets of %s closed: %s", session_id, exc)
                    return self._stop(session_id, session, TRY_AGAIN, "store unavailable")
                continue
            failures = 0
            if ticket is not None:
                self._metrics.polled(ticket)
            if ticket is None or ticket.status is not Status.ACTIVE:
                why = ticket.reason.value if ticket is not None and ticket.reason else "ended"
                if ticket is not None and ticket.status is Status.WAITING:
                    why = "waiting"
                return self._stop(session_id, session, POLICY, f"session ended: {why}")
            if ticket.ends_at is not None:
                left_s = (ticket.ends_at - admission.clock()) / 1000 + _SLACK_S
                delay = max(0.0, min(delay, left_s))

    def _stop(self, session_id: str, session: _Session, code: int, reason: str) -> None:
        if self._sessions.get(session_id) is session:
            del self._sessions[session_id]
        self._close(session, code, reason)
