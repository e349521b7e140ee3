"""HTML pages shown to visitors: the waiting page, the notices, the closed page, in the
visitor's language (see docs/pages.md)."""

from __future__ import annotations

import functools
import math
import os
from enum import Enum
from html import escape

from gatekeeper.web.catalogues import Catalogue, Catalogues, load_catalogues
from gatekeeper.web.templates import (
    Compiled,
    asset_url,
    compile_template,
    fill,
    prefill,
    read_template,
    template_text,
)
from gatekeeper.web.views import (
    WaitingView,
    challenge_html,
    element,
    prequeue_html,
    progress_attrs,
    script_strings,
)
from gatekeeper.web.wording import describe_after, describe_position, describe_wait

__all__ = [
    "PageRenderer",
    "WAITING_PLACEHOLDERS",
    "UNAVAILABLE_PLACEHOLDERS",
    "NOTICE_PLACEHOLDERS",
    "CLOSED_PLACEHOLDERS",
    "Notice",
]

_PAGE = frozenset({"lang", "dir"})
WAITING_PLACEHOLDERS = _PAGE | {
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
    "method",
    "strings",
    "progress_label",
    "wait_label",
    "note_text",
    "reconnecting_text",
    "noscript_text",
    "footer_text",
}
"""Every `${name}` a waiting-page template may use; all values arrive HTML-escaped."""

UNAVAILABLE_PLACEHOLDERS = _PAGE | {"retry_after", "retry_after_text", "title", "message"}
"""Every `${name}` an unavailable-page template may use."""

NOTICE_PLACEHOLDERS = _PAGE | {
    "title",
    "message",
    "retry_after",
    "retry_after_text",
    "refresh",
    "retry_text",
    "actions",
}
"""Every `${name}` the notice page (a newcomer turned away) may use."""

CLOSED_PLACEHOLDERS = _PAGE | {"title", "message", "thanks_text"}
"""Every `${name}` the closed page may use: a final answer, it neither reloads nor polls."""

# Waiting pages prefilled with what is the same for every visitor of a language and title
# (languages × rooms with a title of their own), bounded all the same.
_PREFILLED_MAX = 256


class Notice(Enum):
    """Why a visitor is turned away: the API's error code and English title and message (the
    pages take theirs from the catalogues, `notice.<code>.title` and `.message`)."""

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
    ENQUEUE_TOKEN_REQUIRED = (
        "enqueue_token_required",
        "This waiting room is by invitation",
        "Please open the link the site gave you to join the line.",
    )
    INVALID_ENQUEUE_TOKEN = (
        "invalid_enqueue_token",
        "This link is no longer valid",
        "The link you used has expired or is not valid. Go back to the site to get a new one.",
    )

    def __init__(self, code: str, title: str, message: str) -> None:
        self.code = code
        self.title = title
        self.message = message


_MESSAGE = {"id": "gk-message", "class": "gk-message", "role": "status"}
_NO_MESSAGE = element("p", {**_MESSAGE, "hidden": ""})


def _message_html(message: str) -> str:
    """The operator's message to the room; always there (hidden when empty), so the page's
    script can show a message that comes."""
    return element("p", _MESSAGE, escape(message)) if message else _NO_MESSAGE


@functools.lru_cache(maxsize=256)
def _after_texts(words: Catalogue, seconds: int) -> dict[str, str]:
    """The escaped "try again in" texts for `seconds` (a few values of poll-after)."""
    return {
        "refresh_text": escape(describe_after(seconds, words), quote=True),
        "noscript_text": escape(words.plural("waiting.noscript", seconds), quote=True),
    }


class PageRenderer:
    """Renders the pages from templates parsed once at construction, in any language of the
    catalogues loaded then."""

    def __init__(
        self,
        template_path: str | None = None,
        *,
        unavailable_template_path: str | None = None,
        template_dir: str | None = None,
    ) -> None:
        """Load the templates: each page's file in `template_dir` when there is one (waiting,
        notice, closed, unavailable .html), else the packaged one; `template_path` is the
        waiting page's, `unavailable_template_path` the "right back" page's, over both. The
        catalogues are the packaged ones with `<template_dir>/i18n/*.json` merged over them."""
        self.catalogues: Catalogues = load_catalogues(template_dir)
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
        # One prefilled page per language, title and asset prefix: a handful in practice.
        self._prefilled = functools.lru_cache(maxsize=_PREFILLED_MAX)(self._prefill)

    @property
    def languages(self) -> tuple[str, ...]:
        """The tags of every language the pages speak."""
        return self.catalogues.tags

    def render_waiting(self, view: WaitingView) -> bytes:
        """The waiting page for one visitor as UTF-8 HTML, in `view.language`."""
        w = self.catalogues.get(view.language)
        position = None if view.position is None else max(view.position, 0)
        poll_ms = max(view.poll_after_ms, 0)
        eta = view.estimated_wait_seconds
        refresh = max(1, math.ceil(poll_ms / 1000))
        title = w.text("prequeue.title") if view.starts_at else view.title
        values = {
            "room": view.room,
            "session_id": view.session_id,
            "status": view.status,
            "method": view.method,
            "position_text": describe_position(view.status, position, w),
            "eta_text": describe_wait(eta, w, view.wait_range),
            "status_url": view.status_url,
        }
        escaped = {key: escape(value, quote=True) for key, value in values.items()}
        # Numbers need no escaping.
        escaped["position"] = "" if position is None else str(position)
        escaped["eta_seconds"] = "" if eta is None else str(eta)
        escaped["poll_after_ms"] = str(poll_ms)
        escaped["refresh_seconds"] = str(refresh)
        joined = view.joined_position
        escaped["joined_position"] = "" if joined is None else str(joined)
        escaped |= _after_texts(w, refresh)
        escaped["progress_attrs"] = progress_attrs(position or 0, view.joined_position)
        escaped["challenge"] = challenge_html(view, w)
        escaped["prequeue"] = prequeue_html(view, w)
        escaped["message"] = _message_html(view.message)
        page = self._prefilled(w, title or w.text("waiting.title"), view.static_prefix)
        return fill(page, escaped)

    def _prefill(self, w: Catalogue, title: str, static_prefix: str) -> Compiled:
        """The waiting page with its words in `w`'s language, `title` and asset links in."""
        values = {
            "lang": w.tag,
            "dir": w.direction.value,
            "title": title,
            "static_prefix": static_prefix.rstrip("/"),
            "css_url": asset_url(static_prefix, "waiting.css"),
            "js_url": asset_url(static_prefix, "waiting.js"),
            "progress_label": w.text("progress.label"),
            "wait_label": w.text("wait.label"),
            "note_text": w.text("waiting.note"),
            "reconnecting_text": w.text("waiting.reconnecting"),
            "footer_text": w.text("waiting.footer"),
        }
        escaped = {key: escape(value, quote=True) for key, value in values.items()}
        escaped["strings"] = script_strings(w)
        return prefill(self._waiting, escaped)

    def render_unavailable(self, retry_after_s: int, language: str = "en") -> bytes:
        """The "we'll be right back" page, reloading itself after `retry_after_s` seconds."""
        seconds = max(1, int(retry_after_s))
        if self._unavailable is None:
            return self.render_notice(Notice.UNAVAILABLE, seconds, language)
        w = self.catalogues.get(language)
        values = _notice_words(w, Notice.UNAVAILABLE)
        values |= {"retry_after": str(seconds), "retry_after_text": describe_after(seconds, w)}
        return fill(self._unavailable, {k: escape(v, quote=True) for k, v in values.items()})

    def render_notice(self, notice: Notice, retry_after_s: int, language: str = "en") -> bytes:
        """The page of a visitor turned away, reloading itself after `retry_after_s` seconds;
        0 means a final answer (a 403): no reload and no "try again" text."""
        w = self.catalogues.get(language)
        seconds = max(0, int(retry_after_s))
        values = _notice_words(w, notice)
        values["retry_after"] = str(seconds) if seconds else ""
        values["retry_after_text"] = describe_after(seconds, w) if seconds else ""
        values["retry_text"] = w.text("notice.retry", after=values["retry_after_text"])
        escaped = {k: escape(v, quote=True) for k, v in values.items()}
        escaped["refresh"] = escaped["actions"] = ""
        if seconds:
            escaped["refresh"] = f'<meta http-equiv="refresh" content="{seconds}">'
            keep_open = escape(w.text("notice.keep_open"))
            try_now = escape(w.text("notice.try_now"))
            escaped["actions"] = f'<p>{keep_open}</p>\n  <p><a href="">{try_now}</a></p>'
        else:
            escaped["retry_text"] = ""
        return fill(self._notice, escaped)

    def render_closed(self, language: str = "en") -> bytes:
        """The page of a closed room (sold out): no refresh and no script, so a waiter's page
        that reloaded into it stops polling."""
        w = self.catalogues.get(language)
        values = _notice_words(w, Notice.CLOSED) | {"thanks_text": w.text("closed.thanks")}
        return fill(self._closed, {k: escape(v, quote=True) for k, v in values.items()})


def _notice_words(w: Catalogue, notice: Notice) -> dict[str, str]:
    return {
        "lang": w.tag,
        "dir": w.direction.value,
        "title": w.text(f"notice.{notice.code}.title"),
        "message": w.text(f"notice.{notice.code}.message"),
    }
