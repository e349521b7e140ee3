"""What the gate answers a visitor it does not let through: the waiting page or JSON status,
the pages of a newcomer turned away or of a closed room, and the "we'll be right back" page."""

from __future__ import annotations

from gatekeeper.asgi import Headers, Scope, Send, send_bytes, send_error, send_json, wants_json
from gatekeeper.config.settings import Settings
from gatekeeper.core.rooms import Rooms
from gatekeeper.core.schedule import estimated_wait_seconds
from gatekeeper.gate.admission import Decision
from gatekeeper.verdicts import Verdict
from gatekeeper.web.api import session_url
from gatekeeper.web.pages import Notice, PageRenderer, WaitingView

RETRY_AFTER_DOWN = 5
_HTML = b"text/html; charset=utf-8"
# A WebSocket that may not connect yet: 1013 "try again later".
_TRY_AGAIN = {"type": "websocket.close", "code": 1013}
# A WebSocket of a closed room: 1008 "policy violation", the generic refusal (not worth a retry).
_CLOSED = {"type": "websocket.close", "code": 1008}


class Responses:
    """The waiting and unavailable answers, as HTML, JSON or a closed WebSocket."""

    def __init__(self, rooms: Rooms, pages: PageRenderer, settings: Settings) -> None:
        self._rooms = rooms
        self._pages = pages
        self._api_prefix = settings.api.prefix
        self._assets = settings.gate.static_prefix.rstrip("/") + "/static"
        self._status = settings.gate.waiting_status
        self._soonest_ms = settings.polling.min_ms

    async def waiting(self, scope: Scope, send: Send, decision: Decision) -> None:
        """The waiting page (or JSON status) of a WAITING decision, with Retry-After and the
        cookie. A provisional one (no place yet) comes back as soon as polling allows: its
        place is taken when it does, with the cookie."""
        ticket, cookie = decision.ticket, decision.cookie
        assert ticket is not None  # a WAITING decision always has its ticket
        if scope["type"] != "http":
            return await send(_TRY_AGAIN)
        body = self._rooms.status_body(ticket)
        if decision.provisional:
            body["pollAfterMs"] = self._soonest_ms
        poll_ms = body["pollAfterMs"]
        assert isinstance(poll_ms, int)
        headers: Headers = [(b"retry-after", str(max(1, poll_ms // 1000)).encode())]
        if cookie is not None:
            headers.append(cookie)
        if wants_json(scope):
            if decision.challenge is not None:
                c = decision.challenge
                body["challenge"] = {"kind": c.kind, "answerCookie": c.answer_cookie,
                                     "difficulty": c.difficulty, "siteKey": c.site_key}  # fmt: skip
            return await send_json(send, self._status, body, headers)
        starts_at = body.get("startsAt")
        view = WaitingView(
            session_id=ticket.session_id,
            status=ticket.status.value,
            position=None if starts_at else ticket.ahead,
            estimated_wait_seconds=None if starts_at else estimated_wait_seconds(ticket),
            poll_after_ms=poll_ms,
            status_url=session_url(self._api_prefix, ticket.session_id),
            static_prefix=self._assets,
            room=ticket.room,
            challenge=decision.challenge,
            starts_at=starts_at if isinstance(starts_at, str) else "",
            message=str(body.get("message", "")),
        )
        await send_bytes(send, self._status, self._pages.render_waiting(view), _HTML, headers)

    async def turned_away(self, scope: Scope, send: Send, decision: Decision) -> None:
        """A newcomer refused a place: 429 over the client's join limit, 503 when the line is
        full; with Retry-After, as HTML (reloading itself then) or JSON. A closed room: see
        `closed`."""
        if decision.verdict is Verdict.CLOSED:
            return await self.closed(scope, send)
        limited = decision.verdict is Verdict.LIMITED
        notice = Notice.RATE_LIMITED if limited else Notice.QUEUE_FULL
        status = 429 if limited else 503
        retry = max(1, decision.retry_after_s)
        headers = [(b"retry-after", str(retry).encode())]
        if scope["type"] != "http":
            await send(_TRY_AGAIN)
        elif wants_json(scope):
            await send_error(send, status, notice.code, notice.message, headers)
        else:
            await send_bytes(send, status, self._pages.render_notice(notice, retry), _HTML, headers)

    async def closed(self, scope: Scope, send: Send) -> None:
        """A closed room (sold out), to a newcomer or to a waiter the close sent away: a final
        answer without Retry-After. JSON clients get 409 `room_closed`, as from the API. The
        page is a 200: it is the answer to the visit, not an error to retry, and a proxy or
        CDN that swaps error pages for its own would hide it."""
        notice = Notice.CLOSED
        if scope["type"] != "http":
            await send(_CLOSED)
        elif wants_json(scope):
            await send_error(send, 409, notice.code, notice.message)
        else:
            await send_bytes(send, 200, self._pages.render_closed(), _HTML)

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
