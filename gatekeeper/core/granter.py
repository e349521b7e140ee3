"""The grant loop: `tick()` is one grant step over every room; `run()` repeats it."""

from __future__ import annotations

import asyncio
import logging
import random

from gatekeeper.clock import Clock, wall_clock
from gatekeeper.core.rooms import Rooms
from gatekeeper.errors import StoreError
from gatekeeper.metrics import Metrics
from gatekeeper.store.base import GrantReport, Store

log = logging.getLogger("gatekeeper.core.granter")


# How often an empty listed room is offered to `Store.forget` while it answers no, as a share of
# `rooms.forget-after` (at least every tick): a room is forgotten at most 10% late.
_FORGET_CHECKS = 10


class Granter:
    """Runs grant steps every `rate_ms` in this process.

    Every replica runs one; each step is atomic in the store, so any number of granters may
    race on the same room without ever exceeding capacity or granting a session twice. A
    listed room found empty is offered to `Store.forget`, so idle rooms leave the work list.
    """

    def __init__(
        self,
        store: Store,
        rooms: Rooms,
        rate_ms: int,
        metrics: Metrics | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.store = store
        self.rooms = rooms
        self.configured_rate_ms = self.rate_ms = rate_ms
        self.metrics = metrics or Metrics()
        self.metrics.set_configured(rooms.configured)
        self._clock = clock or wall_clock
        # Empty listed room → when to offer it to `Store.forget` next (ms).
        self._next_forget: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    async def tick(self) -> dict[str, GrantReport]:
        """One grant step in every known room; a failing room is logged and retried next tick.

        Each tick also picks up what operators changed live: the rate (`rate_ms`) and every
        room's controls, so all replicas apply a change within one tick.
        """
        try:
            live_rate_ms = await self.store.rate_ms()
            listed = set(await self.store.rooms())
        except StoreError:
            self.metrics.store_errors.labels("grant").inc()
            raise
        known = listed | self.rooms.configured
        self.rooms.retain(listed)
        self.metrics.retain(known)
        self._next_forget = {r: t for r, t in self._next_forget.items() if r in listed}
        self.rate_ms = live_rate_ms or self.configured_rate_ms
        self.rooms.set_rate_ms(self.rate_ms)
        reports: dict[str, GrantReport] = {}
        for room in sorted(known):
            try:
                self.rooms.set_live(room, await self.store.controls(room))
                report = await self.store.grant(room, self.rooms.policy(room))
                reports[room] = report
                self.metrics.grant_report(room, report, self.rooms.effective(room).capacity)
                if room in listed and report.waiting == report.active == 0:
                    await self._offer(room)
                else:
                    self._next_forget.pop(room, None)
            except StoreError as exc:
                self.metrics.store_errors.labels("grant").inc()
                log.warning("grant failed in room %s: %s", room, exc)
        return reports

    async def _offer(self, room: str) -> None:
        """Offer an empty room to `Store.forget`: at once, then every tenth of forget-after."""
        now = self._clock()
        if now < self._next_forget.get(room, now):
            return
        idle_ms = self.rooms.forget_after_ms
        # Right after a grant step found the room empty: anyone joining since lists it again.
        if await self.store.forget(room, idle_ms):
            self._next_forget.pop(room, None)
            self.metrics.forget_room(room)
        else:
            self._next_forget[room] = now + max(self.rate_ms, idle_ms // _FORGET_CHECKS)

    async def run(self) -> None:
        """Tick until `stop()`; never dies of an error, only logs it."""
        while not self._stop.is_set():
            try:
                await self.tick()
            except StoreError as exc:
                log.warning("grant tick failed: %s", exc)
            except Exception:
                log.exception("grant tick crashed; continuing")
            # Jitter keeps replicas from ticking in lock-step against one Redis.
            delay = self.rate_ms / 1000 * random.uniform(0.9, 1.1)
            try:
                await asyncio.wait_for(self._stop.wait(), delay)
            except TimeoutError:
                pass

    def start(self) -> None:
        """Start `run()` as a background task."""
        if self._task is None:
            self._stop.clear()
            self._task = asyncio.create_task(self.run(), name="gatekeeper-granter")

    async def stop(self) -> None:
        """Stop the loop and wait for the current tick to finish."""
        self._stop.set()
        if self._task is not None:
            await self._task
            self._task = None
