"""The one reader of JSON request bodies (the join API and the operator API).

A body is read up to a byte limit, then parsed with bounded cost and into plain, storable
values only: nesting is checked before parsing (no RecursionError, now or when the value is
dumped again), integers longer than `MAX_INT_DIGITS` digits and non-finite numbers (`1e999`,
`NaN`, `Infinity`) are refused (no int-from-string blow-up, no Infinity written to an audit
log), and so is any string, key or value, holding a lone surrogate (`"\\ud800"`: it cannot be
encoded to UTF-8, so Redis could not store it). Every refusal is a `BadJSON` with a message
for the client; `read_object` turns it, and an over-long body, into the API's error shape.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from gatekeeper.asgi import (
    BodyTooLarge,
    ClientGone,
    Receive,
    Scope,
    Send,
    header,
    read_body,
    send_error,
)

MAX_DEPTH = 32
"""Deepest nesting of arrays and objects accepted (the APIs need 1)."""
MAX_INT_DIGITS = 20
"""Longest integer literal accepted, sign included (every bound the APIs check is far below)."""
_MAX_LENGTH_DIGITS = 18
"""A Content-Length header longer than this is no body we would read (and no int to parse)."""

# The characters that matter to nesting: brackets, and what starts, escapes or ends a string.
_STRUCTURE = re.compile(r'[\[\]{}"\\]')
_SURROGATE = re.compile(r"[\ud800-\udfff]")


class BadJSON(ValueError):
    """A request body that is not a JSON object the APIs accept; the message is for the client."""


def parse_object(raw: bytes) -> dict[str, Any]:
    """The JSON object in `raw`; an empty (or blank) body is an empty object.

    Raises `BadJSON` for anything else: bad encoding, bad syntax, too deep, a number out of
    range, a lone surrogate, or a value that is not an object.
    """
    if not raw.strip():
        return {}
    try:  # json.loads(bytes) accepts UTF-8 (with or without BOM), UTF-16 and UTF-32: so do we
        text = raw.decode(json.detect_encoding(raw))
    except UnicodeDecodeError:
        raise BadJSON("body is not valid UTF-8") from None
    if _too_deep(text):
        raise BadJSON(f"body nests too deeply ({MAX_DEPTH} levels at most)")
    try:
        data = _DECODER.decode(text)
    except BadJSON:
        raise
    except (ValueError, RecursionError):  # JSONDecodeError is a ValueError
        raise BadJSON("body is not valid JSON") from None
    if not isinstance(data, dict):
        raise BadJSON("body must be a JSON object")
    if _has_lone_surrogate(data):
        raise BadJSON("body has a string with a lone surrogate (not valid Unicode)")
    return data


async def read_object(
    scope: Scope, receive: Receive, send: Send, limit: int
) -> dict[str, Any] | None:
    """The request's JSON object body (at most `limit` bytes), or None once it has answered
    413/400 itself (or the client has gone, when there is no one to answer)."""
    declared = header(scope, b"content-length")
    try:
        if declared is not None and len(declared.strip()) > _MAX_LENGTH_DIGITS:
            raise BodyTooLarge
        raw = await read_body(scope, receive, limit)
    except BodyTooLarge:
        await send_error(send, 413, "body_too_large", "request body too large")
        return None
    except ClientGone:
        return None
    try:
        return parse_object(raw)
    except BadJSON as exc:
        await send_error(send, 400, "bad_request", str(exc))
        return None


def _too_deep(text: str) -> bool:
    """Whether arrays/objects nest deeper than MAX_DEPTH, outside strings (one linear pass over
    the structural characters; an upper bound on what the parser would reach)."""
    depth = 0
    in_string = False
    escaped = -1  # the position a backslash in a string escapes
    for found in _STRUCTURE.finditer(text):
        at = found.start()
        if at == escaped:
            continue
        char = found.group()
        if in_string:
            if char == "\\":
                escaped = at + 1
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return True
        elif char in "]}":
            depth -= 1
    return False


def _int(literal: str) -> int:
    if len(literal) > MAX_INT_DIGITS:
        raise BadJSON(f"body has a number out of range ({MAX_INT_DIGITS} digits at most)")
    return int(literal)


def _float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise BadJSON("body has a number out of range")
    return value


def _constant(name: str) -> float:
    raise BadJSON(f"body has {name}, which is not JSON")


# One decoder for every body (json.loads with these hooks would build one per call).
_DECODER = json.JSONDecoder(parse_int=_int, parse_float=_float, parse_constant=_constant)


def _has_lone_surrogate(data: object) -> bool:
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False
