"""What the waiting page shows, and the HTML blocks built from it (every value escaped)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from html import escape

from gatekeeper.web.catalogues import Catalogue

__all__ = [
    "ChallengeView",
    "WaitingView",
    "challenge_html",
    "element",
    "prequeue_html",
    "progress_attrs",
    "script_strings",
]

# The catalogue keys the page's script needs, by prefix: it rewrites these texts after a poll.
_SCRIPT_KEYS = ("position.", "wait.", "prequeue.countdown")


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
    title: str = ""
    """The page's heading; "" = the catalogue's ("You're in line")."""
    room: str = "default"
    joined_position: int | None = None
    challenge: ChallengeView | None = None
    starts_at: str = ""
    """In an event's pre-queue: when the sale starts (ISO 8601, UTC); "" otherwise."""
    message: str = ""
    """The operator's message to the room's waiters (plain text; "" = none)."""
    wait_range: tuple[int, int] | None = None
    """The estimated wait as a range of seconds (low, high), shown as "about 4–7 minutes"."""
    language: str = "en"
    """The page's language: a catalogue's tag (gatekeeper.web.languages chooses it)."""
    method: str = "GET"
    """The request's method: a page that answered a POST lets the visitor in with a GET."""


def element(tag: str, attrs: dict[str, str], inner: str = "") -> str:
    """`<tag attrs>inner</tag>`; the attribute values are escaped here, `inner` is HTML."""
    pairs = " ".join(f'{key}="{escape(value, quote=True)}"' for key, value in attrs.items())
    return f"<{tag} {pairs}>{inner}</{tag}>"


def prequeue_html(view: WaitingView, words: Catalogue) -> str:
    """The pre-queue's start and countdown (the script shows them in local time), or ""."""
    if not view.starts_at:
        return ""
    when = view.starts_at.replace("T", " ").replace(".000Z", " UTC")
    time = element("time", {"id": "gk-starts-at", "datetime": view.starts_at}, escape(when))
    before, _, after = words.raw("prequeue.starts").partition("{time}")
    inner = (
        f'<p class="gk-starts">{escape(before)}{time}{escape(after)}</p>'
        '<p class="gk-small" id="gk-countdown" role="timer" aria-live="off"></p>'
        f'<p class="gk-small">{escape(words.text("prequeue.draw"))}</p>'
    )
    return element("div", {"id": "gk-prequeue", "data-starts-at": view.starts_at}, inner)


def challenge_html(view: WaitingView, words: Catalogue) -> str:
    """The challenge block of the page (every value escaped), or "" when there is none."""
    c = view.challenge
    if c is None:
        return ""
    inner = f'<p class="gk-small">{escape(words.text("challenge.checking"))}</p>'
    if c.script_url:
        widget = {"class": c.widget_class, "data-sitekey": c.site_key, "data-callback": "gkSolved"}
        inner += element("div", widget)
        inner += element("script", {"src": c.script_url, "async": "", "defer": ""})
    inner += f"<noscript><p>{escape(words.text('challenge.noscript'))}</p></noscript>"
    attrs = {
        "id": "gk-challenge",
        "data-kind": c.kind,
        "data-session": view.session_id,
        "data-answer-cookie": c.answer_cookie,
        "data-difficulty": str(c.difficulty),
    }
    return element("div", attrs, inner)


def progress_attrs(position: int, joined: int | None) -> str:
    """The `<progress>` element's value and max, or "" (indeterminate) when unknown."""
    # Built only from integers; without a value attribute <progress> is indeterminate.
    if joined is None or joined < 0:
        return ""
    done = min(max(joined - position, 0), joined)
    return f'value="{done}" max="{joined + 1}"'


def script_strings(words: Catalogue) -> str:
    """The texts the page's script writes after a poll, as a JSON data block."""
    data = {"lang": words.tag, "strings": words.subset(_SCRIPT_KEYS)}
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    # No "<" survives, so nothing in an operator's text can close the element or open a comment;
    # JSON.parse reads the escapes back.
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return f'<script type="application/json" id="gk-strings">{text}</script>'
