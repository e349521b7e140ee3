"""On-sale events over HTTP: the operator's schedule and draw, and the public view of the draw."""

from __future__ import annotations

from typing import Any

from gatekeeper.config.events import checked, parse_instant
from gatekeeper.config.settings import EventSettings
from gatekeeper.core.draw import commitment, new_seed
from gatekeeper.core.events import LiveEvent, event_controls
from gatekeeper.core.rooms import Rooms
from gatekeeper.errors import ConfigError
from gatekeeper.store.base import EventField, Store

_FIELDS = {"prequeueOpensAt", "startsAt", "endsAt", "shuffle"}


class EventProblem(ValueError):
    """An operator's event that cannot be (or can no longer be) scheduled: `status` and why."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code


class Events:
    """Scheduling a room's event (every replica applies it within one tick: it lives in the
    room's control hash) and reading it back, the public way or the operator's."""

    def __init__(self, store: Store, rooms: Rooms) -> None:
        self.store = store
        self.rooms = rooms

    async def schedule(self, room: str, schedule: EventSettings) -> LiveEvent:
        """Set the room's schedule; its seed is made (and committed to) once, at the first
        schedule, and kept through later changes, so the published commitment holds."""
        current = await self._live(room)
        if current is not None and current.drawn_at is not None:
            raise EventProblem(409, "already_drawn", "the pre-queue is drawn: the event is fixed")
        await self.store.set_controls(room, event_controls(schedule))
        seed = new_seed()
        await self.store.ensure_seed(room, seed, commitment(seed))
        event = await self._live(room)
        assert event is not None  # just written
        return event

    async def schedule_configured(self, room: str, schedule: EventSettings) -> None:
        """A schedule from the config file: applied only when the room has no event yet, so a
        restart never undoes what an operator changed live."""
        if await self._live(room) is None:
            await self.schedule(room, schedule)

    async def remove(self, room: str) -> None:
        """Take the event off the room (and its seed and draw with it)."""
        await self.store.set_controls(room, dict.fromkeys(EventField))
        self.rooms.set_live(room, await self.store.controls(room))

    async def public(self, room: str) -> dict[str, object] | None:
        """The event as anyone may see it (the seed once drawn), or None without one."""
        event = await self._live(room)
        if event is None:
            return None
        entries, _ = await self.store.prequeue(room, 0, 0)
        return event.public(room, self.rooms.phase(room), entries)

    async def draw(self, room: str, offset: int, limit: int) -> dict[str, object] | None:
        """The operator's page of the drawn order: [session id, rank] from rank `offset`."""
        event = await self._live(room)
        if event is None:
            return None
        total, sids = await self.store.prequeue(room, offset, limit)
        return {
            "room": room,
            "drawn": event.drawn_at is not None,
            "total": total,
            "offset": offset,
            "entries": [[sid, offset + i] for i, sid in enumerate(sids)],
        }

    async def _live(self, room: str) -> LiveEvent | None:
        self.rooms.set_live(room, await self.store.controls(room))
        return self.rooms.event(room)


def parse_schedule(body: dict[str, Any]) -> EventSettings:
    """An event schedule from an operator's JSON body; `EventProblem` (400) when it is not one.

    Instants are ISO 8601 with an offset or epoch milliseconds; `prequeueOpensAt` defaults to
    `startsAt` (no pre-queue), `endsAt` to none, `shuffle` to true."""
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        shown = unknown[0][:64]
        raise EventProblem(400, "bad_request", f"unknown field {shown!r}")
    starts = _instant(body.get("startsAt"), "startsAt")
    opens = starts if body.get("prequeueOpensAt") is None else _instant(
        body["prequeueOpensAt"], "prequeueOpensAt"
    )  # fmt: skip
    ends = None if body.get("endsAt") is None else _instant(body["endsAt"], "endsAt")
    shuffle = body.get("shuffle", True)
    if not isinstance(shuffle, bool):
        raise EventProblem(400, "bad_request", "shuffle: true or false")
    try:
        return checked(EventSettings(opens, starts, ends, shuffle), "event")
    except ConfigError as exc:
        raise EventProblem(400, "bad_request", str(exc)) from None


def _instant(raw: object, name: str) -> int:
    ms = parse_instant(raw) if isinstance(raw, str | int) and not isinstance(raw, bool) else None
    if ms is None:
        raise EventProblem(
            400, "bad_request", f"{name}: an ISO 8601 time with an offset or epoch milliseconds"
        )
    return ms
