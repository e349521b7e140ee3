"""The gate's side of a site's link with an enqueue token: a redirect that drops the token."""

from __future__ import annotations

from urllib.parse import quote

from gatekeeper.asgi import Headers, Scope, Send, send_bytes
from gatekeeper.core.invitations import QUERY_PARAMETER, without_token
from gatekeeper.verdicts import LET_THROUGH, Verdict

CLEANED = LET_THROUGH | {Verdict.WAITING}
"""The verdicts whose answer to a link with a token is the redirect (the visitor has, or has
kept, a place); turned away or unavailable, the page says why, and nothing is forwarded."""


def carries_token(scope: Scope) -> bool:
    """Whether the query names the token parameter (the hot path's one extra test)."""
    return QUERY_PARAMETER in scope.get("query_string", b"")


async def redirect_without_token(
    scope: Scope, send: Send, cookie: tuple[bytes, bytes] | None
) -> None:
    """303 to the same path with the token taken out of the query (every other parameter
    kept as sent), with the place's cookie: the address bar, bookmarks, the Referer and the
    origin never see the token."""
    raw: bytes = scope.get("raw_path") or b""
    if not (raw.startswith(b"/") and all(0x21 <= c <= 0x7E for c in raw)):
        raw = quote(scope["path"]).encode()
    # `//host` or `/\host` would send the visitor to another site: one leading slash only.
    path = b"/" + raw.lstrip(b"/\\")
    query = without_token(scope.get("query_string", b""))
    location = path + b"?" + query if query else path
    headers: Headers = [(b"location", location), (b"referrer-policy", b"no-referrer")]
    if cookie is not None:
        headers.append(cookie)
    await send_bytes(send, 303, b"", b"text/plain; charset=utf-8", headers)
