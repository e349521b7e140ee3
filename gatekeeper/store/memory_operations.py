"""The embedded store's `Operations`: live room controls (events included), the grant interval,
the audit log."""

from __future__ import annotations

from collections import deque

from gatekeeper.clock import Clock
from gatekeeper.store.base import EventField
from gatekeeper.store.memory_state import RoomState


class MemoryOperations:
    """What operators set and read, on the embedded store's state (see `MemoryStore`)."""

    _rooms: dict[str, RoomState]
    _clock: Clock
    _rate_ms: int | None
    _audit: deque[dict[str, str]]

    async def controls(self, room: str) -> dict[str, str]:
        r = self._rooms.get(room)
        return dict(r.controls) if r is not None else {}

    async def set_controls(self, room: str, changes: dict[str, str | None]) -> None:
        controls = self._rooms.setdefault(room, RoomState()).controls
        for key, value in changes.items():
            if value is None:
                controls.pop(key, None)
            else:
                controls[key] = value

    async def ensure_seed(self, room: str, seed: str, commitment: str) -> str:
        controls = self._rooms.setdefault(room, RoomState()).controls
        if EventField.SEED not in controls:
            controls[EventField.SEED], controls[EventField.COMMITMENT] = seed, commitment
        return controls[EventField.SEED]

    async def prequeue(self, room: str, offset: int, limit: int) -> tuple[int, list[str]]:
        r = self._rooms.get(room) or RoomState()
        return len(r.prequeue), r.prequeue.page(offset, limit)

    async def rate_ms(self) -> int | None:
        return self._rate_ms

    async def set_rate_ms(self, ms: int | None) -> None:
        self._rate_ms = ms

    async def audit(self, entry: dict[str, str]) -> None:
        self._audit.append({"ts": str(self._clock()), **entry})

    async def audit_log(self, limit: int) -> list[dict[str, str]]:
        return list(reversed(self._audit))[:limit]
