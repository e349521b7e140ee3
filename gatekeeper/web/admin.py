"""The operator API: live room figures and controls, revoke, audit log (bearer token)."""

from __future__ import annotations

import hmac
import json
import logging
import math
from typing import Any

from gatekeeper.asgi import Receive, Scope, Send, header, send_error, send_json
from gatekeeper.config.settings import Settings
from gatekeeper.core.rooms import MAX_SESSION_FIELD, Rooms
from gatekeeper.errors import StoreError, StoreFull
from gatekeeper.ids import ROOM_ID, room_of
from gatekeeper.metrics import Metrics
from gatekeeper.store.base import (
    MAX_MESSAGE,
    MESSAGE_FIELD,
    Control,
    EndReason,
    EventField,
    Mode,
    Store,
)
from gatekeeper.web.events import EventProblem, Events, parse_schedule
from gatekeeper.web.json_body import read_object

# JSON field → (store control field, bounds) of the live room settings.
log = logging.getLogger("gatekeeper.web.admin")

_FIELDS = {
    "capacity": (Control.CAPACITY, 1, 10_000_000),
    "batchSize": (Control.BATCH_SIZE, 1, 100_000),
    "newVisitorsPerMinute": (Control.PER_MINUTE, 0, 100_000_000),
    "maxSessionSeconds": (MAX_SESSION_FIELD, 0, 30 * 86_400),
}
_MODE_ACTIONS = {
    "pause": Mode.PAUSED,
    "resume": Mode.OPEN,
    "queue-all": Mode.QUEUE_ALL,
    "passthrough": Mode.PASSTHROUGH,
    # Sold out: joins refused, waiters sent away; `reopen` is `resume` under the name that
    # undoes a close (the mode is one field: any mode action replaces `closed`).
    "close": Mode.CLOSED,
    "reopen": Mode.OPEN,
}
_MAX_BODY = 4096
_MODES = frozenset(m.value for m in Mode)
_SHOWN_KEY = 64  # an unknown field is echoed back in the error, cut to this many characters


class AdminAPI:
    """ASGI app under the admin prefix; answers 404 for everything when no token is set."""

    def __init__(
        self, store: Store, rooms: Rooms, settings: Settings, metrics: Metrics, events: Events
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.rooms = rooms
        self.prefix = settings.admin.prefix
        token = settings.admin_token
        self._token = f"Bearer {token}".encode() if token else None
        self._events = events

    def handles(self, path: str) -> bool:
        """True when `path` belongs to the admin API."""
        return path == self.prefix or path.startswith(self.prefix + "/")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._token is None:
            return await send_error(send, 404, "not_found", "the admin API is disabled")
        given = header(scope, b"authorization") or b""
        if not hmac.compare_digest(given, self._token):
            return await send_error(
                send, 401, "unauthorized", "bearer token required",
                [(b"www-authenticate", b'Bearer realm="gatekeeper"')],
            )  # fmt: skip
        try:
            await self._route(scope, receive, send)
        except StoreError as exc:
            await send_error(send, 503, "store_unavailable", str(exc), [(b"retry-after", b"2")])

    async def _route(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"][len(self.prefix) :]
        method: str = scope["method"]
        actor = _actor(scope)
        if path == "/rooms" and method == "GET":
            names = sorted(set(await self.store.rooms()) | self.rooms.configured)
            return await send_json(send, 200, {"rooms": [await self._view(r) for r in names]})
        if path.startswith("/rooms/") and path.endswith(("/event", "/draw")):
            return await self._event(scope, receive, send, path[len("/rooms/") :], actor)
        if path.startswith("/rooms/"):
            room, _, action = path[len("/rooms/") :].partition(":")
            if not ROOM_ID.fullmatch(room):
                return await send_error(send, 404, "not_found", "no such room")
            if not action and method == "GET":
                return await send_json(send, 200, await self._view(room))
            if not action and method == "PATCH":
                return await self._patch(scope, receive, send, room, actor)
            if action in _MODE_ACTIONS and method == "POST":
                mode = _MODE_ACTIONS[action]
                await self._change(room, {Control.MODE: None if mode is Mode.OPEN else mode}, actor)
                return await send_json(send, 200, await self._view(room))
        if path == "/settings" and method == "GET":
            return await send_json(send, 200, await self._settings())
        if path == "/settings" and method == "PATCH":
            body = await self._body(scope, receive, send)
            if body is None:
                return
            rate = body.get("rateMs", ...)
            if rate is not None and rate is not ... and not _int_in(rate, 10, 60_000):
                return await send_error(send, 400, "bad_request", "rateMs: 10..60000 or null")
            if rate is not ...:
                await self.store.set_rate_ms(rate)
                await self._audit({"action": "settings", "detail": _dump(body), **actor})
            return await send_json(send, 200, await self._settings())
        if path.startswith("/sessions/") and path.endswith(":revoke") and method == "POST":
            session_id = path[len("/sessions/") : -len(":revoke")]
            owner = room_of(session_id)
            if owner is None or not await self.store.leave(
                session_id, self.rooms.policy(owner), revoke=True
            ):
                return await send_error(send, 404, "not_found", "unknown session")
            self.metrics.leaves.labels(owner, "revoke").inc()
            self.metrics.session_ended(owner, EndReason.REVOKED)
            await self._audit({"action": "revoke", "room": owner, "session": session_id, **actor})
            await send({"type": "http.response.start", "status": 204, "headers": []})
            return await send({"type": "http.response.body", "body": b""})
        if path == "/audit" and method == "GET":
            limit = _query_int(scope, b"limit", 100, 1, 1000)
            return await send_json(send, 200, {"entries": await self.store.audit_log(limit)})
        await send_error(send, 404, "not_found", "no such endpoint or method")

    async def _event(
        self, scope: Scope, receive: Receive, send: Send, target: str, actor: dict[str, str]
    ) -> None:
        """`/rooms/{room}/event` (PUT, GET, DELETE) and `/rooms/{room}/draw` (GET)."""
        room, _, what = target.rpartition("/")
        method: str = scope["method"]
        if not ROOM_ID.fullmatch(room):
            return await send_error(send, 404, "not_found", "no such room")
        if what == "draw" and method == "GET":
            offset = _query_int(scope, b"offset", 0, 0, 100_000_000)
            page = await self._events.draw(room, offset, _query_int(scope, b"limit", 100, 1, 1000))
            if page is None:
                return await send_error(send, 404, "not_found", "the room has no event")
            return await send_json(send, 200, page)
        if what != "event":
            return await send_error(send, 404, "not_found", "no such endpoint or method")
        if method == "PUT":
            body = await self._body(scope, receive, send)
            if body is None:
                return
            try:
                await self._events.schedule(room, parse_schedule(body))
            except EventProblem as problem:
                return await send_error(send, problem.status, problem.code, str(problem))
            await self._audit({"action": "event", "room": room, "detail": _dump(body), **actor})
        elif method == "DELETE":
            await self._events.remove(room)
            await self._audit({"action": "event-removed", "room": room, **actor})
            await send({"type": "http.response.start", "status": 204, "headers": []})
            return await send({"type": "http.response.body", "body": b""})
        elif method != "GET":
            return await send_error(send, 405, "method_not_allowed", "GET, PUT or DELETE")
        view = await self._events.public(room)
        if view is None:
            return await send_error(send, 404, "not_found", "the room has no event")
        await send_json(send, 200, view)

    async def _patch(
        self, scope: Scope, receive: Receive, send: Send, room: str, actor: dict[str, str]
    ) -> None:
        body = await self._body(scope, receive, send)
        if body is None:
            return
        changes: dict[str, str | None] = {}
        for key, value in body.items():
            if key == Control.MODE:
                if value is not None and not (isinstance(value, str) and value in _MODES):
                    modes = ", ".join(m.value for m in Mode)
                    return await send_error(send, 400, "bad_request", f"mode: one of {modes}")
                changes[Control.MODE] = None if value in (None, Mode.OPEN) else str(value)
            elif key == MESSAGE_FIELD:
                if value is not None and not (isinstance(value, str) and len(value) <= MAX_MESSAGE):
                    problem = f"message: text of {MAX_MESSAGE} characters at most, or null"
                    return await send_error(send, 400, "bad_request", problem)
                # Empty (or blank) clears it, as null does.
                changes[MESSAGE_FIELD] = (value or "").strip() or None
            elif key in _FIELDS:
                field, lo, hi = _FIELDS[key]
                if value is not None and not _int_in(value, lo, hi):
                    return await send_error(
                        send, 400, "bad_request", f"{key}: an integer {lo}..{hi}, or null"
                    )
                changes[field] = None if value is None else str(value)
            else:
                shown = key if len(key) <= _SHOWN_KEY else key[:_SHOWN_KEY] + "…"
                return await send_error(send, 400, "bad_request", f"unknown field {shown!r}")
        await self._change(room, changes, actor)
        await send_json(send, 200, await self._view(room))

    async def _change(
        self, room: str, changes: dict[str, str | None], actor: dict[str, str]
    ) -> None:
        await self.store.set_controls(room, changes)
        self.rooms.set_live(room, await self.store.controls(room))
        entry = {"action": "room", "room": room, "detail": _dump(changes), **actor}
        await self._audit(entry)

    async def _audit(self, entry: dict[str, str]) -> None:
        try:
            await self.store.audit(entry)
        except StoreFull as exc:
            # At maxmemory the change itself went through (its script may run there); an
            # operator must not be told it failed because its log line did not fit.
            log.warning("operator action applied but not audited: %s (%s)", entry, exc)

    async def _body(self, scope: Scope, receive: Receive, send: Send) -> dict[str, Any] | None:
        """The JSON object body, or None once answered (400/413; see json_body)."""
        return await read_object(scope, receive, send, _MAX_BODY)

    async def _view(self, room: str) -> dict[str, object]:
        counts = await self.store.counts(room)
        controls = await self.store.controls(room)
        self.rooms.set_live(room, controls)
        effective = self.rooms.effective(room)
        oldest = None
        if counts.oldest_join_ms:
            oldest = max(0, math.floor((self.rooms.clock() - counts.oldest_join_ms) / 1000))
        return {
            "room": room,
            "mode": self.rooms.mode(room).value,
            "waiting": counts.waiting,
            "active": counts.active,
            "capacity": effective.capacity,
            "batchSize": effective.batch_size,
            "newVisitorsPerMinute": effective.per_minute,
            "maxSessionSeconds": self.rooms.policy(room).max_session_ms // 1000,
            "grantRatePerSecond": round(counts.grant_rate, 3),
            "oldestWaiterAgeSeconds": oldest,
            # The draw's seed stays secret until the draw, from operators too.
            "controls": {k: v for k, v in controls.items() if k != EventField.SEED},
        }

    async def _settings(self) -> dict[str, object]:
        return {"rateMs": await self.store.rate_ms()}


def _actor(scope: Scope) -> dict[str, str]:
    client = scope.get("client")
    return {"actor": f"admin@{client[0]}" if client else "admin"}


def _dump(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True)


def _int_in(value: object, lo: int, hi: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi


def _query_int(scope: Scope, name: bytes, default: int, lo: int, hi: int) -> int:
    for pair in bytes(scope.get("query_string", b"")).split(b"&"):
        key, _, value = pair.partition(b"=")
        if key == name and value.isdigit():  # ASCII digits only: bytes.isdigit
            digits = value.lstrip(b"0") or b"0"
            if len(digits) > len(str(hi)):  # no int() of a 5,000-digit string: it is above hi
                return hi
            return max(lo, min(hi, int(digits)))
    return default
