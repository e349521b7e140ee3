"""Honest waits: a range around the estimated wait, from the grant rate and how much it moves."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from gatekeeper.store.base import RoomPolicy, Status, Ticket

# The range's ends are the modelled wait at -Z and +Z sd (about the 12th and 88th
# percentiles): the narrowest band that covers >= 80% in the churn simulations (bench/eta.py,
# docs/estimates.md), with room to spare for the slowest crowd.
Z = 1.2
# The count of grants over a span varies this many times a Poisson count's (1: departures of
# many independent visitors; more for a room whose visitors leave together).
DISPERSION = 1.0
# Log-sd of the rate a room starts with, and that of the wait modelled from the configured
# numbers before the first grant (an expected stay is a guess).
PRIOR_SD = 0.15
CONFIGURED_SD = 0.5
# The drain is measured over at least FOLLOW_GRANTS grants; a followed waiter not seen for
# FOLLOW_FOR_MS is replaced; positions are taken to move at most MAX_DRAIN times the grants.
FOLLOW_GRANTS = 5
FOLLOW_FOR_MS = 60_000
MAX_DRAIN = 3.0
DRAIN_TAU_MS = 60_000
# How fast the observed-rate variability follows the rate, and when an unseen room is dropped.
SPREAD_TAU_MS = 300_000
FORGET_MS = 600_000


@dataclass(frozen=True, slots=True)
class Basis:
    """A room's configured numbers: what is known before its first grant."""

    capacity: int
    max_rate: float
    """Admissions per second at most: a batch every rate-ms, within new-visitors-per-minute."""
    stay_s: float
    """How long an admitted visitor is expected to stay (`lifecycle.expected-stay`)."""
    spread: float = PRIOR_SD
    """The log-sd of the room's observed grant rate (`RoomWatch`)."""
    drain: float = 1.0
    """How many times faster than the grants positions move (`RoomWatch`)."""

    @classmethod
    def of(cls, policy: RoomPolicy, max_rate: float) -> Basis:
        """A policy's numbers alone: the stay is the idle timeout, the spread the prior."""
        return cls(policy.capacity, max_rate, policy.idle_timeout_ms / 1000)


def configured_wait(ahead: int, active: int, basis: Basis) -> float | None:
    """Seconds until a waiter with `ahead` in front is let in, from the configured numbers.

    Whoever fits in the free places now goes in the next grant steps, at the room's fastest
    rate; the rest wait for places to free, which in steady churn happens at about
    capacity / expected-stay per second (never faster than the fastest rate). None when the
    room admits nobody (capacity or rate 0).
    """
    if basis.capacity <= 0 or basis.max_rate <= 0:
        return None
    want = ahead + 1
    free = max(0, basis.capacity - active)
    churn = min(basis.max_rate, basis.capacity / max(basis.stay_s, 1e-3))
    now = min(want, free)
    return now / basis.max_rate + (want - now) / churn


def _quantile(grants: float, mean_s: float, z: float, sd: float) -> float:
    """The time `grants` grants take, at `z` sd, for a mean of `mean_s`.

    Counting noise: the time to the k-th of Poisson arrivals is Gamma(k); DISPERSION lowers k
    for bursty grants. Its cube root is near normal (Wilson-Hilferty); a log-sd `sd` of the
    future rate adds sd²/9 to that cube root's variance, so both widen one band.
    """
    k = max(grants / DISPERSION, 1e-6)
    root = 1 - 1 / (9 * k) + z * math.sqrt((1 / k + sd * sd) / 9)
    return mean_s * max(root, 0.0) ** 3


def wait_range(ticket: Ticket, basis: Basis) -> tuple[int, int] | None:
    """The `[low, high]` seconds a waiter is likely (~80%) to be let in within.

    With an observed grant rate the central estimate is `(ahead + 1) / rate` (see
    `schedule.estimated_wait_seconds`, always inside the range) with the basis's spread of
    that rate; before the first grant it is `configured_wait`, with CONFIGURED_SD. An admitted
    session is at (0, 0); an ended one, or a room that admits nobody, has no range.
    """
    if ticket.status is Status.ACTIVE:
        return (0, 0)
    if ticket.status is not Status.WAITING:
        return None
    # `ahead` is an upper bound (see Ticket): the shortest wait has positions move at the
    # room's drain, faster than the grants.
    fewest, spread = ticket.ahead / basis.drain, basis.spread
    if ticket.grant_rate > 0:
        mean = (ticket.ahead + 1) / ticket.grant_rate
        shortest = (fewest + 1) / ticket.grant_rate
    else:
        spread = CONFIGURED_SD
        found = configured_wait(ticket.ahead, ticket.active, basis)
        if found is None:
            return None
        mean = found
        shortest = configured_wait(math.floor(fewest), ticket.active, basis) or found
    central = math.ceil(mean)
    low = math.floor(_quantile(fewest + 1, shortest, -Z, spread))
    high = math.ceil(_quantile(ticket.ahead + 1, mean, Z, spread))
    return (min(low, central), max(high, central))


@dataclass(slots=True)
class _Seen:
    at: int
    mean: float
    var: float
    drain: float = 1.0
    followed: str = ""
    """The waiter whose position is being followed ("" = none), its `ahead` and when."""
    ahead: int = 0
    ahead_at: int = 0


class RoomWatch:
    """Per room, what polls show of its grant rate: a decaying mean and variance of its log
    (the spread), and how much faster than the grants positions move (the drain).

    Positions move faster when waiters in front gave up or left: they still count in `ahead`
    until the grant step passes them. One waiter per room is followed from poll to poll to
    see it. One O(1) update per poll; the rate is a property of the room at an instant, so
    polls at the same millisecond count once. Rooms unseen for FORGET_MS are dropped (checked
    at most once a minute), so memory follows the rooms being polled.
    """

    def __init__(self) -> None:
        self._rooms: dict[str, _Seen] = {}
        self._swept = 0

    def observe(self, ticket: Ticket, now: int) -> tuple[float, float]:
        """Record what a ticket with a grant rate (>0) shows now; the room's spread, drain."""
        self._sweep(now)
        x = math.log(ticket.grant_rate)
        seen = self._rooms.get(ticket.room)
        if seen is None:
            # Until the room has been watched for a while its variability is the prior's.
            seen = self._rooms[ticket.room] = _Seen(now, x, PRIOR_SD * PRIOR_SD)
        elif now > seen.at:
            a = 1 - math.exp(-(now - seen.at) / SPREAD_TAU_MS)
            d = x - seen.mean
            seen.mean += a * d
            seen.var = (1 - a) * (seen.var + a * d * d)
            seen.at = now
        _follow(seen, ticket, now)
        return math.sqrt(seen.var), seen.drain

    def last(self, room: str) -> tuple[float, float]:
        """The room's spread and drain as last seen (the priors when not seen)."""
        seen = self._rooms.get(room)
        return (PRIOR_SD, 1.0) if seen is None else (math.sqrt(seen.var), seen.drain)

    def retain(self, rooms: Iterable[str]) -> None:
        """Keep only these rooms (the store's room list)."""
        keep = set(rooms)
        for room in [r for r in self._rooms if r not in keep]:
            del self._rooms[room]

    def __len__(self) -> int:
        return len(self._rooms)

    def _sweep(self, now: int) -> None:
        if now - self._swept < 60_000:
            return
        self._swept = now
        for room in [r for r, s in self._rooms.items() if now - s.at >= FORGET_MS]:
            del self._rooms[room]


def _follow(seen: _Seen, ticket: Ticket, now: int) -> None:
    """Update the drain from the followed waiter's progress, or follow this one instead."""
    if seen.followed == ticket.session_id:
        span = now - seen.ahead_at
        granted = ticket.grant_rate * span / 1000
        if ticket.status is not Status.WAITING:
            seen.followed = ""
        elif granted >= FOLLOW_GRANTS:
            ratio = min(max((seen.ahead - ticket.ahead) / granted, 1.0), MAX_DRAIN)
            a = 1 - math.exp(-span / DRAIN_TAU_MS)
            seen.drain += a * (ratio - seen.drain)
            seen.ahead, seen.ahead_at = ticket.ahead, now
        return
    # A followed waiter that stopped polling (or got in unseen) is let go after a while.
    lapsed = now - seen.ahead_at > FOLLOW_FOR_MS
    if (not seen.followed or lapsed) and ticket.ahead >= FOLLOW_GRANTS:
        if ticket.status is Status.WAITING:
            seen.followed, seen.ahead, seen.ahead_at = ticket.session_id, ticket.ahead, now
