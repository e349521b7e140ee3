"""The return-path bounce: a cross-site form POST re-posted once from our site, with the cookie."""

from __future__ import annotations

import base64
import hashlib
import html
import logging
import re
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from urllib.parse import parse_qsl, quote

from gatekeeper.asgi import Message, Receive, Scope, Send, header, send_bytes, without_parameter
from gatekeeper.config.settings import GateSettings
from gatekeeper.gate.cookies import read_cookie
from gatekeeper.gate.paths import PathRules

log = logging.getLogger("gatekeeper.gate")

MARKER = b"gk-bounced"
"""The query parameter of a bounced POST: it is bounced once, and the origin never sees it."""
MAX_FIELDS = 1000
"""More form fields than this are not bounced (a payment return posts a handful)."""
_MARK = MARKER + b"=1"
_FORM = b"application/x-www-form-urlencoded"
_UTF8 = (b"utf-8", b"utf8")
# A field a browser would not re-post as it came: a lone CR or LF (form submission turns
# every line break into CRLF) or NUL (the HTML parser makes it U+FFFD).
_ALTERED = re.compile(r"\r(?!\n)|(?<!\r)\n|\x00")
# Our own action URL: a path of one leading slash (`//host` and `/\host` would leave the
# site) and visible ASCII only, as browsers send it; anything else is not bounced.
_ACTION = re.compile(rb"/(?![/\\])[\x21-\x5b\x5d-\x7e]*")
_QUERY = re.compile(rb"[\x21-\x7e]*")
# `HTMLFormElement.prototype.submit`: a field named "submit" hides the form's own method.
_SCRIPT = 'HTMLFormElement.prototype.submit.call(document.getElementById("gk-bounce"));'
_SCRIPT_HASH = base64.b64encode(hashlib.sha256(_SCRIPT.encode()).digest()).decode()
# No form-action: it would also refuse a redirect the origin answers the return with.
_CSP = (
    f"default-src 'none'; script-src 'sha256-{_SCRIPT_HASH}'; base-uri 'none'; "
    "frame-ancestors 'self'"
).encode()
_HEADERS = (
    (b"content-security-policy", _CSP),
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
)
_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Continuing…</title></head>
<body><form id="gk-bounce" method="post" action="{action}" \
enctype="application/x-www-form-urlencoded" accept-charset="utf-8">
{inputs}<p>Taking you back to the site…</p>
<button type="submit">Continue</button>
</form>
<script>{script}</script>
</body></html>
"""


def marked(query: bytes) -> bool:
    """True when the query string carries the bounce marker."""
    return MARKER in query and any(p.partition(b"=")[0] == MARKER for p in query.split(b"&"))


def unmark(query: bytes) -> bytes:
    """The query string without the bounce marker (the origin's own parameters unchanged)."""
    return without_parameter(query, MARKER)


def form_fields(body: bytes) -> list[tuple[str, str]] | None:
    """The fields of a form body that a browser re-posts unchanged, else None.

    None for a body that is not strict UTF-8 form encoding, holds more than `MAX_FIELDS`
    fields, or a field a re-post would change (empty or `_charset_` name, see `_ALTERED`)."""
    try:
        fields = parse_qsl(
            body.decode("ascii"),
            keep_blank_values=True,
            strict_parsing=True,
            errors="strict",  # invalid UTF-8, lone surrogates included, raises
            max_num_fields=MAX_FIELDS,
        )
    except ValueError:  # UnicodeDecodeError too
        return None
    for name, value in fields:
        # A hidden field named `_charset_` is posted with the page's charset as its value.
        if not name or name.lower() == "_charset_" or _ALTERED.search(name + " " + value):
            return None
    return fields


def _escape(text: str) -> str:
    # Line breaks as references: the HTML parser turns a raw CR or CRLF into LF.
    return html.escape(text, quote=True).replace("\r", "&#13;").replace("\n", "&#10;")


def bounce_page(action: str, fields: list[tuple[str, str]]) -> bytes:
    """The page re-posting `fields` to `action` from our site: at once, or by its button."""
    inputs = "".join(
        f'<input type="hidden" name="{_escape(n)}" value="{_escape(v)}">\n' for n, v in fields
    )
    return _PAGE.format(action=_escape(action), inputs=inputs, script=_SCRIPT).encode()


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """`receive` that first hands back the messages already read."""
    pending = deque(messages)

    async def replayed() -> Message:
        return pending.popleft() if pending else await receive()

    return replayed


class Bounce:
    """Answers a cookie-less form POST to a return path with a form that re-posts it.

    A payment provider's return is a cross-site POST, which carries no `SameSite=Lax` cookie:
    the visitor would look like a newcomer, and lose their place. Re-posted from our page,
    the POST is same-site, and the browser sends the cookie. Once only (see `MARKER`)."""

    def __init__(self, gate: GateSettings, cookie_name: Callable[[str], str]) -> None:
        self._rules: PathRules | None = None
        if gate.return_paths:
            # The done-path matcher is the gate's glob matcher for a path list (normalised,
            # folded, ignoring case): given the return paths and nothing else.
            only = replace(
                gate,
                protect=(),
                bypass=(),
                bypass_ips=(),
                bypass_user_agents=(),
                routes=(),
                done_paths=gate.return_paths,
            )
            self._rules = PathRules(only, "default")
        self._limit = gate.return_max_body_bytes
        self._cookie_name = cookie_name

    async def screen(self, scope: Scope, receive: Receive, send: Send, room: str) -> Receive | None:
        """None when the request was answered with the bounce page, else the `receive` to go
        on with (the body replayed when it was read to decide)."""
        if self._rules is None or scope["type"] != "http" or scope["method"] != "POST":
            return receive
        action = self._action(scope, room)
        if action is None:
            return receive
        messages: list[Message] = []
        body = bytearray()
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                return _replay(messages, receive)  # the client is gone: the app sees it too
            body += message.get("body", b"")
            if len(body) > self._limit:
                return _replay(messages, receive)
            if not message.get("more_body", False):
                break
        fields = form_fields(bytes(body))
        if fields is None:
            return _replay(messages, receive)
        log.debug("bounced a cross-site POST to a return path (%d fields)", len(fields))
        await send_bytes(
            send, 200, bounce_page(action, fields), b"text/html; charset=utf-8", _HEADERS
        )
        return None

    def _action(self, scope: Scope, room: str) -> str | None:
        """The URL the bounce re-posts to (this one, marked), or None when not to bounce:
        not a return path, bounced already, a cookie of the room, not a small UTF-8 form."""
        assert self._rules is not None
        query: bytes = scope.get("query_string") or b""
        if marked(query) or not self._rules.is_done(scope["path"]):
            return None
        if read_cookie(scope["headers"], self._cookie_name(room)) is not None:
            return None
        kind, _, params = (header(scope, b"content-type") or b"").partition(b";")
        if kind.strip(b" \t").lower() != _FORM or not _utf8(params):
            return None
        length = header(scope, b"content-length")
        if length is not None and not (
            length.isdigit() and len(length) <= 18 and int(length) <= self._limit
        ):
            return None  # never converting a 5,000-digit length (int() would raise)
        path = scope.get("raw_path") or quote(scope["path"]).encode()
        if not _ACTION.fullmatch(path) or not _QUERY.fullmatch(query):
            return None
        return (path + b"?" + (query + b"&" if query else b"") + _MARK).decode("ascii")


def _utf8(params: bytes) -> bool:
    """True when Content-Type parameters name no charset, or UTF-8."""
    for param in params.split(b";"):
        name, _, value = param.partition(b"=")
        if name.strip(b" \t").lower() == b"charset" and value.strip(b' \t"').lower() not in _UTF8:
            return False
    return True
