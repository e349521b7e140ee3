"""The operator API's route table: rooms, modes, settings, revoke, audit, events; their schemas."""

from __future__ import annotations

from gatekeeper.store.base import MAX_MESSAGE, Mode
from gatekeeper.web.api_routes import BAD_BODY, EVENT, NOT_ALLOWED, ROOM, SESSION_ID, TOO_LARGE
from gatekeeper.web.openapi import (
    OPENAPI_PATH,
    Operation,
    Query,
    Reply,
    Schema,
    Table,
    error,
    ref,
)

ROOM_NUMBERS = {
    "capacity": (1, 10_000_000),
    "batchSize": (1, 100_000),
    "newVisitorsPerMinute": (0, 100_000_000),
    "maxSessionSeconds": (0, 30 * 86_400),
}
"""A room's live numbers: JSON field → (lowest, highest)."""
RATE_MS = (10, 60_000)
"""Bounds of the live grant-loop interval."""
MODE_ACTIONS = {
    "pause": Mode.PAUSED,
    "resume": Mode.OPEN,
    "queue-all": Mode.QUEUE_ALL,
    "passthrough": Mode.PASSTHROUGH,
    # Sold out: joins refused, waiters sent away; `reopen` is `resume` under the name that
    # undoes a close (the mode is one field: any mode action replaces `closed`).
    "close": Mode.CLOSED,
    "reopen": Mode.OPEN,
}
LIMIT = Query(
    "limit", "How many (clamped to 1..1000).",
    {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
)  # fmt: skip
OFFSET = Query(
    "offset", "The first rank (clamped to 0..100000000).",
    {"type": "integer", "minimum": 0, "maximum": 100_000_000, "default": 0},
)  # fmt: skip


def action_id(action: str) -> str:
    """The operationId of a mode action: `queue-all` → `queueAllRoom`."""
    head, *rest = action.split("-")
    return head + "".join(part.title() for part in rest) + "Room"


def _number(lo: int, hi: int) -> Schema:
    # JSON Schema counts 5.0 as an integer; the API takes integers written as such.
    return {"type": ["integer", "null"], "minimum": lo, "maximum": hi,
            "description": "An integer without a fraction or exponent, or null."}  # fmt: skip


_COUNT: Schema = {"type": "integer", "minimum": 0}
_MODE: Schema = {"type": "string", "enum": [m.value for m in Mode]}
ROOM_VIEW: Schema = {
    "type": "object",
    "description": "A room's live figures and the numbers in force; `controls` holds only what "
    "operators set live.",
    "required": [
        "room", "mode", "waiting", "active", "capacity", "batchSize", "newVisitorsPerMinute",
        "maxSessionSeconds", "grantRatePerSecond", "oldestWaiterAgeSeconds", "controls",
    ],
    "additionalProperties": False,
    "properties": {
        "room": {"type": "string"},
        "mode": _MODE,
        "waiting": _COUNT,
        "active": _COUNT,
        "capacity": _COUNT,
        "batchSize": _COUNT,
        "newVisitorsPerMinute": _COUNT,
        "maxSessionSeconds": _COUNT,
        "grantRatePerSecond": {"type": "number", "minimum": 0},
        "oldestWaiterAgeSeconds": {"type": ["integer", "null"], "minimum": 0},
        "controls": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}  # fmt: skip
ROOM_PATCH: Schema = {
    "type": "object",
    "description": "Any of these; null goes back to the configured value.",
    "additionalProperties": False,
    "properties": {
        **{name: _number(lo, hi) for name, (lo, hi) in ROOM_NUMBERS.items()},
        "message": {"type": ["string", "null"], "maxLength": MAX_MESSAGE},
        "mode": {"enum": [*(m.value for m in Mode), None]},
    },
}
SETTINGS: Schema = {
    "type": "object",
    "required": ["rateMs"],
    "additionalProperties": False,
    "properties": {"rateMs": _number(*RATE_MS)},
}
SETTINGS_PATCH: Schema = {
    "type": "object",
    "description": "`rateMs`: null = the configured `rate-ms`; other fields are ignored.",
    "properties": {"rateMs": _number(*RATE_MS)},
}
EPOCH_MS = (946_684_800_000, 7_258_118_400_000)
"""The instants an event may name, in epoch ms: 2000 to 2200 (`config.events.parse_instant`)."""
_INSTANT: Schema = {
    "description": "ISO 8601 with an offset, or epoch milliseconds; between 2000 and 2200.",
    "anyOf": [
        {"type": "string", "format": "date-time"},
        {"type": "integer", "minimum": EPOCH_MS[0], "maximum": EPOCH_MS[1]},
    ],
}
SCHEDULE: Schema = {
    "type": "object",
    "required": ["startsAt"],
    "additionalProperties": False,
    "properties": {
        "prequeueOpensAt": {"anyOf": [_INSTANT, {"type": "null"}]},
        "startsAt": _INSTANT,
        "endsAt": {"anyOf": [_INSTANT, {"type": "null"}]},
        "shuffle": {"type": "boolean", "default": True},
    },
}
DRAW: Schema = {
    "type": "object",
    "required": ["room", "drawn", "total", "offset", "entries"],
    "additionalProperties": False,
    "properties": {
        "room": {"type": "string"},
        "drawn": {"type": "boolean"},
        "total": _COUNT,
        "offset": _COUNT,
        "entries": {
            "type": "array",
            "description": "[session id, rank] from rank `offset`.",
            # Not prefixItems: schemathesis 4 mistakes it for draft 4's tuple `items`.
            "items": {"type": "array", "items": {"type": ["string", "integer"]},
                      "minItems": 2, "maxItems": 2},
        },
    },
}  # fmt: skip
AUDIT_ENTRY: Schema = {
    "type": "object",
    "required": ["ts", "action", "actor"],
    "properties": {
        "ts": {"type": "string", "pattern": "^[0-9]+$", "description": "Epoch ms."},
        "action": {
            "type": "string",
            "enum": ["room", "settings", "revoke", "event", "event-removed"],
        },
        "room": {"type": "string"},
        "session": {"type": "string"},
        "detail": {"type": "string", "description": "The change, as JSON."},
        "actor": {"type": "string"},
    },
    "additionalProperties": {"type": "string"},
}


def _list(key: str, item: Schema) -> Schema:
    return {"type": "object", "required": [key], "additionalProperties": False,
            "properties": {key: {"type": "array", "items": item}}}  # fmt: skip


_UNAVAILABLE = error(
    "The store is down; try again after Retry-After.", "store_unavailable", headers=("Retry-After",)
)
_COMMON = {
    401: error("No or a wrong bearer token.", "unauthorized", headers=("WWW-Authenticate",)),
    404: error("No such room or session, or the admin API is off (no token set).", "not_found"),
    503: _UNAVAILABLE,
}
_TEMPLATED = {**_COMMON, 405: NOT_ALLOWED}
_WITH_BODY = {**_TEMPLATED, 400: BAD_BODY, 413: TOO_LARGE}
_VIEW = Reply("The room.", ref("Room"))
_NONE = Reply("Done.")


def _mode_action(action: str, mode: Mode) -> Operation:
    summary = f"Set the room's mode to {mode.value}."
    return Operation("POST", f"/rooms/{{room}}:{action}", action_id(action), summary,
                     {200: _VIEW, **_TEMPLATED})  # fmt: skip


TABLE = Table(
    title="gatekeeper operator API",
    description="Live room figures and controls, revoke, audit log, on-sale events "
    "(docs/operations.md). Every call needs `Authorization: Bearer <admin token>`.",
    operations=(
        Operation("GET", "/rooms", "listRooms", "Every room with live figures.",
                  {200: Reply("The rooms.", _list("rooms", ref("Room"))), **_COMMON}),
        Operation("GET", "/rooms/{room}", "getRoom", "One room.", {200: _VIEW, **_TEMPLATED}),
        Operation("PATCH", "/rooms/{room}", "patchRoom", "Change a room's numbers, message, mode.",
                  {200: _VIEW, **_WITH_BODY}, body=ref("RoomPatch")),
        *(_mode_action(action, mode) for action, mode in MODE_ACTIONS.items()),
        Operation("PUT", "/rooms/{room}/event", "putEvent", "Schedule the room's on-sale event.",
                  {200: Reply("The event.", ref("Event")), **_WITH_BODY,
                   409: error("The pre-queue is drawn: the event is fixed.", "already_drawn")},
                  body=ref("Schedule"), body_required=True),
        Operation("GET", "/rooms/{room}/event", "getEvent", "The room's event.",
                  {200: Reply("The event.", ref("Event")), **_TEMPLATED}),
        Operation("DELETE", "/rooms/{room}/event", "deleteEvent",
                  "Take the event off the room (its seed and draw too).",
                  {204: _NONE, **_TEMPLATED}),
        Operation("GET", "/rooms/{room}/draw", "getDraw", "A page of the drawn order.",
                  {200: Reply("The page.", ref("Draw")), **_TEMPLATED}, query=(OFFSET, LIMIT)),
        Operation("GET", "/settings", "getSettings", "The live grant-loop interval.",
                  {200: Reply("The settings.", ref("Settings")), **_COMMON}),
        Operation("PATCH", "/settings", "patchSettings", "Set the grant-loop interval.",
                  {200: Reply("The settings.", ref("Settings")), **_COMMON, 400: BAD_BODY,
                   413: TOO_LARGE}, body=ref("SettingsPatch")),
        Operation("POST", "/sessions/{sessionId}:revoke", "revokeSession",
                  "End a session (EXPIRED, reason revoked) and free its place.",
                  {204: _NONE, **_TEMPLATED}),
        Operation("GET", "/audit", "getAudit", "The audit log, newest first.",
                  {200: Reply("The entries.", _list("entries", ref("AuditEntry"))), **_COMMON},
                  query=(LIMIT,)),
        Operation("GET", OPENAPI_PATH, "getOpenAPI", "This document.",
                  {200: Reply("OpenAPI 3.1.", {"type": "object"}), **_COMMON}),
    ),
    parameters={"room": ROOM, "sessionId": SESSION_ID},
    schemas={
        "Room": ROOM_VIEW, "RoomPatch": ROOM_PATCH, "Settings": SETTINGS,
        "SettingsPatch": SETTINGS_PATCH, "Schedule": SCHEDULE, "Event": EVENT, "Draw": DRAW,
        "AuditEntry": AUDIT_ENTRY,
    },
    bearer=True,
)  # fmt: skip
