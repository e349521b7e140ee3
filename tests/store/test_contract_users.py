"""Identity-bound places in every backend: one place per user, and the priority line."""

from __future__ import annotations

from dataclasses import replace

from gatekeeper.ids import new_session_id
from gatekeeper.store.base import Control, Entry, EventField, Mode, RoomPolicy, Status, Store
from tests.conftest import FakeClock

ROOM = "presale"
MINUTE = 60_000


async def join(store: Store, policy: RoomPolicy, user: str = "", priority: int = 0) -> str:
    """A join with an enqueue token's identity; the session that answered."""
    sid = new_session_id(ROOM)
    entry = Entry(user=user, priority=priority)
    return (await store.join(ROOM, sid, policy, entry=entry)).session_id


async def test_a_user_gets_one_place_whatever_the_session_id(store: Store, policy: RoomPolicy):
    await join(store, policy, "filler-1")
    await join(store, policy, "filler-2")  # the room (capacity 2) is full
    first = await join(store, policy, "alice")
    ahead = await join(store, policy, "bob")
    again = new_session_id(ROOM)  # another browser, or a cleared cookie
    ticket = await store.join(ROOM, again, policy, entry=Entry(user="alice"))
    assert ticket.session_id == first != again
    assert (ticket.status, ticket.ahead, ticket.waiting) == (Status.WAITING, 0, 2)
    assert await store.poll(again, policy) is None  # nothing was written for the new id
    assert ahead != first


async def test_an_admitted_user_gets_the_admitted_session_back(store: Store, policy: RoomPolicy):
    first = await join(store, policy, "alice")
    ticket = await store.join(ROOM, new_session_id(ROOM), policy, entry=Entry(user="alice"))
    assert (ticket.session_id, ticket.status, ticket.active) == (first, Status.ACTIVE, 1)


async def test_a_user_whose_session_ended_takes_a_new_place(
    store: Store, policy: RoomPolicy, clock: FakeClock
):
    first = await join(store, policy, "alice")
    await store.leave(first, policy)
    second = await join(store, policy, "alice")
    assert second != first
    # Admitted, then idle past the lease: the place is gone, so a new join is a new place.
    clock.advance(policy.idle_timeout_ms + 1)
    third = await join(store, policy, "alice")
    assert third not in (first, second)
    assert (await store.poll(third, policy)) is not None


async def test_users_are_told_apart_and_a_label_alone_binds_nothing(
    store: Store, policy: RoomPolicy
):
    a = await join(store, policy, "alice")
    b = await join(store, policy, "Alice")
    assert a != b
    sid1, sid2 = new_session_id(ROOM), new_session_id(ROOM)
    await store.join(ROOM, sid1, policy, user_id="carol")
    assert (await store.join(ROOM, sid2, policy, user_id="carol")).session_id == sid2


async def test_priority_waiters_go_first_in_order_and_the_cap_holds(
    store: Store, policy: RoomPolicy
):
    await store.set_controls(ROOM, {Control.MODE: Mode.PAUSED})
    plain = [await join(store, policy, f"p{i}") for i in range(3)]
    vip = [await join(store, policy, f"v{i}", priority=5) for i in range(2)]
    top = await join(store, policy, "top", priority=9)
    late = await join(store, policy, "v-late", priority=5)
    order = [top, *vip, late, *plain]
    for n, sid in enumerate(order):
        ticket = await store.poll(sid, policy)
        assert ticket is not None
        assert ticket.ahead == n, sid
    await store.set_controls(ROOM, {Control.MODE: None})
    roomy = replace(policy, batch_size=100)
    assert (await store.grant(ROOM, roomy)).granted == tuple(order[:2])  # capacity 2
    assert (await store.counts(ROOM)).active == 2
    for sid in order[:2]:
        await store.leave(sid, policy)
    assert (await store.grant(ROOM, roomy)).granted == tuple(order[2:4])
    for sid in order[2:4]:
        await store.leave(sid, policy)
    assert (await store.grant(ROOM, roomy)).granted == tuple(order[4:6])


async def test_a_priority_waiter_is_held_by_its_user_too(store: Store, policy: RoomPolicy):
    await store.set_controls(ROOM, {Control.MODE: Mode.PAUSED})
    await join(store, policy, "p0")
    first = await join(store, policy, "vip", priority=3)
    again = await store.join(ROOM, new_session_id(ROOM), policy, entry=Entry(user="vip"))
    assert (again.session_id, again.ahead) == (first, 0)


async def test_priority_waiters_go_before_an_events_drawn_prequeue(
    store: Store, policy: RoomPolicy, clock: FakeClock
):
    await store.set_controls(
        ROOM, {EventField.OPENS: str(clock.now), EventField.STARTS: str(clock.now + MINUTE)}
    )
    patient = replace(policy, capacity=3, waiting_timeout_ms=10 * MINUTE)
    drawn = [await join(store, patient, f"d{i}") for i in range(2)]
    vip = await join(store, patient, "vip", priority=1)
    assert (await store.poll(vip, patient)) is not None
    clock.advance(MINUTE)
    report = await store.grant(ROOM, patient)
    assert report.granted == (vip, *drawn)


async def test_a_priority_waiter_leaving_or_timing_out_leaves_the_line(
    store: Store, policy: RoomPolicy, clock: FakeClock
):
    await store.set_controls(ROOM, {Control.MODE: Mode.PAUSED})
    gone = await join(store, policy, "v1", priority=2)
    silent = await join(store, policy, "v2", priority=2)
    plain = await join(store, policy, "p")
    await store.leave(gone, policy)
    clock.advance(policy.waiting_timeout_ms // 2)
    assert (await store.poll(plain, policy)) is not None
    clock.advance(policy.waiting_timeout_ms // 2 + 1)
    ticket = await store.poll(plain, policy)
    assert ticket is not None and ticket.ahead == 1  # the silent one, not reaped yet
    await store.set_controls(ROOM, {Control.MODE: None})
    assert (await store.grant(ROOM, policy)).granted == (plain,)
    expired = await store.poll(silent, policy)
    assert expired is not None and expired.status is Status.EXPIRED


async def test_a_forgotten_room_forgets_its_users(
    store: Store, policy: RoomPolicy, clock: FakeClock
):
    first = await join(store, policy, "alice")
    await store.leave(first, policy)
    clock.advance(MINUTE)
    assert await store.forget(ROOM, 1)
    again = await join(store, policy, "alice")
    assert again != first
