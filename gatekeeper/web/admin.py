"""The operator API: live room figures and controls, revoke, audit log (bearer token)."""

from __future__ import annotations

import hmac
import json
import logging
import math
from typing import Any

from gatekeeper.asgi import Receive, Scope, Send, header, send_bytes, send_error, send_json
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
from gatekeeper.web.admin_routes import (
    LIMIT,
    MODE_ACTIONS,
    OFFSET,
    RATE_MS,
    ROOM_NUMBERS,
    TABLE,
    action_id,
)
from gatekeeper.web.events import EventProblem, Events, parse_schedule
from gatekeeper.web.json_body import read_object
from gatekeeper.web.openapi import Handler, Query, Router, encoded

log = logging.getLogger("gatekeeper.web.admin")

# JSON field → store control field of a room's live numbers (bounds: admin_routes).
_CONTROLS = {
    "capacity": Control.CAPACITY,
    "batchSize": Control.BATCH_SIZE,
    "newVisitorsPerMinute": Control.PER_MINUTE,
    "maxSessionSeconds": MAX_SESSION_FIELD,
}
_MAX_BODY = 4096
_MODES = frozenset(m.value for m in Mode)
_SHOWN_KEY = 64  # an unknown field is echoed back in the error, cut to this many characters
_NO_CONTENT = {"type": "http.response.start", "status": 204, "headers": []}


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
        self._router = Router(TABLE, self._handlers())
        self._spec: bytes | None = None

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
        found = self._router.match(scope["path"][len(self.prefix) :])
        if found is None:
            return await send_error(send, 404, "not_found", "no such endpoint")
        route, param = found
        handler = route.handlers.get(scope["method"])
        if handler is None:
            allow = [(b"allow", route.allow)]
            return await send_error(send, 405, "method_not_allowed", "method not allowed", allow)
        try:
            await handler(scope, receive, send, param)
        except StoreError as exc:
            await send_error(send, 503, "store_unavailable", str(exc), [(b"retry-after", b"2")])

    def _handlers(self) -> dict[str, Handler]:
        """The handler of each operation of `admin_routes.TABLE` (a room's check its name)."""
        room = self._in_room
        found: dict[str, Handler] = {
            "listRooms": self._list,
            "getRoom": room(self._get),
            "patchRoom": room(self._patch),
            "putEvent": room(self._put_event),
            "getEvent": room(self._get_event),
            "deleteEvent": room(self._delete_event),
            "getDraw": room(self._draw),
            "getSettings": self._get_settings,
            "patchSettings": self._patch_settings,
            "revokeSession": self._revoke,
            "getAudit": self._audit_log,
            "getOpenAPI": self._openapi,
        }
        for action, mode in MODE_ACTIONS.items():
            found[action_id(action)] = room(self._set_mode(mode))
        return found

    def _in_room(self, handler: Handler) -> Handler:
        async def checked(scope: Scope, receive: Receive, send: Send, room: str) -> None:
            if not ROOM_ID.fullmatch(room):
                return await send_error(send, 404, "not_found", "no such room")
            await handler(scope, receive, send, room)

        return checked

    async def _list(self, scope: Scope, receive: Receive, send: Send, _: str) -> None:
        names = sorted(set(await self.store.rooms()) | self.rooms.configured)
        await send_json(send, 200, {"rooms": [await self._view(r) for r in names]})

    async def _get(self, scope: Scope, receive: Receive, send: Send, room: str) -> None:
        await send_json(send, 200, await self._view(room))

    def _set_mode(self, mode: Mode) -> Handler:
        change: dict[str, str | None] = {Control.MODE: None if mode is Mode.OPEN else mode}

        async def set_mode(scope: Scope, receive: Receive, send: Send, room: str) -> None:
            await self._change(room, dict(change), _actor(scope))
            await send_json(send, 200, await self._view(room))

        return set_mode

    async def _get_settings(self, scope: Scope, receive: Receive, send: Send, _: str) -> None:
        await send_json(send, 200, await self._settings())

    async def _patch_settings(self, scope: Scope, receive: Receive, send: Send, _: str) -> None:
        body = await self._body(scope, receive, send)
        if body is None:
            return
        rate = body.get("rateMs", ...)
        lo, hi = RATE_MS
        if rate is not None and rate is not ... and not _int_in(rate, lo, hi):
            return await send_error(send, 400, "bad_request", f"rateMs: {lo}..{hi} or null")
        if rate is not ...:
            await self.store.set_rate_ms(rate)
            await self._audit({"action": "settings", "detail": _dump(body), **_actor(scope)})
        await send_json(send, 200, await self._settings())

    async def _revoke(self, scope: Scope, receive: Receive, send: Send, session_id: str) -> None:
        owner = room_of(session_id)
        if owner is None or not await self.store.leave(
            session_id, self.rooms.policy(owner), revoke=True
        ):
            return await send_error(send, 404, "not_found", "unknown session")
        self.metrics.leaves.labels(owner, "revoke").inc()
        self.metrics.session_ended(owner, EndReason.REVOKED)
        actor = _actor(scope)
        await self._audit({"action": "revoke", "room": owner, "session": session_id, **actor})
        await _no_content(send)

    async def _audit_log(self, scope: Scope, receive: Receive, send: Send, _: str) -> None:
        limit = _query(scope, LIMIT)
        await send_json(send, 200, {"entries": await self.store.audit_log(limit)})

    async def _draw(self, scope: Scope, receive: Receive, send: Send, room: str) -> None:
        page = await self._events.draw(room, _query(scope, OFFSET), _query(scope, LIMIT))
        if page is None:
            return await send_error(send, 404, "not_found", "the room has no event")
        await send_json(send, 200, page)

    async def _put_event(self, scope: Scope, receive: Receive, send: Send, room: str) -> None:
        body = await self._body(scope, receive, send)
        if body is None:
            return
        try:
            await self._events.schedule(room, parse_schedule(body))
        except EventProblem as problem:
            return await send_error(send, problem.status, problem.code, str(problem))
        await self._audit({"action": "event", "room": room, "detail": _dump(body), **_actor(scope)})
        await self._get_event(scope, receive, send, room)

    async def _get_event(self, scope: Scope, receive: Receive, send: Send, room: str) -> None:
        view = await self._events.public(room)
        if view is None:
            return await send_error(send, 404, "not_found", "the room has no event")
        await send_json(send, 200, view)

    async def _delete_event(self, scope: Scope, receive: Receive, send: Send, room: str) -> None:
        await self._events.remove(room)
        await self._audit({"action": "event-removed", "room": room, **_actor(scope)})
        await _no_content(send)

    async def _openapi(self, scope: Scope, receive: Receive, send: Send, _: str) -> None:
        if self._spec is None:
            self._spec = encoded(TABLE, self.prefix)
        await send_bytes(send, 200, self._spec, b"application/json")

    async def _patch(self, scope: Scope, receive: Receive, send: Send, room: str) -> None:
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
            elif key in _CONTROLS:
                field, (lo, hi) = _CONTROLS[key], ROOM_NUMBERS[key]
                if value is not None and not _int_in(value, lo, hi):
                    return await send_error(
                        send, 400, "bad_request", f"{key}: an integer {lo}..{hi}, or null"
                    )
                changes[field] = None if value is None else str(value)
            else:
                shown = key if len(key) <= _SHOWN_KEY else key[:_SHOWN_KEY] + "…"
                return await send_error(send, 400, "bad_request", f"unknown field {shown!r}")
        await self._change(room, changes, _actor(scope))
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


async def _no_content(send: Send) -> None:
    await send(dict(_NO_CONTENT))
    await send({"type": "http.response.body", "body": b""})


def _actor(scope: Scope) -> dict[str, str]:
    client = scope.get("client")
    return {"actor": f"admin@{client[0]}" if client else "admin"}


def _dump(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True)


def _int_in(value: object, lo: int, hi: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi


def _query(scope: Scope, query: Query) -> int:
    """An integer query parameter, clamped to its schema's bounds (its default when absent)."""
    name, schema = query.name.encode(), query.schema
    lo, hi = int(schema["minimum"]), int(schema["maximum"])
    for pair in bytes(scope.get("query_string", b"")).split(b"&"):
        key, _, value = pair.partition(b"=")
        if key == name and value.isdigit():  # ASCII digits only: bytes.isdigit
            digits = value.lstrip(b"0") or b"0"
            if len(digits) > len(str(hi)):  # no int() of a 5,000-digit string: it is above hi
                return hi
            return max(lo, min(hi, int(digits)))
    return int(schema["default"])
