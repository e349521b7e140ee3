"""What the gate answers a visitor it does not let through: the waiting page or JSON status,
and the "we'll be right back" page."""

from __future__ import annotations

from gatekeeper.asgi import Headers, Scope, Send, send_bytes, send_error, send_json, wants_json
from gatekeeper.config.settings import Settings
from gatekeeper.core.rooms import Rooms
from gatekeeper.core.schedule import estimated_wait_seconds
from gatekeeper.store.base import Ticket
from gatekeeper.web.api import session_url
from gatekeeper.web.pages import PageRenderer, WaitingView

RETRY_AFTER_DOWN = 5
_HTML = b"text/html; charset=utf-8"
# A WebSocket that may not connect yet: 1013 "try again later".
_TRY_AGAIN = {"type": "websocket.close", "code": 1013}


class Responses:
    """The waiting and unavailable answers, as HTML, JSON or a closed WebSocket."""

    def __init__(self, rooms: Rooms, pages: PageRenderer, settings: Settings) -> None:
        self._rooms = rooms
        self._pages = pages
        self._api_prefix = settings.api.prefix
        self._assets = settings.gate.static_prefix.rstrip("/") + "/static"
        self._status = settings.gate.waiting_status

    async def waiting(
        self, scope: Scope, send: Send, ticket: Ticket, cookie: tuple[bytes, bytes] | None
    ) -> None:
        """The waiting page (or JSON status) for a ticket, with Retry-After and the cookie."""
        poll_ms = self._rooms.poll_after_ms(ticket)
        headers: Headers = [(b"retry-after", str(max(1, poll_ms // 1000)).encode())]
        if cookie is not None:
            headers.append(cookie)
        if scope["type"] != "http":
            return await send(_TRY_AGAIN)
        if wants_json(scope):
            body = self._rooms.status_body(ticket)
            return await send_json(send, self._status, body, headers)
        view = WaitingView(
            session_id=ticket.session_id,
            status=ticket.status.value,
            position=ticket.ahead,
            estimated_wait_seconds=estimated_wait_seconds(ticket),
            poll_after_ms=poll_ms,
            status_url=session_url(self._api_prefix, ticket.session_id),
            static_prefix=self._assets,
            room=ticket.room,
        )
        await send_bytes(send, self._status, self._pages.render_waiting(view), _HTML, headers)

    async def unavailable(self, scope: Scope, send: Send) -> None:
        """The "we'll be right back" answer: 503 with Retry-After, HTML or JSON."""
        retry = [(b"retry-after", str(RETRY_AFTER_DOWN).encode())]
        if scope["type"] != "http":
            await send(_TRY_AGAIN)
        elif wants_json(scope):
            await send_error(send, 503, "store_unavailable", "try again shortly", retry)
        else:
            html = self._pages.render_unavailable(RETRY_AFTER_DOWN)
            await send_bytes(send, 503, html, _HTML, retry)
