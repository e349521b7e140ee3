"""The store contract for forgetting idle rooms, run against every backend (see test_contract)."""

from __future__ import annotations

from gatekeeper.ids import new_session_id
from gatekeeper.store.base import Control, Mode, RoomPolicy, Status, Store
from tests.conftest import FakeClock

ROOM = "F1"
IDLE_MS = 600_000
LONG_LEASE = RoomPolicy(2, 10, 30_000, 10_000, 3_600_000, 120_000)
"""Admitted sessions outlive IDLE_MS."""


async def _join_and_leave(store: Store, policy: RoomPolicy, room: str = ROOM) -> str:
    sid = new_session_id(room)
    await store.join(room, sid, policy)
    assert await store.leave(sid, policy)
    return sid


async def test_an_empty_room_is_forgotten_only_once_idle_long_enough(
    store: Store, policy: RoomPolicy, clock: FakeClock
):
    await _join_and_leave(store, policy)
    assert await store.rooms() == [ROOM]
    clock.advance(IDLE_MS - 1)
    assert await store.forget(ROOM, IDLE_MS) is False
    assert await store.rooms() == [ROOM]
    clock.advance(1)
    assert await store.forget(ROOM, IDLE_MS) is True
    assert await store.rooms() == []
    assert await store.forget(ROOM, IDLE_MS) is False


async def test_a_join_after_forget_is_granted_and_lists_the_room_again(
    store: Store, policy: RoomPolicy, clock: FakeClock
):
    await _join_and_leave(store, policy)
    clock.advance(IDLE_MS)
    assert await store.forget(ROOM, IDLE_MS)
    first, second, third = (new_session_id(ROOM) for _ in range(3))
    ticket = await store.join(ROOM, first, policy)
    assert (ticket.status, ticket.waiting, ticket.active) == (Status.ACTIVE, 0, 1)
    assert await store.rooms() == [ROOM]
    await store.join(ROOM, second, policy)
    waiter = await store.join(ROOM, third, policy)
    assert (waiter.status, waiter.ahead, waiter.waiting) == (Status.WAITING, 0, 1)
    await store.leave(first, policy)
    assert (await store.grant(ROOM, policy)).granted == (third,)


async def test_a_room_with_active_sessions_is_never_forgotten(store: Store, clock: FakeClock):
    policy = LONG_LEASE
    sid = new_session_id(ROOM)
    await store.join(ROOM, sid, policy)
    clock.advance(IDLE_MS)
    assert await store.forget(ROOM, 1) is False
    assert await store.rooms() == [ROOM]
    ticket = await store.poll(sid, policy)
    assert ticket is not None and (ticket.status, ticket.active) == (Status.ACTIVE, 1)
    # Still listed a whole forget-after later: it was put back with a fresh listing.
    assert await store.forget(ROOM, IDLE_MS) is False
    assert await store.rooms() == [ROOM]


async def test_a_room_with_waiters_is_never_forgotten(
    store: Store, policy: RoomPolicy, clock: FakeClock
):
    await store.set_controls(ROOM, {Control.MODE: Mode.PAUSED})
    waiter = new_session_id(ROOM)
    assert (await store.join(ROOM, waiter, policy)).status is Status.WAITING
    clock.advance(IDLE_MS)
    assert await store.forget(ROOM, IDLE_MS) is False
    assert await store.rooms() == [ROOM]
    assert (await store.counts(ROOM)).waiting == 1
    assert await store.controls(ROOM) == {"mode": "paused"}


async def test_a_waiter_is_granted_after_a_refused_forget(
    store: Store, policy: RoomPolicy, clock: FakeClock
):
    await store.set_controls(ROOM, {Control.MODE: Mode.PAUSED})
    waiter = new_session_id(ROOM)
    await store.join(ROOM, waiter, policy)
    clock.advance(policy.waiting_timeout_ms - 1)
    assert await store.forget(ROOM, 1) is False
    await store.set_controls(ROOM, {Control.MODE: None})
    assert (await store.grant(ROOM, policy)).granted == (waiter,)
    assert await store.rooms() == [ROOM]


async def test_a_forgotten_room_keeps_its_live_controls(
    store: Store, policy: RoomPolicy, clock: FakeClock
):
    await store.set_controls(ROOM, {Control.CAPACITY: "5", Control.MODE: Mode.PAUSED})
    await _join_and_leave(store, policy)
    clock.advance(IDLE_MS)
    assert await store.forget(ROOM, IDLE_MS)
    assert await store.controls(ROOM) == {"capacity": "5", "mode": "paused"}
    # Paused still: the next visitor waits, as before the room was forgotten.
    assert (await store.join(ROOM, new_session_id(ROOM), policy)).status is Status.WAITING


async def test_a_forgotten_room_starts_afresh_and_its_ended_sessions_stay_readable(
    store: Store, clock: FakeClock
):
    policy = RoomPolicy(1, 1, 600_000, 600_000, 600_000, 3_600_000)
    holder, waiter = new_session_id(ROOM), new_session_id(ROOM)
    await store.join(ROOM, holder, policy)
    await store.join(ROOM, waiter, policy)
    await store.leave(holder, policy)
    assert (await store.grant(ROOM, policy)).granted == (waiter,)
    await store.leave(waiter, policy)
    assert (await store.counts(ROOM)).grant_rate > 0
    clock.advance(IDLE_MS)
    assert await store.forget(ROOM, IDLE_MS)
    counts = await store.counts(ROOM)
    assert (counts.waiting, counts.active, counts.grant_rate) == (0, 0, 0.0)
    ended = await store.poll(waiter, policy)
    assert ended is not None and (ended.status, ended.waiting, ended.active) == (Status.LEFT, 0, 0)
    assert await store.leave(holder, policy) is True
    assert await store.rooms() == []


async def test_forget_touches_only_its_room(store: Store, clock: FakeClock):
    policy = LONG_LEASE
    await _join_and_leave(store, policy)
    other = new_session_id("F2")
    await store.join("F2", other, policy)
    clock.advance(IDLE_MS)
    assert await store.forget(ROOM, IDLE_MS)
    assert await store.forget("F3", IDLE_MS) is False
    assert await store.rooms() == ["F2"]
    ticket = await store.poll(other, policy)
    assert ticket is not None and ticket.status is Status.ACTIVE
