"""Room rules: which room an event maps to, each room's policy, and what a waiter is told."""

from __future__ import annotations

import math

from gatekeeper.config import Settings
from gatekeeper.config.load import policy_for
from gatekeeper.config.settings import PollingSettings
from gatekeeper.ids import ROOM_ID
from gatekeeper.store.base import Mode, RoomPolicy, Status, Ticket


class Rooms:
    """Resolves event ids to rooms and rooms to their (cached) policies."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.default = settings.rooms.default_room
        self._allow_unlisted = settings.rooms.allow_unlisted
        self._policies: dict[str, RoomPolicy] = {}
        self._live: dict[str, dict[str, str]] = {}
        self._modes: dict[str, Mode] = {}
        self._effective: dict[str, tuple[int, int, int]] = {}
        self.configured = frozenset({self.default, *settings.rooms.overrides})

    def resolve(self, event_id: str | None) -> str | None:
        """The room of an event id (None/empty → default room); None when not allowed."""
        if not event_id:
            return self.default
        if not ROOM_ID.fullmatch(event_id):
            return None
        if event_id not in self.configured and not self._allow_unlisted:
            return None
        return event_id

    def set_live(self, room: str, controls: dict[str, str]) -> None:
        """Record a room's live controls as read from the store (once per grant tick)."""
        self._live[room] = controls
        self._effective.pop(room, None)
        try:
            self._modes[room] = Mode(controls.get("mode", Mode.OPEN))
        except ValueError:
            self._modes[room] = Mode.OPEN

    def mode(self, room: str) -> Mode:
        """The room's live mode as of the last grant tick."""
        return self._modes.get(room, Mode.OPEN)

    def effective(self, room: str) -> tuple[int, int, int]:
        """Capacity, batch size and per-minute limit in force: live controls over the policy."""
        found = self._effective.get(room)
        if found is None:
            policy, live = self.policy(room), self._live.get(room, {})
            found = (
                int(live.get("capacity", policy.capacity)),
                int(live.get("batch-size", policy.batch_size)),
                int(live.get("per-minute", policy.per_minute)),
            )
            # Rooms with live controls are known ones; the rest share the policy's figures.
            if room in self._live or room in self.configured:
                self._effective[room] = found
        return found

    def max_rate(self, room: str) -> float:
        """The room's fastest grant rate (admissions per second): a batch every tick."""
        return self.effective(room)[1] * 1000 / self._settings.processing.rate_ms

    def poll_after_ms(self, ticket: Ticket) -> int:
        """See `poll_after_ms`, for this ticket's room."""
        room = ticket.room
        return poll_after_ms(ticket, self._settings.polling, self.policy(room), self.max_rate(room))

    def status_body(self, ticket: Ticket) -> dict[str, object]:
        """See `status_body`, for this ticket's room."""
        room = ticket.room
        return status_body(ticket, self._settings.polling, self.policy(room), self.max_rate(room))

    def policy(self, room: str) -> RoomPolicy:
        """The policy of a room: defaults merged with its override."""
        # Unlisted rooms share the default policy, so random room ids cannot grow this cache.
        key = room if room in self.configured else self.default
        found = self._policies.get(key)
        if found is None:
            found = self._policies[key] = policy_for(self._settings, key)
        return found


FRONT_S = 5
# Waiters expected within NEAR_S poll at the minimum interval: grants come in bursts, so the
# last seconds of an estimate are the least certain and a late claim leaves a place idle.
NEAR_S = 10
# Further back a waiter polls again after a quarter of its estimated wait: a few polls per
# halving of the wait, so a long queue costs little.
ETA_DIVISOR = 4


def estimated_wait_seconds(ticket: Ticket) -> int | None:
    """Seconds until this waiter is let in at the observed grant rate (None: no rate yet)."""
    if ticket.status is Status.ACTIVE:
        return 0
    if ticket.status is not Status.WAITING or ticket.grant_rate <= 0:
        return None
    return math.ceil((ticket.ahead + 1) / ticket.grant_rate)


def poll_after_ms(
    ticket: Ticket, polling: PollingSettings, policy: RoomPolicy, max_rate: float
) -> int:
    """How long the client should wait before polling again.

    Near the front (or with a short ETA) clients poll often so a grant is claimed quickly; far
    back they poll rarely, so a huge queue costs little. Before the first grant there is no
    observed rate: waiters the room could admit within FRONT_S seconds at its fastest
    (`max_rate` per second) poll at the minimum, so the first grants are claimed at once.
    Always well inside the waiting timeout and the claim window, so a slow poller never
    loses a place.
    """
    ceiling = min(polling.max_ms, policy.waiting_timeout_ms // 4, policy.claim_window_ms // 3)
    ceiling = max(ceiling, polling.min_ms)
    if ticket.status is not Status.WAITING:
        return ceiling
    eta = estimated_wait_seconds(ticket)
    if eta is not None:
        if eta <= NEAR_S:
            return polling.min_ms
        return max(polling.min_ms, min(eta * 1000 // ETA_DIVISOR, ceiling))
    # No grant seen yet: whoever the first few grant steps can reach polls often; everyone
    # else slowly, since by their next poll there is a rate to go by.
    return polling.min_ms if (ticket.ahead + 1) / max_rate <= FRONT_S else ceiling


def status_body(
    ticket: Ticket, polling: PollingSettings, policy: RoomPolicy, max_rate: float
) -> dict[str, object]:
    """The poll API's JSON object for a ticket."""
    return {
        "sessionId": ticket.session_id,
        "status": ticket.status.value,
        "position": ticket.ahead,
        "estimatedWaitSeconds": estimated_wait_seconds(ticket),
        "pollAfterMs": poll_after_ms(ticket, polling, policy, max_rate),
    }
