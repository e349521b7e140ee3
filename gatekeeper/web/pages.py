"""HTML pages shown to visitors: the waiting page, the "right back" page and their static files."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from enum import Enum
from html import escape

from gatekeeper.web.templates import (
    Compiled,
    asset_url,
    compile_template,
    fill,
    read_template,
    static_file,
    template_text,
)

__all__ = [
    "PageRenderer",
    "WaitingView",
    "WAITING_PLACEHOLDERS",
    "UNAVAILABLE_PLACEHOLDERS",
    "NOTICE_PLACEHOLDERS",
    "CLOSED_PLACEHOLDERS",
    "Notice",
    "ChallengeView",
    "describe_position",
    "describe_wait",
    "static_file",
]

WAITING_PLACEHOLDERS = frozenset(
    {
        "title",
        "room",
        "session_id",
        "status",
        "position",
        "position_text",
        "eta_text",
        "eta_seconds",
        "poll_after_ms",
        "refresh_seconds",
        "refresh_text",
        "status_url",
        "static_prefix",
        "css_url",
        "js_url",
        "joined_position",
        "progress_attrs",
        "challenge",
        "prequeue",
        "message",
    }
)
"""Every `${name}` a waiting-page template may use; all values arrive HTML-escaped."""

UNAVAILABLE_PLACEHOLDERS = frozenset({"retry_after", "retry_after_text"})
"""Every `${name}` an unavailable-page template may use."""

NOTICE_PLACEHOLDERS = frozenset({"title", "message", "retry_after", "retry_after_text"})
"""Every `${name}` the notice page (a newcomer turned away) may use."""

CLOSED_PLACEHOLDERS = frozenset({"title", "message"})
"""Every `${name}` the closed page may use: a final answer, it neither reloads nor polls."""


class Notice(Enum):
    """Why a visitor is turned away: the page's title and message, the API's error code."""

    UNAVAILABLE = (
        "store_unavailable",
        "We'll be right back",
        "We're having trouble letting visitors in right now.",
    )
    RATE_LIMITED = (
        "rate_limited",
        "Too many visitors from your network",
        "Many people on your network are joining at once, so your place could not be saved yet.",
    )
    QUEUE_FULL = (
        "queue_full",
        "The line is full",
        "So many people are waiting that the line cannot take anyone new right now.",
    )
    CLOSED = (
        "room_closed",
        "This sale has closed",
        "All the places have gone, so the line is closed and nobody else can join it.",
    )

    def __init__(self, code: str, title: str, message: str) -> None:
        self.code = code
        self.title = title
        self.message = message


@dataclass(frozen=True, slots=True)
class ChallengeView:
    """A challenge the waiting page puts to the browser before its join counts."""

    kind: str
    """`proof-of-work` or `verifier` (see gatekeeper.gate.challenge)."""
    answer_cookie: str
    difficulty: int = 0
    site_key: str = ""
    script_url: str = ""
    widget_class: str = ""


@dataclass(frozen=True, slots=True)
class WaitingView:
    """Everything the waiting page shows about one waiting visitor."""

    session_id: str
    status: str
    position: int | None
    """People ahead; None in a pre-queue (everyone in it is equal until the draw)."""
    estimated_wait_seconds: int | None
    poll_after_ms: int
    status_url: str
    static_prefix: str
    title: str = "You're in line"
    room: str = "default"
    joined_position: int | None = None
    challenge: ChallengeView | None = None
    starts_at: str = ""
    """In an event's pre-queue: when the sale starts (ISO 8601, UTC); "" otherwise."""
    message: str = ""
    """The operator's message to the room's waiters (plain text; "" = none)."""


def describe_position(status: str, position: int | None) -> str:
    """The sentence the page shows about where the visitor stands."""
    if status == "ACTIVE":
        return "It's your turn, taking you in…"
    if status in ("LEFT", "EXPIRED"):
        return "Finding your place in line…"
    if position is None:
        return "You're in the pre-queue: your place is drawn at the start"
    if position <= 0:
        return "You're next"
    if position == 1:
        return "1 person ahead of you"
    return f"{position:,} people ahead of you"


def _round(x: float) -> int:
    # Half-up like JavaScript's Math.round, so the page reads the same before and after JS runs.
    return math.floor(x + 0.5)


def describe_wait(seconds: int | None) -> str:
    """An estimated wait in plain words; waiting.js mirrors these rules."""
    if seconds is None or seconds < 0:
        return "calculating…"
    if seconds < 15:
        return "any moment now"
    if seconds < 60:
        return "less than a minute"
    minutes = _round(seconds / 60)
    if minutes < 90:
        return "about 1 minute" if minutes == 1 else f"about {minutes} minutes"
    hours = _round(seconds / 3600)
    if hours < 24:
        return f"about {hours} hours"
    return "more than a day"


def _element(tag: str, attrs: dict[str, str], inner: str = "") -> str:
    pairs = " ".join(f'{key}="{escape(value, quote=True)}"' for key, value in attrs.items())
    return f"<{tag} {pairs}>{inner}</{tag}>"


def _prequeue_html(view: WaitingView) -> str:
    """The pre-queue's start and countdown (the script shows them in local time), or ""."""
    if not view.starts_at:
        return ""
    when = view.starts_at.replace("T", " ").replace(".000Z", " UTC")
    inner = (
        '<p class="gk-starts">The sale starts at '
        + _element("time", {"id": "gk-starts-at", "datetime": view.starts_at}, escape(when))
        + '.</p><p class="gk-small" id="gk-countdown" role="timer" aria-live="off"></p>'
        + '<p class="gk-small">Everyone who arrives before the start gets a place drawn at '
        + "random then, so there is no need to refresh.</p>"
    )
    return _element("div", {"id": "gk-prequeue", "data-starts-at": view.starts_at}, inner)


def _challenge_html(view: WaitingView) -> str:
    """The challenge block of the page (every value escaped), or "" when there is none."""
    c = view.challenge
    if c is None:
        return ""
    inner = '<p class="gk-small">Checking your browser before you join the line…</p>'
    if c.script_url:
        widget = {"class": c.widget_class, "data-sitekey": c.site_key, "data-callback": "gkSolved"}
        inner += _element("div", widget)
        inner += _element("script", {"src": c.script_url, "async": "", "defer": ""})
    inner += (
        "<noscript><p>This waiting room needs JavaScript to let you join the line: "
        "please turn it on and reload the page.</p></noscript>"
    )
    attrs = {
        "id": "gk-challenge",
        "data-kind": c.kind,
        "data-session": view.session_id,
        "data-answer-cookie": c.answer_cookie,
        "data-difficulty": str(c.difficulty),
    }
    return _element("div", attrs, inner)


def _progress_attrs(position: int, joined: int | None) -> str:
    # Built only from integers; without a value attribute <progress> is indeterminate.
    if joined is None or joined < 0:
        return ""
    done = min(max(joined - position, 0), joined)
    return f'value="{done}" max="{joined + 1}"'


class PageRenderer:
    """Renders the waiting and unavailable pages from templates parsed once at construction."""

    def __init__(
        self,
        template_path: str | None = None,
        *,
        unavailable_template_path: str | None = None,
        template_dir: str | None = None,
    ) -> None:
        """Load the templates: each page's file in `template_dir` when there is one (waiting,
        notice, closed, unavailable .html), else the packaged one; `template_path` is the
        waiting page's, `unavailable_template_path` the "right back" page's, over both."""
        if template_path is None:
            waiting = template_text("waiting.html", template_dir)
        else:
            waiting = read_template(template_path), template_path
        self._waiting = compile_template(waiting[0], WAITING_PLACEHOLDERS, waiting[1])
        notice = template_text("notice.html", template_dir)
        self._notice = compile_template(notice[0], NOTICE_PLACEHOLDERS, notice[1])
        closed = template_text("closed.html", template_dir)
        self._closed = compile_template(closed[0], CLOSED_PLACEHOLDERS, closed[1])
        # Without a template of its own the "right back" page is the notice page.
        self._unavailable: Compiled | None = None
        if unavailable_template_path is None and template_dir:
            own = os.path.join(template_dir, "unavailable.html")
            unavailable_template_path = own if os.path.isfile(own) else None
        if unavailable_template_path is not None:
            text = read_template(unavailable_template_path)
            origin = unavailable_template_path
            self._unavailable = compile_template(text, UNAVAILABLE_PLACEHOLDERS, origin)

    def render_waiting(self, view: WaitingView) -> bytes:
        """The waiting page for one visitor as UTF-8 HTML."""
        position = None if view.position is None else max(view.position, 0)
        poll_ms = max(view.poll_after_ms, 0)
        eta = view.estimated_wait_seconds
        refresh = max(1, math.ceil(poll_ms / 1000))
        values = {
            "title": "The sale starts soon" if view.starts_at else view.title,
            "room": view.room,
            "session_id": view.session_id,
            "status": view.status,
            "position": "" if position is None else str(position),
            "position_text": describe_position(view.status, position),
            "eta_text": describe_wait(eta),
            "eta_seconds": "" if eta is None else str(eta),
            "poll_after_ms": str(poll_ms),
            "refresh_seconds": str(refresh),
            "refresh_text": "second" if refresh == 1 else f"{refresh} seconds",
            "status_url": view.status_url,
            "static_prefix": view.static_prefix.rstrip("/"),
            "css_url": asset_url(view.static_prefix, "waiting.css"),
            "js_url": asset_url(view.static_prefix, "waiting.js"),
            "joined_position": "" if view.joined_position is None else str(view.joined_position),
        }
        escaped = {key: escape(value, quote=True) for key, value in values.items()}
        escaped["progress_attrs"] = _progress_attrs(position or 0, view.joined_position)
        escaped["challenge"] = _challenge_html(view)
        escaped["prequeue"] = _prequeue_html(view)
        # Always there (hidden when empty), so the page's script can show a message that comes.
        hidden = {} if view.message else {"hidden": ""}
        attrs = {"id": "gk-message", "class": "gk-message", "role": "status", **hidden}
        escaped["message"] = _element("p", attrs, escape(view.message))
        return fill(self._waiting, escaped)

    def render_unavailable(self, retry_after_s: int) -> bytes:
        """The "we'll be right back" page, reloading itself after `retry_after_s` seconds."""
        if self._unavailable is None:
            return self.render_notice(Notice.UNAVAILABLE, retry_after_s)
        seconds = max(1, int(retry_after_s))
        return fill(
            self._unavailable,
            {"retry_after": str(seconds), "retry_after_text": _after_text(seconds)},
        )

    def render_notice(self, notice: Notice, retry_after_s: int) -> bytes:
        """The page of a newcomer turned away, reloading itself after `retry_after_s`."""
        seconds = max(1, int(retry_after_s))
        values = {
            "title": notice.title,
            "message": notice.message,
            "retry_after": str(seconds),
            "retry_after_text": _after_text(seconds),
        }
        return fill(self._notice, {k: escape(v, quote=True) for k, v in values.items()})

    def render_closed(self) -> bytes:
        """The page of a closed room (sold out): no refresh and no script, so a waiter's page
        that reloaded into it stops polling."""
        values = {"title": Notice.CLOSED.title, "message": Notice.CLOSED.message}
        return fill(self._closed, {k: escape(v, quote=True) for k, v in values.items()})


def _after_text(seconds: int) -> str:
    if seconds < 60:
        return "1 second" if seconds == 1 else f"{seconds} seconds"
    minutes = _round(seconds / 60)
    return "1 minute" if minutes == 1 else f"{minutes} minutes"
