"""The grant loop: one tick per room, survives store errors, starts and stops cleanly."""

from __future__ import annotations

import asyncio

from gatekeeper.config import load_config
from gatekeeper.core.granter import Granter
from gatekeeper.core.rooms import Rooms
from gatekeeper.errors import StoreError
from gatekeeper.ids import new_session_id
from gatekeeper.store.base import GrantReport, RoomPolicy, Status, Ticket
from gatekeeper.store.memory import MemoryStore
from tests.conftest import FakeClock

SETTINGS = load_config(
    None,
    environ={},
    overrides={"waitingroom.processing.capacity": 1, "waitingroom.processing.rate-ms": 10},
)


class FlakyStore(MemoryStore):
    """Fails the first `failures` grant calls, like a Redis that blips."""

    def __init__(self, failures: int, clock: FakeClock) -> None:
        super().__init__(clock)
        self.failures = failures
        self.calls = 0

    async def grant(self, room: str, policy: RoomPolicy) -> GrantReport:
        self.calls += 1
        if self.calls <= self.failures:
            raise StoreError("blip")
        return await super().grant(room, policy)


async def test_tick_grants_in_every_known_room(clock: FakeClock) -> None:
    store = MemoryStore(clock)
    rooms = Rooms(SETTINGS)
    policy = rooms.policy("E1")
    holders = {r: new_session_id(r) for r in ("E1", "E2")}
    waiters = {r: new_session_id(r) for r in ("E1", "E2")}
    for room in ("E1", "E2"):
        await store.join(room, holders[room], policy)
        await store.join(room, waiters[room], policy)
        await store.leave(holders[room], policy)
    reports = await Granter(store, rooms, 10).tick()
    assert {room: r.granted for room, r in reports.items() if r.granted} == {
        "E1": (waiters["E1"],),
        "E2": (waiters["E2"],),
    }
    assert "default" in reports


async def test_loop_survives_store_errors_and_keeps_granting(clock: FakeClock) -> None:
    store = FlakyStore(failures=5, clock=clock)
    rooms = Rooms(SETTINGS)
    policy = rooms.policy("R")
    holder, waiter = new_session_id("R"), new_session_id("R")
    await store.join("R", holder, policy)
    await store.join("R", waiter, policy)
    await store.leave(holder, policy)
    granter = Granter(store, rooms, 10)
    granter.start()
    for _ in range(500):
        ticket = await store.poll(waiter, policy)
        if ticket is not None and ticket.status is Status.ACTIVE:
            break
        await asyncio.sleep(0.01)
    await granter.stop()
    assert store.calls > 5
    ticket = await store.poll(waiter, policy)
    assert ticket is not None and ticket.status is Status.ACTIVE


async def test_stop_is_prompt_and_idempotent(clock: FakeClock) -> None:
    granter = Granter(MemoryStore(clock), Rooms(SETTINGS), 60_000)
    granter.start()
    await asyncio.sleep(0.01)
    await asyncio.wait_for(granter.stop(), timeout=1)
    await granter.stop()


async def test_a_live_rate_reaches_the_rooms_on_the_next_tick(clock: FakeClock) -> None:
    store = MemoryStore(clock)
    rooms = Rooms(load_config(None, environ={}))  # batch 10 every 200 ms: 50 admissions/s
    granter = Granter(store, rooms, 200)
    waiter = Ticket("x", "default", Status.WAITING, 249, 250, 100, 0.0)
    assert rooms.max_rate("default") == 50 and rooms.poll_after_ms(waiter) == 1000
    await store.set_rate_ms(1000)
    await granter.tick()
    assert granter.rate_ms == rooms.rate_ms == 1000
    assert rooms.max_rate("default") == 10
    assert rooms.poll_after_ms(waiter) == 20_000  # 250 places are 25 s away at 10/s
    await store.set_rate_ms(None)
    await granter.tick()
    assert rooms.rate_ms == 200 and rooms.max_rate("default") == 50


class CountingStore(MemoryStore):
    """Counts the per-room calls of the grant loop."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.calls: list[tuple[str, str]] = []

    async def controls(self, room: str) -> dict[str, str]:
        self.calls.append(("controls", room))
        return await super().controls(room)

    async def grant(self, room: str, policy: RoomPolicy) -> GrantReport:
        self.calls.append(("grant", room))
        return await super().grant(room, policy)

    async def forget(self, room: str, idle_ms: int) -> bool:
        self.calls.append(("forget", room))
        return await super().forget(room, idle_ms)


FORGETFUL = load_config(
    None,
    environ={},
    overrides={
        "waitingroom.rooms.forget-after": 60,
        "waitingroom.processing.rate-ms": 100,
        "waitingroom.processing.capacity": 1,
    },
)


async def test_idle_rooms_are_forgotten_and_cost_the_tick_nothing(clock: FakeClock) -> None:
    store = CountingStore(clock)
    rooms = Rooms(FORGETFUL)
    granter = Granter(store, rooms, 100, clock=clock)
    idle = [f"idle-{n}" for n in range(50)]
    for room in idle:
        sid = new_session_id(room)
        await store.join(room, sid, rooms.policy(room))
        await store.leave(sid, rooms.policy(room))
    busy = new_session_id("busy")
    await store.join("busy", busy, rooms.policy("busy"))
    await granter.tick()
    assert {room for call, room in store.calls if call == "forget"} == set(idle)
    # Offered once, then not again before a tenth of forget-after.
    store.calls.clear()
    clock.advance(1000)
    await granter.tick()
    assert [c for c in store.calls if c[0] == "forget"] == []
    clock.advance(59_000)
    for _ in range(2):
        await granter.tick()
        await store.poll(busy, rooms.policy("busy"))
    assert await store.rooms() == ["busy"]
    store.calls.clear()
    await granter.tick()
    walked = {room for _, room in store.calls}
    assert walked == {"busy", "default"}
    assert len(store.calls) == 4  # controls and grant in each: no store call for an idle room
    assert rooms.unlisted == 1


async def test_a_room_with_someone_inside_is_never_offered(clock: FakeClock) -> None:
    store = CountingStore(clock)
    rooms = Rooms(FORGETFUL)
    granter = Granter(store, rooms, 100, clock=clock)
    policy = rooms.policy("busy")
    sid = new_session_id("busy")
    await store.join("busy", sid, policy)
    for _ in range(5):
        clock.advance(30_000)
        await store.poll(sid, policy)
        await granter.tick()
    assert ("forget", "busy") not in store.calls
    assert await store.rooms() == ["busy"]


async def test_a_room_joined_again_after_being_forgotten_is_walked_again(
    clock: FakeClock,
) -> None:
    store = CountingStore(clock)
    rooms = Rooms(FORGETFUL)
    granter = Granter(store, rooms, 100, clock=clock)
    policy = rooms.policy("E9")
    holder = new_session_id("E9")
    await store.join("E9", holder, policy)
    await store.leave(holder, policy)
    clock.advance(60_000)
    await granter.tick()
    assert await store.rooms() == []
    first, second = new_session_id("E9"), new_session_id("E9")
    await store.join("E9", first, policy)
    await store.join("E9", second, policy)  # capacity 1: this one waits
    await store.leave(first, policy)
    reports = await granter.tick()
    assert reports["E9"].granted == (second,)
