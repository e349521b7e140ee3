"""What the gate answers a visitor it does not let through: the waiting page or JSON status,
the pages of a newcomer turned away or of a closed room, and the "we'll be right back" page; a
WebSocket is refused before its upgrade."""

from __future__ import annotations

from gatekeeper.asgi import (
    Headers,
    Message,
    Scope,
    Send,
    header,
    send_bytes,
    send_error,
    send_json,
    wants_json,
)
from gatekeeper.config.settings import Settings
from gatekeeper.core.rooms import Rooms
from gatekeeper.core.schedule import estimated_wait_seconds
from gatekeeper.enqueue import TokenProblem
from gatekeeper.gate.admission import Decision
from gatekeeper.verdicts import Verdict
from gatekeeper.web.api import session_url
from gatekeeper.web.languages import Choice, LanguagePolicy
from gatekeeper.web.pages import Notice, PageRenderer
from gatekeeper.web.views import WaitingView

RETRY_AFTER_DOWN = 5
_HTML = b"text/html; charset=utf-8"
_NOT_ADMITTED = (
    403,
    "not_admitted",
    "Only an admitted visitor may open a WebSocket: the page lets you in when it is your turn.",
)
_DOWN = (503, Notice.UNAVAILABLE.code, "try again shortly")
# A WebSocket the gate does not let through: the status and error of its refusal, as the JSON
# API answers them (DENIED is the enqueue token's notice).
_SOCKET_REFUSALS: dict[Verdict, tuple[int, str, str]] = {
    Verdict.WAITING: _NOT_ADMITTED,
    Verdict.ABSENT: _NOT_ADMITTED,
    Verdict.HELD: _DOWN,
    Verdict.UNAVAILABLE: _DOWN,
    Verdict.LIMITED: (429, Notice.RATE_LIMITED.code, Notice.RATE_LIMITED.message),
    Verdict.FULL: (503, Notice.QUEUE_FULL.code, Notice.QUEUE_FULL.message),
    Verdict.CLOSED: (409, Notice.CLOSED.code, Notice.CLOSED.message),
}
# Without the `websocket.http.response` extension a refusal is a close before the upgrade
# (which servers answer with 403): 1013 "try again later", or 1008 "policy violation".
_TRY_AGAIN = 1013
_POLICY = 1008


def _wait_range(value: object) -> tuple[int, int] | None:
    """The status body's `estimatedWaitRange` ([low, high] seconds), or None for anything else."""
    if not isinstance(value, list | tuple) or len(value) != 2:
        return None
    low, high = value
    if type(low) is not int or type(high) is not int or not 0 <= low <= high:
        return None
    return low, high


class Responses:
    """The waiting and unavailable answers, as HTML, JSON or a closed WebSocket."""

    def __init__(self, rooms: Rooms, pages: PageRenderer, settings: Settings) -> None:
        self._rooms = rooms
        self._pages = pages
        self._api_prefix = settings.api.prefix
        self._assets = settings.gate.static_prefix.rstrip("/") + "/static"
        self._status = settings.gate.waiting_status
        self._soonest_ms = settings.polling.min_ms
        # Every configured language is checked against the catalogues here, at startup.
        self._languages = LanguagePolicy(settings, pages.languages)

    def _language(self, scope: Scope, room: str | None) -> tuple[Choice, Headers]:
        """The language of a page for this request, and the headers that say so."""
        choice = self._languages.choose(room, header(scope, b"accept-language"))
        headers: Headers = [(b"content-language", choice.tag.encode())]
        if choice.negotiated:
            headers.append((b"vary", b"Accept-Language"))
        return choice, headers

    async def waiting(self, scope: Scope, send: Send, decision: Decision) -> None:
        """The waiting page (or JSON status) of a WAITING decision, with Retry-After and the
        cookie. A provisional one (no place yet) comes back as soon as polling allows: its
        place is taken when it does, with the cookie."""
        ticket, cookie = decision.ticket, decision.cookie
        assert ticket is not None  # a WAITING decision always has its ticket
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
        choice, language = self._language(scope, ticket.room)
        sid = ticket.session_id
        view = WaitingView(
            session_id=sid,
            status=ticket.status.value,
            position=None if starts_at else ticket.ahead,
            estimated_wait_seconds=None if starts_at else estimated_wait_seconds(ticket),
            poll_after_ms=poll_ms,
            # A provisional page has nothing to poll (the store does not know the session
            # yet): its script reloads after poll-after, which takes the place.
            status_url="" if decision.provisional else session_url(self._api_prefix, sid),
            static_prefix=self._assets,
            room=ticket.room,
            challenge=decision.challenge,
            starts_at=starts_at if isinstance(starts_at, str) else "",
            message=str(body.get("message", "")),
            wait_range=None if starts_at else _wait_range(body.get("estimatedWaitRange")),
            language=choice.tag,
            method=str(scope.get("method", "GET")),
        )
        html = self._pages.render_waiting(view)
        await send_bytes(send, self._status, html, _HTML, [*headers, *language])

    async def turned_away(
        self, scope: Scope, send: Send, decision: Decision, room: str | None = None
    ) -> None:
        """A newcomer refused a place: 429 over the client's join limit, 503 when the line is
        full; with Retry-After, as HTML (reloading itself then, in the language of `room`) or
        JSON. A closed room: see `closed`; no valid enqueue token: see `forbidden`."""
        if decision.verdict is Verdict.CLOSED:
            return await self.closed(scope, send, room)
        if decision.verdict is Verdict.DENIED:
            invalid = decision.problem is TokenProblem.INVALID
            notice = Notice.INVALID_ENQUEUE_TOKEN if invalid else Notice.ENQUEUE_TOKEN_REQUIRED
            return await self.forbidden(scope, send, notice, room)
        limited = decision.verdict is Verdict.LIMITED
        notice = Notice.RATE_LIMITED if limited else Notice.QUEUE_FULL
        status = 429 if limited else 503
        retry = max(1, decision.retry_after_s)
        headers = [(b"retry-after", str(retry).encode())]
        if wants_json(scope):
            await send_error(send, status, notice.code, notice.message, headers)
        else:
            choice, language = self._language(scope, room)
            html = self._pages.render_notice(notice, retry, choice.tag)
            await send_bytes(send, status, html, _HTML, [*headers, *language])

    async def closed(self, scope: Scope, send: Send, room: str | None = None) -> None:
        """A closed room (sold out), to a newcomer or to a waiter the close sent away: a final
        answer without Retry-After. JSON clients get 409 `room_closed`, as from the API. The
        page is a 200: it is the answer to the visit, not an error to retry, and a proxy or
        CDN that swaps error pages for its own would hide it."""
        notice = Notice.CLOSED
        if wants_json(scope):
            await send_error(send, 409, notice.code, notice.message)
        else:
            choice, language = self._language(scope, room)
            await send_bytes(send, 200, self._pages.render_closed(choice.tag), _HTML, language)

    async def unavailable(self, scope: Scope, send: Send, room: str | None = None) -> None:
        """The "we'll be right back" answer: 503 with Retry-After, HTML or JSON."""
        retry = [(b"retry-after", str(RETRY_AFTER_DOWN).encode())]
        if wants_json(scope):
            await send_error(send, 503, "store_unavailable", "try again shortly", retry)
        else:
            choice, language = self._language(scope, room)
            html = self._pages.render_unavailable(RETRY_AFTER_DOWN, choice.tag)
            await send_bytes(send, 503, html, _HTML, [*retry, *language])

    async def forbidden(
        self, scope: Scope, send: Send, notice: Notice, room: str | None = None
    ) -> None:
        """A final refusal such as `Notice.ENQUEUE_TOKEN_REQUIRED`: 403 without Retry-After, as
        a page that neither reloads nor promises a retry, or as the API's JSON error."""
        if wants_json(scope):
            await send_error(send, 403, notice.code, notice.message)
        else:
            choice, language = self._language(scope, room)
            html = self._pages.render_notice(notice, 0, choice.tag)
            await send_bytes(send, 403, html, _HTML, language)

    async def socket_refused(self, scope: Scope, send: Send, decision: Decision) -> None:
        """A WebSocket refused before its upgrade, with the JSON API's error: 403 `not_admitted`
        to a waiter or newcomer (a socket never joins), 503 (Retry-After) in a held room or
        while the store is down, 409 in a closed room, 403 without a valid enqueue token.
        Without the server's `websocket.http.response` extension: a close before accepting,
        1013 where a retry may help, else 1008 (servers answer both with 403)."""
        refusal = _SOCKET_REFUSALS.get(decision.verdict)
        if refusal is None:  # DENIED: the enqueue token's notice
            notice = Notice.INVALID_ENQUEUE_TOKEN
            if decision.problem is not TokenProblem.INVALID:
                notice = Notice.ENQUEUE_TOKEN_REQUIRED
            refusal = (403, notice.code, notice.message)
        status, code, message = refusal
        retry = max(1, decision.retry_after_s or RETRY_AFTER_DOWN) if status in (429, 503) else 0
        if "websocket.http.response" not in scope.get("extensions", {}):
            return await send({"type": "websocket.close", "code": _TRY_AGAIN if retry else _POLICY})
        headers: Headers = [(b"retry-after", str(retry).encode())] if retry else []
        await send_error(_as_socket(send), status, code, message, headers)


def _as_socket(send: Send) -> Send:
    """`send` for an HTTP answer to a WebSocket upgrade (`websocket.http.response.*`)."""

    async def send_through(message: Message) -> None:
        await send({**message, "type": "websocket." + message["type"]})

    return send_through
