"""Are waiters let in within the wait range they were quoted? A churning crowd, virtual clock.

    .venv/bin/python -m bench.eta                  # every crowd shape, a table (a few seconds)
    .venv/bin/python -m bench.eta --only steady --seed 3 --minutes 20

The real embedded store, grant loop (`Granter.tick`) and poll answers (`Rooms.status_body`) run
on a clock this module moves; nothing waits for real time. Visitors arrive at random (Poisson,
plus an optional burst at the start) into one room with a capacity. Whoever gets a place at
once stays; the others wait, and poll again after the `pollAfterMs` each answer gives (with the
waiting page's ±20% jitter): each answer is a quote. Some waiters give up. Admitted visitors
claim their place at their next poll, stay a random time (lognormal around the shape's mean),
then leave or go idle (the store ends them after the idle timeout).

A waiter's admission is the grant step that let it in. The report, per shape, for waiters who
joined after the first minute and did not give up: the share admitted inside the range of their
last quote before admission (the goal: >= 80%), the same over every quote they were given, and
how wide the ranges were (median high / low, and (high - low) / estimate). Quotes given before
the room's first grant (the configured-number model) are counted apart.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import math
import random
import statistics
import sys
from dataclasses import dataclass, field, replace

from gatekeeper.config import load_config
from gatekeeper.core.granter import Granter
from gatekeeper.core.rooms import Rooms
from gatekeeper.store.base import Status
from gatekeeper.store.memory import MemoryStore

ROOM = "default"
START_MS = 1_900_000_000_000
WARMUP_MS = 60_000
FAR_S = 30
# A visitor's state in the simulation: what its next due event does.
WAITING, GONE, ADMITTED, STAYING, IDLE, DONE = range(6)


@dataclass(frozen=True, slots=True)
class Shape:
    """A crowd: its room's numbers, arrivals, stays and patience."""

    name: str
    capacity: int = 40
    stay_s: float = 30.0
    """Mean stay of an admitted visitor (lognormal with log-sd `stay_sd`)."""
    stay_sd: float = 0.6
    load: float = 1.1
    """Arrivals per second as a share of capacity / stay (above 1: the line grows)."""
    burst: int = 0
    """Visitors arriving within the first 5 s, on top of the steady arrivals."""
    minutes: float = 8.0
    idle_share: float = 0.2
    """Admitted visitors who go idle (ended after the idle timeout) instead of leaving."""
    abandon: float = 0.1
    patience_s: float = 90.0
    idle_timeout_s: float = 30.0
    waiting_timeout_s: float = 60.0
    expected_stay_s: float = 0.0
    """`lifecycle.expected-stay` (0: the idle timeout)."""
    batch: int = 5
    rate_ms: int = 200
    seed: int = 7


SHAPES = (
    Shape("steady", expected_stay_s=30.0),
    Shape("burst", burst=200, load=0.8, minutes=10.0, expected_stay_s=30.0),
    Shape("slow-stay", capacity=60, stay_s=120.0, stay_sd=0.9, minutes=14.0, load=1.15,
          idle_timeout_s=60.0, waiting_timeout_s=120.0, abandon=0.15, patience_s=240.0),
)  # fmt: skip


@dataclass(slots=True)
class Visitor:
    arrive: int
    stay: int
    give_up: int
    idles: bool
    sid: str
    state: int = WAITING
    waited: bool = False
    admitted_at: int = 0
    leave_at: int = 0
    quotes: list[tuple[int, int, int, int | None]] = field(default_factory=list)
    """(when, low s, high s, estimatedWaitSeconds) of each answer while waiting."""


@dataclass(frozen=True, slots=True)
class Result:
    shape: Shape
    measured: int
    last_inside: float
    all_inside: float
    quotes: int
    ratio: float
    """Median high / low over the quotes with low >= 1 s."""
    width: float
    """Median (high - low) / estimate over the quotes with an estimate >= 1 s."""
    far_inside: float
    far_ratio: float
    """Coverage and median high / low of the quotes with an estimate >= FAR_S."""
    early_quotes: int
    early_inside: float
    """Quotes before the room's first grant (configured numbers), and the share covered."""


def _crowd(s: Shape, rng: random.Random) -> list[Visitor]:
    end = START_MS + round(s.minutes * 60_000)
    per_s = s.load * s.capacity / s.stay_s
    times = [START_MS + rng.randrange(5_000) for _ in range(s.burst)]
    t = float(START_MS)
    while True:
        t += rng.expovariate(per_s) * 1000
        if t >= end:
            break
        times.append(round(t))
    times.sort()
    # A lognormal with mean stay_s: mu = ln(mean) - sd²/2.
    mu = math.log(s.stay_s) - s.stay_sd**2 / 2
    crowd = []
    for i, at in enumerate(times):
        stay = round(rng.lognormvariate(mu, s.stay_sd) * 1000)
        quits = rng.random() < s.abandon
        give_up = at + round(rng.expovariate(1 / s.patience_s) * 1000) if quits else 1 << 62
        sid = f"{i:022d}.{ROOM}"
        crowd.append(Visitor(at, max(stay, 1000), give_up, rng.random() < s.idle_share, sid))
    return crowd


class Simulation:
    """Arrivals, due polls and leaves in time order, then one grant step per `rate_ms`."""

    def __init__(self, s: Shape) -> None:
        self.s = s
        self.now = START_MS
        settings = load_config(None, environ={}, overrides={
            "waitingroom.processing.capacity": s.capacity,
            "waitingroom.processing.batch-size": s.batch,
            "waitingroom.processing.rate-ms": s.rate_ms,
            "waitingroom.lifecycle.idle-timeout": s.idle_timeout_s,
            "waitingroom.lifecycle.waiting-timeout": s.waiting_timeout_s,
            "waitingroom.lifecycle.claim-window": 30,
            "waitingroom.lifecycle.expected-stay": s.expected_stay_s,
        })  # fmt: skip
        self.store = MemoryStore(clock=self.clock)
        self.rooms = Rooms(settings, clock=self.clock)
        self.granter = Granter(self.store, self.rooms, s.rate_ms, clock=self.clock)
        self.policy = self.rooms.policy(ROOM)
        self.rng = random.Random(s.seed)
        self.crowd = _crowd(s, self.rng)
        self.index = {v.sid: i for i, v in enumerate(self.crowd)}
        self.due: list[tuple[int, int]] = [(v.arrive, i) for i, v in enumerate(self.crowd)]
        heapq.heapify(self.due)
        self.renew_ms = round(s.idle_timeout_s * 500)

    def clock(self) -> int:
        return self.now

    def _quote(self, v: Visitor, i: int, body: dict[str, object]) -> None:
        low_high, est, after = (body[k] for k in ("estimatedWaitRange", "estimatedWaitSeconds",
                                                 "pollAfterMs"))  # fmt: skip
        assert isinstance(low_high, list) and (est is None or isinstance(est, int))
        assert isinstance(after, int)
        v.quotes.append((self.now, low_high[0], low_high[1], est))
        heapq.heappush(self.due, (self.now + round(after * self.rng.uniform(0.8, 1.2)), i))

    def _stay(self, v: Visitor, i: int) -> None:
        v.state, v.leave_at = STAYING, self.now + v.stay
        heapq.heappush(self.due, (min(v.leave_at, self.now + self.renew_ms), i))
        v.admitted_at = v.admitted_at or self.now

    async def _act(self, i: int) -> None:
        v = self.crowd[i]
        if v.state == WAITING and not v.quotes and not v.waited:
            joined = await self.store.join(ROOM, v.sid, self.policy)
            if joined.status is Status.ACTIVE:
                return self._stay(v, i)
            v.waited = True
            return self._quote(v, i, self.rooms.status_body(joined))
        if v.state in (WAITING, ADMITTED):
            if v.state == WAITING and v.give_up <= self.now:
                v.state = GONE  # stops polling; the store ends it (or admits a ghost)
                return
            ticket = await self.store.poll(v.sid, self.policy)
            if ticket is None or ticket.status not in (Status.WAITING, Status.ACTIVE):
                v.state = DONE  # lost its place: not expected with these poll intervals
            elif ticket.status is Status.ACTIVE:
                self._stay(v, i)
            else:
                self._quote(v, i, self.rooms.status_body(ticket))
        elif v.state == STAYING:
            if self.now < v.leave_at:
                await self.store.poll(v.sid, self.policy)
                heapq.heappush(self.due, (min(v.leave_at, self.now + self.renew_ms), i))
            elif v.idles:
                v.state = IDLE  # silent from now: the idle timeout frees the place
            else:
                await self.store.leave(v.sid, self.policy)
                v.state = DONE

    async def run(self) -> list[Visitor]:
        end = START_MS + round(self.s.minutes * 60_000)
        tick = START_MS
        while tick <= end:
            while self.due and self.due[0][0] <= tick:
                self.now, i = heapq.heappop(self.due)
                await self._act(i)
            self.now = tick
            for report in (await self.granter.tick()).values():
                for sid in report.granted:
                    v = self.crowd[self.index[sid]]
                    v.admitted_at = tick
                    if v.state == WAITING:
                        v.state = ADMITTED  # claims at its next poll
            tick += self.s.rate_ms
        return self.crowd


def _inside(quote: tuple[int, int, int, int | None], at: int) -> bool:
    when, low, high, _ = quote
    return low * 1000 <= at - when <= high * 1000


def measure(s: Shape) -> Result:
    """Run one crowd and score the quotes of its waiters."""
    crowd = asyncio.run(Simulation(s).run())
    # Waiters admitted (and who came for it: no ghosts), joined after the first minute.
    done = [v for v in crowd if v.waited and v.admitted_at and v.state != GONE and v.quotes]
    measured = [v for v in done if v.arrive >= START_MS + WARMUP_MS]
    last = [_inside(v.quotes[-1], v.admitted_at) for v in measured]
    rated = [(q, v.admitted_at) for v in measured for q in v.quotes if q[3] is not None]
    early = [(q, v.admitted_at) for v in done for q in v.quotes if q[3] is None]
    ratios = [q[2] / q[1] for q, _ in rated if q[1] >= 1]
    widths = [(q[2] - q[1]) / q[3] for q, _ in rated if q[3]]
    far = [(q, at) for q, at in rated if (q[3] or 0) >= FAR_S]
    far_ratios = [q[2] / q[1] for q, _ in far if q[1] >= 1]
    return Result(
        shape=s,
        measured=len(measured),
        last_inside=_share(last),
        all_inside=_share([_inside(q, at) for q, at in rated]),
        quotes=len(rated),
        ratio=statistics.median(ratios) if ratios else math.nan,
        width=statistics.median(widths) if widths else math.nan,
        far_inside=_share([_inside(q, at) for q, at in far]),
        far_ratio=statistics.median(far_ratios) if far_ratios else math.nan,
        early_quotes=len(early),
        early_inside=_share([_inside(q, at) for q, at in early]),
    )


def _share(flags: list[bool]) -> float:
    return sum(flags) / len(flags) if flags else math.nan


def table(results: list[Result]) -> str:
    head = ("shape", "waiters", "last quote inside", "every quote inside", "median high/low",
            "median width/est", f"quotes >= {FAR_S} s: inside, high/low",
            "before 1st grant inside")  # fmt: skip
    rows = [
        (r.shape.name, str(r.measured), f"{r.last_inside:.1%}",
         f"{r.all_inside:.1%} of {r.quotes}", f"{r.ratio:.2f}", f"{r.width:.2f}",
         f"{r.far_inside:.1%}, {r.far_ratio:.2f}",
         f"{r.early_inside:.1%} of {r.early_quotes}" if r.early_quotes else "-")
        for r in results
    ]  # fmt: skip
    widths = [max(len(row[c]) for row in (head, *rows)) for c in range(len(head))]
    lines = [" | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
             for row in (head, *rows)]  # fmt: skip
    lines.insert(1, "-|-".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench.eta",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--only", help="comma-separated shapes (" + ",".join(s.name for s in SHAPES))
    ap.add_argument("--seed", type=int, help="the crowds' seed (default: each shape's)")
    ap.add_argument("--minutes", type=float, help="simulated minutes (default: each shape's)")
    a = ap.parse_args(argv)
    chosen = [s for s in SHAPES if not a.only or s.name in a.only.split(",")]
    if not chosen:
        ap.error("no such shape")
    if a.seed is not None:
        chosen = [replace(s, seed=a.seed) for s in chosen]
    if a.minutes is not None:
        chosen = [replace(s, minutes=a.minutes) for s in chosen]
    results = [measure(s) for s in chosen]
    print(table(results))
    return 0 if all(r.last_inside >= 0.8 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
