"""The JSON API's route table: join, poll, leave, the public event, and the schemas they answer."""

from __future__ import annotations

from gatekeeper.core.events import Phase
from gatekeeper.enqueue import MAX_USER_ID_CHARS, TokenProblem
from gatekeeper.errors import Refusal
from gatekeeper.ids import ROOM_ID
from gatekeeper.store.base import MAX_MESSAGE, EndReason, Status
from gatekeeper.web.json_body import MAX_DEPTH, MAX_INT_DIGITS
from gatekeeper.web.openapi import (
    OPENAPI_PATH,
    Operation,
    Reply,
    Schema,
    Table,
    error,
    ref,
)

MAX_EVENT_ID = 64
"""Longest `eventId` a join accepts (a room id's length)."""

_INSTANT: Schema = {"type": "string", "format": "date-time"}
_SECONDS: Schema = {"type": ["integer", "null"], "minimum": 0}
STATUS: Schema = {
    "type": "object",
    "description": "A session's place in line. `reason` is there once it ended, `endsAt` for an "
    "admitted session with a time cap, `message` when an operator set one, `startsAt` (and a null "
    "position) in a pre-queue.",
    "required": [
        "sessionId", "status", "position", "estimatedWaitSeconds", "estimatedWaitRange",
        "pollAfterMs", "phase",
    ],
    "additionalProperties": False,
    "properties": {
        "sessionId": {"type": "string", "description": "`<token>.<room>`, 128 random bits."},
        "status": {"type": "string", "enum": [s.value for s in Status]},
        "position": {**_SECONDS, "description": "Waiters ahead (at most); 0 unless WAITING."},
        "estimatedWaitSeconds": {**_SECONDS, "description": "Null before the first grant."},
        "estimatedWaitRange": {
            "type": ["array", "null"],
            "description": "[low, high] seconds, ~80% likely; null when no estimate exists.",
            "items": {"type": "integer", "minimum": 0},
            "minItems": 2,
            "maxItems": 2,
        },
        "pollAfterMs": {"type": "integer", "minimum": 0, "description": "Poll again after this."},
        "phase": {"type": "string", "enum": [p.value for p in Phase]},
        "message": {"type": "string", "maxLength": MAX_MESSAGE},
        "startsAt": _INSTANT,
        "endsAt": _INSTANT,
        "reason": {"enum": [*(r.value for r in EndReason), None]},
    },
}  # fmt: skip
EVENT: Schema = {
    "type": "object",
    "description": "A room's on-sale event as anyone may audit it (docs/onsale.md).",
    "required": [
        "room", "phase", "prequeueOpensAt", "startsAt", "endsAt", "shuffle", "commitment", "seed",
        "drawnAt", "entries",
    ],
    "additionalProperties": False,
    "properties": {
        "room": {"type": "string"},
        "phase": {"type": "string", "enum": [p.value for p in Phase]},
        "prequeueOpensAt": _INSTANT,
        "startsAt": _INSTANT,
        "endsAt": {"type": ["string", "null"], "format": "date-time"},
        "shuffle": {"type": "boolean"},
        "commitment": {"type": ["string", "null"], "description": "sha256 of the seed, hex."},
        "seed": {"type": ["string", "null"], "description": "Published once drawn."},
        "drawnAt": {"type": ["string", "null"], "format": "date-time"},
        "entries": {"type": "integer", "minimum": 0, "description": "Sessions in the pre-queue."},
    },
}  # fmt: skip
_TEXT_OR_NULL: Schema = {"type": ["string", "null"]}
JOIN: Schema = {
    "type": "object",
    "description": "Every field is optional, and so is the body. Like every body the APIs "
    f"read: nesting {MAX_DEPTH} deep at most, integers of {MAX_INT_DIGITS} digits at most, no "
    "lone surrogates.",
    "properties": {
        "eventId": {**_TEXT_OR_NULL, "maxLength": MAX_EVENT_ID, "description": "Names the room."},
        "userId": {**_TEXT_OR_NULL, "maxLength": MAX_USER_ID_CHARS},
        "enqueueToken": {**_TEXT_OR_NULL, "description": "From the site (docs/enqueue.md)."},
    },
}
ROOM: Schema = {"type": "string", "pattern": f"^{ROOM_ID.pattern}$"}
# `ids.new_session_id`'s shape: 128 random bits in URL-safe base64, a dot, the room.
SESSION_ID: Schema = {
    "type": "string",
    "pattern": rf"^[A-Za-z0-9_-]{{22}}\.{ROOM_ID.pattern}$",
    "description": "A session id: `<token>.<room>`.",
}

BAD_BODY = error("Not a JSON object, or a field of the wrong type or length.", "bad_request")
TOO_LARGE = error("The body is over the size limit.", "body_too_large")
NOT_ALLOWED = error("The path takes other methods.", "method_not_allowed", headers=("Allow",))
# Redis at maxmemory turns a call away as `queue_full`; any other store failure as
# `store_unavailable`.
_UNAVAILABLE = error(
    "The store is down or full; try again after Retry-After.",
    "queue_full", "store_unavailable", headers=("Retry-After",),
)  # fmt: skip
_UNKNOWN = error("Unknown session (or never one of this form).", "not_found")
_STATUS_LINKS: Schema = {
    name: {"operationId": op, "parameters": {"sessionId": "$response.body#/sessionId"}}
    for name, op in (("poll", "pollSession"), ("leave", "leaveSession"))
}

TABLE = Table(
    title="gatekeeper JSON API",
    description="Join a waiting room, poll your place, leave. Errors are "
    '`{"error": {"code", "message"}}`.',
    operations=(
        Operation(
            "POST", "/sessions", "joinSession", "Join the room of an event (a new session).",
            {
                202: Reply(
                    "Joined: the status, ACTIVE when admitted at once. A user who holds a place "
                    "gets that session back.",
                    ref("Status"), ("Location",), _STATUS_LINKS,
                ),
                400: BAD_BODY,
                403: error(
                    "The room takes joins with a valid enqueue token only.",
                    *(p.value for p in TokenProblem),
                ),
                404: error("No waiting room for this event.", "unknown_event"),
                409: error("The room is closed (sold out).", Refusal.ROOM_CLOSED.value),
                413: TOO_LARGE,
                429: error(
                    "Too many joins from this network.", Refusal.RATE_LIMITED.value,
                    headers=("Retry-After",),
                ),
                503: _UNAVAILABLE,
            },
            body=ref("Join"),
        ),
        Operation(
            "GET", "/sessions/{sessionId}", "pollSession", "A session's status (a heartbeat).",
            {200: Reply("The status.", ref("Status")), 404: _UNKNOWN, 405: NOT_ALLOWED,
             503: _UNAVAILABLE},
        ),
        Operation(
            "POST", "/sessions/{sessionId}:leave", "leaveSession", "Leave (idempotent).",
            {204: Reply("Left; the place is freed."), 404: _UNKNOWN, 405: NOT_ALLOWED,
             503: _UNAVAILABLE},
        ),
        Operation(
            "GET", "/events/{room}", "getEvent", "A room's on-sale event and its draw.",
            {200: Reply("The event.", ref("Event")),
             404: error("No such room, or it has no event.", "not_found"), 405: NOT_ALLOWED,
             503: _UNAVAILABLE},
        ),
        Operation(
            "GET", OPENAPI_PATH, "getOpenAPI", "This document.",
            {200: Reply("OpenAPI 3.1.", {"type": "object"})},
        ),
    ),
    parameters={"sessionId": SESSION_ID, "room": ROOM},
    schemas={"Status": STATUS, "Event": EVENT, "Join": JOIN},
)  # fmt: skip
