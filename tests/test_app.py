"""The composition root: one clock for every part, and a stop that drains before it closes."""

from __future__ import annotations

import asyncio

import httpx

from gatekeeper.app import Runtime, WaitingRoom
from gatekeeper.ids import new_session_id
from gatekeeper.store.base import RoomPolicy, Ticket
from gatekeeper.store.memory import MemoryStore
from tests.conftest import FakeClock
from tests.gate.harness import Origin, gate_settings

DAY_MS = 86_400_000


class SlowStore(MemoryStore):
    """A store whose polls wait for a signal, and which notes what happened in which order."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.events: list[str] = []
        self.release = asyncio.Event()
        self.slow = False

    async def poll(self, session_id: str, policy: RoomPolicy) -> Ticket | None:
        if self.slow:
            self.events.append("poll started")
            await self.release.wait()
            self.events.append("poll done")
        return await super().poll(session_id, policy)

    async def aclose(self) -> None:
        self.events.append("store closed")
        await super().aclose()


def test_one_clock_reaches_every_part() -> None:
    clock = FakeClock()
    runtime = Runtime(gate_settings(), store=MemoryStore(clock), clock=clock)
    assert runtime.admission.clock is clock
    gate = WaitingRoom(Origin(), runtime=runtime)
    assert gate._forwarding._clock is clock
    # The cookie codec signs and checks ages on the same clock: a cookie made now is good
    # until max-age has passed on the injected clock, whatever the machine's clock says.
    codec = runtime.codec
    raw = codec.dumps(new_session_id("default"), clock() + 5000)
    assert codec.loads(raw) is not None
    clock.advance(int(runtime.settings.gate.cookie.max_age * 1000) + 2000)
    assert codec.loads(raw) is None


async def test_stop_drains_store_calls_in_flight_before_closing_the_store() -> None:
    clock = FakeClock()
    store = SlowStore(clock)
    runtime = Runtime(gate_settings(), store=store, clock=clock)
    gate = WaitingRoom(Origin(), runtime=runtime)
    await runtime.start()
    transport = httpx.ASGITransport(app=gate)
    async with httpx.AsyncClient(transport=transport, base_url="https://shop.test") as alice:
        assert (await alice.get("/seats")).status_code == 200  # admitted at once
        store.slow = True
        # In the second half of the pass: renewed once the store says the session is active.
        clock.advance(int(runtime.settings.gate.cookie.pass_ttl * 1000) // 2 + 1)
        renewing = asyncio.ensure_future(alice.get("/seats"))
        for _ in range(100):
            if store.events:
                break
            await asyncio.sleep(0)
        assert store.events == ["poll started"]
        renewing.cancel()  # the visitor went away; its store call is still in flight
        stopping = asyncio.create_task(runtime.stop())
        await asyncio.sleep(0.01)
        assert not stopping.done()  # waiting for the call in flight, store still open
        store.release.set()
        await stopping
    assert store.events == ["poll started", "poll done", "store closed"]


def test_a_missing_cookie_key_is_replaced_once_for_the_process() -> None:
    settings = gate_settings()
    runtime = Runtime(settings.__class__(), store=MemoryStore(FakeClock()))
    assert runtime.random_cookie_key and len(runtime.settings.cookie_keys) == 1
    assert not Runtime(settings, store=MemoryStore(FakeClock())).random_cookie_key
