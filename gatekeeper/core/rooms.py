"""Room rules: which room an event maps to, and each room's policy, live controls and mode."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from gatekeeper.clock import Clock, wall_clock
from gatekeeper.config.events import format_instant
from gatekeeper.config.settings import RoomOverride, Settings
from gatekeeper.core import schedule
from gatekeeper.core.estimates import Basis, RoomWatch
from gatekeeper.core.events import LiveEvent, Phase, phase_at, read_event
from gatekeeper.ids import ROOM_ID
from gatekeeper.store.base import MESSAGE_FIELD, Control, Mode, RoomPolicy, Status, Ticket


def _ms(override: float | None, default: float) -> int:
    return max(1, round((default if override is None else override) * 1000))


MAX_SESSION_FIELD = "max-session"
"""The control-hash field of an operator's live session cap for a room (whole seconds; 0 = no
cap): it replaces `lifecycle.max-session` on every replica from its next grant tick."""


def policy_for(settings: Settings, room: str) -> RoomPolicy:
    """The store policy of a room: processing/lifecycle defaults with the room's override."""
    o = settings.rooms.overrides.get(room, RoomOverride())
    p, lc = settings.processing, settings.lifecycle
    return RoomPolicy(
        capacity=_pick(o.capacity, p.capacity),
        batch_size=_pick(o.batch_size, p.batch_size),
        waiting_timeout_ms=_ms(o.waiting_timeout, lc.waiting_timeout),
        claim_window_ms=_ms(o.claim_window, lc.claim_window),
        idle_timeout_ms=_ms(o.idle_timeout, lc.idle_timeout),
        retention_ms=_ms(o.retention, lc.retention),
        max_session_ms=round((lc.max_session if o.max_session is None else o.max_session) * 1000),
        per_minute=_pick(o.new_visitors_per_minute, p.new_visitors_per_minute),
        max_waiting=_pick(o.max_waiting, p.max_waiting),
        client_joins_per_minute=_pick(o.client_joins_per_minute, p.client_joins_per_minute),
        client_join_burst=_pick(o.client_join_burst, p.client_join_burst),
    )


def _pick(override: int | None, default: int) -> int:
    return default if override is None else override


class Rooms:
    """Resolves event ids to rooms, and rooms to their (cached) policies, controls and mode."""

    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        self._settings = settings
        self.clock = clock or wall_clock
        """The one clock (phases, times shown to operators)."""
        self._events: dict[str, LiveEvent] = {}
        self.default = settings.rooms.default_room
        self._allow_unlisted = settings.rooms.allow_unlisted
        self._max_unlisted = settings.rooms.max_unlisted
        self.forget_after_ms = max(1, round(settings.rooms.forget_after * 1000))
        # Unlisted rooms in the store's room list as of the last grant tick, and those this
        # process let in since (so a burst between two ticks cannot overshoot the cap).
        self._unlisted: frozenset[str] = frozenset()
        self._new: set[str] = set()
        self._policies: dict[str, RoomPolicy] = {}
        self._live: dict[str, dict[str, str]] = {}
        self._capped: dict[str, RoomPolicy] = {}
        self._stays: dict[str, tuple[RoomPolicy, float]] = {}
        self._modes: dict[str, Mode] = {}
        self._effective: dict[str, RoomPolicy] = {}
        self._rate_ms = settings.processing.rate_ms
        self._watch = RoomWatch()
        self.configured = frozenset({self.default, *settings.rooms.overrides})

    def resolve(self, event_id: str | None) -> str | None:
        """The room of an event id (None/empty → default room); None when not allowed."""
        if not event_id:
            return self.default
        if not ROOM_ID.fullmatch(event_id):
            return None
        if event_id in self.configured:
            return event_id
        if not self._allow_unlisted:
            return None
        if event_id not in self._unlisted and event_id not in self._new:
            if len(self._unlisted) + len(self._new) >= self._max_unlisted:
                return None
            self._new.add(event_id)
        return event_id

    def retain(self, listed: Iterable[str]) -> None:
        """Record the store's room list (once per grant tick) and drop what other rooms left.

        The live controls, modes and effective policies of rooms no longer listed go: the
        caches stay as large as the list, whatever the number of rooms ever seen.
        """
        keep = {*listed, *self.configured}
        self._unlisted = frozenset(keep - self.configured)
        self._new.clear()
        caches = (self._live, self._modes, self._effective, self._events, self._capped)
        for cache in (*caches, self._stays):
            for room in [r for r in cache if r not in keep]:
                del cache[room]
        self._watch.retain(keep)

    @property
    def unlisted(self) -> int:
        """Unlisted rooms in the store's room list as of the last grant tick."""
        return len(self._unlisted)

    def set_live(self, room: str, controls: dict[str, str]) -> None:
        """Record a room's live controls as read from the store (once per grant tick)."""
        self._live[room] = controls
        self._effective.pop(room, None)
        try:
            self._modes[room] = Mode(controls.get(Control.MODE, Mode.OPEN))
        except ValueError:
            self._modes[room] = Mode.OPEN
        limit = controls.get(MAX_SESSION_FIELD)
        if limit is not None and limit.isdigit():
            key = room if room in self.configured else self.default
            base = self._policies.get(key) or policy_for(self._settings, key)
            self._capped[room] = replace(base, max_session_ms=int(limit) * 1000)
        else:
            self._capped.pop(room, None)
        event = read_event(controls)
        if event is None:
            self._events.pop(room, None)
        else:
            self._events[room] = event

    def event(self, room: str) -> LiveEvent | None:
        """The room's on-sale event as of the last grant tick (or the operator's last change)."""
        return self._events.get(room)

    def rank(self, room: str, session_id: str) -> str:
        """The rank key a join of `session_id` carries into the room's pre-queue ("" when the
        room has no event, or one without shuffle): see `store.base.Entry`."""
        event = self._events.get(room)
        return "" if event is None else event.rank(session_id)

    def phase(self, room: str) -> Phase:
        """The room's phase now (OPEN for a room without an event that is not closed)."""
        event = self._events.get(room)
        closed = self.mode(room) is Mode.CLOSED
        return phase_at(None if event is None else event.schedule, self.clock(), closed=closed)

    @property
    def rate_ms(self) -> int:
        """Milliseconds between grant steps in force, as of the last grant tick."""
        return self._rate_ms

    def set_rate_ms(self, rate_ms: int) -> None:
        """Record the `rate_ms` in force: the live one, else the configured one."""
        self._rate_ms = rate_ms

    def mode(self, room: str) -> Mode:
        """The room's live mode as of the last grant tick."""
        return self._modes.get(room, Mode.OPEN)

    def effective(self, room: str) -> RoomPolicy:
        """The room's policy with its live capacity, batch size and per-minute limit applied."""
        found = self._effective.get(room)
        if found is not None:
            return found
        policy, live = self.policy(room), self._live.get(room)
        if not live:
            return policy  # no live controls: the policy itself, no copy per call
        # Rooms with live controls are listed ones (`retain` bounds this cache).
        found = self._effective[room] = replace(
            policy,
            capacity=int(live.get(Control.CAPACITY, policy.capacity)),
            batch_size=int(live.get(Control.BATCH_SIZE, policy.batch_size)),
            per_minute=int(live.get(Control.PER_MINUTE, policy.per_minute)),
        )
        return found

    def max_rate(self, room: str) -> float:
        """The room's fastest grant rate (admissions per second): a batch every `rate_ms`."""
        return self.effective(room).batch_size * 1000 / self._rate_ms

    def poll_after_ms(self, ticket: Ticket) -> int:
        """See `schedule.poll_after_ms`, for this ticket's room; in a pre-queue, soon enough
        to keep the place and to be back at the start."""
        room = ticket.room
        polling = self._settings.polling
        after = schedule.poll_after_ms(ticket, polling, self.policy(room), self.max_rate(room))
        return self._by_the_start(room, after)

    def _by_the_start(self, room: str, after_ms: int) -> int:
        event = self._events.get(room)
        if event is None or self.phase(room) is not Phase.PREQUEUE:
            return after_ms
        until_start = event.schedule.starts_at - self.clock()
        return max(self._settings.polling.min_ms, min(after_ms, until_start))

    def status_body(self, ticket: Ticket) -> dict[str, object]:
        """See `schedule.status_body`, for this ticket's room, with its `phase` (`open` or
        `closed` without an event) and the operator's `message` when there is one; in a
        pre-queue also `startsAt`, and no position (everyone in it is equal until the draw)."""
        room = ticket.room
        polling = self._settings.polling
        basis = self.basis(room, ticket)
        body = schedule.status_body(ticket, polling, self.policy(room), self.max_rate(room), basis)
        phase = self.phase(room)
        body["phase"] = phase.value
        message = self._live.get(room, {}).get(MESSAGE_FIELD)
        if message:
            body["message"] = message
        event = self._events.get(room)
        if event is not None:
            if phase is Phase.PREQUEUE and ticket.status is Status.WAITING:
                body["position"] = None
                body["estimatedWaitSeconds"] = None
                body["estimatedWaitRange"] = None
                body["startsAt"] = format_instant(event.schedule.starts_at)
            after = body["pollAfterMs"]
            assert isinstance(after, int)
            body["pollAfterMs"] = self._by_the_start(room, after)
        return body

    def basis(self, room: str, ticket: Ticket | None = None) -> Basis:
        """The numbers a wait range of the room is made of (`estimates.wait_range`): its live
        capacity, its fastest rate within new-visitors-per-minute, the expected stay, and the
        spread and drain of its grants, which a `ticket` of the room seen now updates."""
        policy = self.effective(room)
        fastest = self.max_rate(room)
        if policy.per_minute > 0:
            fastest = min(fastest, policy.per_minute / 60)
        if ticket is not None and ticket.grant_rate > 0:
            spread, drain = self._watch.observe(ticket, self.clock())
        else:
            spread, drain = self._watch.last(room)
        return Basis(policy.capacity, fastest, self.expected_stay_s(room), spread, drain)

    def expected_stay_s(self, room: str) -> float:
        """`lifecycle.expected-stay` of the room (0: its idle timeout), within max-session."""
        policy = self.policy(room)
        known = self._stays.get(room)
        if known is not None and known[0] is policy:
            return known[1]  # asked on every poll: worked out once per policy in force
        key = room if room in self.configured else self.default
        override = self._settings.rooms.overrides.get(key, RoomOverride()).expected_stay
        stay = self._settings.lifecycle.expected_stay if override is None else override
        stay_ms = stay * 1000 or policy.idle_timeout_ms
        if policy.max_session_ms > 0:
            stay_ms = min(stay_ms, policy.max_session_ms)
        if room in self.configured or room in self._live:
            self._stays[room] = (policy, stay_ms / 1000)
        return stay_ms / 1000

    def policy(self, room: str) -> RoomPolicy:
        """The policy of a room: defaults merged with its override, and the operator's live
        session cap (`MAX_SESSION_FIELD`) when one is set."""
        capped = self._capped.get(room)
        if capped is not None:
            return capped
        # Unlisted rooms share the default policy, so random room ids cannot grow this cache.
        key = room if room in self.configured else self.default
        found = self._policies.get(key)
        if found is None:
            found = self._policies[key] = policy_for(self._settings, key)
        return found
