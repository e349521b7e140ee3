"""A room's on-sale phases: before, pre-queue, open and closed, from its event and the clock."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from gatekeeper.config.events import format_instant
from gatekeeper.config.settings import EventSettings
from gatekeeper.core.draw import rank_key
from gatekeeper.store.base import EventField


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


@dataclass(frozen=True, slots=True)
class LiveEvent:
    """A room's event as every replica reads it from the store (its control hash)."""

    schedule: EventSettings
    seed: str = ""
    commitment: str = ""
    drawn_at: int | None = None

    def rank(self, session_id: str) -> str:
        """The rank key a pre-queue join carries ("" when the pre-queue keeps arrival order)."""
        return rank_key(self.seed, session_id) if self.schedule.shuffle and self.seed else ""

    def public(self, room: str, phase: Phase, entries: int) -> dict[str, object]:
        """What anyone may read of the event; the seed only once the pre-queue is drawn."""
        s = self.schedule
        return {
            "room": room,
            "phase": phase.value,
            "prequeueOpensAt": format_instant(s.prequeue_opens_at),
            "startsAt": format_instant(s.starts_at),
            "endsAt": None if s.ends_at is None else format_instant(s.ends_at),
            "shuffle": s.shuffle,
            "commitment": self.commitment or None,
            "seed": self.seed if self.drawn_at is not None else None,
            "drawnAt": None if self.drawn_at is None else format_instant(self.drawn_at),
            "entries": entries,
        }


def read_event(controls: Mapping[str, str]) -> LiveEvent | None:
    """The event kept in a room's control hash (`EventField`), or None."""
    try:
        starts = int(controls[EventField.STARTS])
        opens = int(controls.get(EventField.OPENS, starts))
        ends_raw = controls.get(EventField.ENDS)
        drawn_raw = controls.get(EventField.DRAWN)
        schedule = EventSettings(
            opens, starts, None if ends_raw is None else int(ends_raw),
            controls.get(EventField.SHUFFLE, "1") == "1",
        )  # fmt: skip
        drawn = None if drawn_raw is None else int(drawn_raw)
    except (KeyError, ValueError):
        return None
    seed = controls.get(EventField.SEED, "")
    return LiveEvent(schedule, seed, controls.get(EventField.COMMITMENT, ""), drawn)


def event_controls(schedule: EventSettings) -> dict[str, str | None]:
    """The control-hash fields of a schedule (the seed is set apart, once: `Operations`)."""
    return {
        EventField.OPENS: str(schedule.prequeue_opens_at),
        EventField.STARTS: str(schedule.starts_at),
        EventField.ENDS: None if schedule.ends_at is None else str(schedule.ends_at),
        EventField.SHUFFLE: "1" if schedule.shuffle else "",
    }
