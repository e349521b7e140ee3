"""The gate's verdicts: what happens to one request for a protected path."""

from __future__ import annotations

from enum import StrEnum


class Verdict(StrEnum):
    """One request's fate; the values are the `decision` label of the gate's metrics."""

    PASS = "pass"
    """A fresh pass in the cookie: forwarded without a store call."""
    ADMITTED = "admitted"
    """The store confirmed (or just granted) an active session: forwarded with a new pass."""
    WAITING = "waiting"
    """In line: the waiting page or the JSON status."""
    HELD = "held"
    """The room is in queue-all mode: nobody reaches the origin."""
    LIMITED = "limited"
    """The client's join limit is spent: 429 with Retry-After."""
    FULL = "full"
    """The room's line is at its cap (or the store is out of memory): 503 "queue full"."""
    CLOSED = "closed"
    """The room is closed (sold out): the closed page, or 409 `room_closed` as JSON."""
    DENIED = "denied"
    """The room needs an enqueue token and none valid came: 403."""
    UNAVAILABLE = "unavailable"
    """The store failed and the failure policy is closed: "we'll be right back"."""
    FAIL_OPEN = "fail_open"
    """The store failed and the failure policy is open: forwarded unchecked."""
    PASSTHROUGH = "passthrough"
    """The room is in passthrough mode: forwarded, still counted in line."""
    BYPASS = "bypass"
    """A path the gate does not protect (static assets, bypass rules)."""
    ABSENT = "absent"
    """No session and none made (auth_request never joins); counted as waiting."""


LET_THROUGH = frozenset({Verdict.PASS, Verdict.ADMITTED, Verdict.FAIL_OPEN, Verdict.PASSTHROUGH})
"""The verdicts that forward the request to the app."""
TURNED_AWAY = frozenset({Verdict.LIMITED, Verdict.FULL, Verdict.CLOSED, Verdict.DENIED})
"""The verdicts that refuse a newcomer a place (try again after Retry-After; a closed room for
good, until an operator reopens it; without a valid enqueue token, until the site gives one)."""
COUNTED = tuple(v for v in Verdict if v is not Verdict.ABSENT)
"""The verdicts the metrics count (ABSENT is counted as WAITING)."""
