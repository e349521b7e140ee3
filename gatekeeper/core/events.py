"""A room's on-sale phases: before, pre-queue, open and closed, from its event and the clock."""

from __future__ import annotations

from enum import StrEnum

from gatekeeper.config.settings import EventSettings


class Phase(StrEnum):
    """Where a room with an event stands; the values are the API's `phase` strings."""

    BEFORE = "before"
    """Before the pre-queue opens: the room works as it would without the event."""
    PREQUEUE = "prequeue"
    """Everyone who arrives joins the pre-queue; nobody is admitted; arrival order counts not."""
    OPEN = "open"
    """From the start: the pre-queue goes first (in drawn order), later arrivals behind it."""
    CLOSED = "closed"
    """From the end (or a close command): nobody new joins; waiters end with reason closed."""


def phase_at(event: EventSettings | None, now_ms: int, *, closed: bool = False) -> Phase:
    """The phase of a room with `event` (None: no event, OPEN) at `now_ms`; `closed` is an
    operator's or the origin's close command, which wins over the schedule."""
    if closed or (event is not None and event.ends_at is not None and now_ms >= event.ends_at):
        return Phase.CLOSED
    if event is None or now_ms >= event.starts_at:
        return Phase.OPEN
    if now_ms >= event.prequeue_opens_at:
        return Phase.PREQUEUE
    return Phase.BEFORE
