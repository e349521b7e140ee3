"""The sentences that carry numbers: place in line, estimated wait, "try again in"; waiting.js
mirrors these rules."""

from __future__ import annotations

import math

from gatekeeper.web.catalogues import Catalogue, english

__all__ = ["describe_after", "describe_position", "describe_wait"]


def _round(x: float) -> int:
    # Half-up like JavaScript's Math.round, so the page reads the same before and after JS runs.
    return math.floor(x + 0.5)


def describe_position(status: str, position: int | None, words: Catalogue | None = None) -> str:
    """The sentence the page shows about where the visitor stands."""
    w = words or english()
    if status == "ACTIVE":
        return w.text("position.active")
    if status in ("LEFT", "EXPIRED"):
        return w.text("position.finding")
    if position is None:
        return w.text("position.prequeue")
    if position <= 0:
        return w.text("position.next")
    return w.plural("position.ahead", position)


def _single(seconds: int | None, w: Catalogue) -> str:
    if seconds is None or seconds < 0:
        return w.text("wait.calculating")
    if seconds < 15:
        return w.text("wait.moment")
    if seconds < 60:
        return w.text("wait.under_minute")
    minutes = _round(seconds / 60)
    if minutes < 90:
        return w.plural("wait.minutes", minutes)
    hours = _round(seconds / 3600)
    if hours < 24:
        return w.plural("wait.hours", hours)
    return w.text("wait.day")


def _span(low: int, high: int, w: Catalogue) -> str:
    if high < 60:
        return _single(high, w)
    high_m = _round(high / 60)
    if high_m < 90:
        low_m = max(1, _round(low / 60))
        if low_m >= high_m:
            return w.plural("wait.minutes", high_m)
        bounds = {"low": w.number(low_m), "high": w.number(high_m)}
        return w.plural("wait.minutes_range", high_m, **bounds)
    low_h = max(1, _round(low / 3600))
    if low_h >= 24:
        return w.text("wait.day")
    high_h = min(_round(high / 3600), 24)
    if low_h >= high_h:
        return w.plural("wait.hours", high_h)
    bounds = {"low": w.number(low_h), "high": w.number(high_h)}
    return w.plural("wait.hours_range", high_h, **bounds)


def describe_wait(
    seconds: int | None,
    words: Catalogue | None = None,
    span: tuple[int, int] | None = None,
) -> str:
    """An estimated wait in plain words: "about 4–7 minutes" from a range (`span`, seconds),
    "about 5 minutes" when its ends round alike or there is no range."""
    w = words or english()
    if span is not None and 0 <= span[0] <= span[1]:
        return _span(span[0], span[1], w)
    return _single(seconds, w)


def describe_after(seconds: int, words: Catalogue | None = None) -> str:
    """How long until a page tries again: "30 seconds", "2 minutes"."""
    w = words or english()
    if seconds < 60:
        return w.plural("after.seconds", seconds)
    return w.plural("after.minutes", _round(seconds / 60))
