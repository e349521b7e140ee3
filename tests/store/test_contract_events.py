"""On-sale events in every backend: the pre-queue, the draw by the published rule, FIFO after."""

from __future__ import annotations

from dataclasses import replace

from gatekeeper.core.draw import commitment, drawn_order, new_seed, rank_key
from gatekeeper.ids import new_session_id
from gatekeeper.store.base import Entry, EventField, RoomPolicy, Status, Store
from tests.conftest import FakeClock

ROOM = "tour"
MINUTE = 60_000


async def schedule(store: Store, clock: FakeClock, *, shuffle: bool = True) -> str:
    """An event whose pre-queue opens now and which starts in ten minutes; its seed."""
    seed = new_seed()
    await store.set_controls(
        ROOM,
        {
            EventField.OPENS: str(clock.now),
            EventField.STARTS: str(clock.now + 10 * MINUTE),
            EventField.SHUFFLE: "1" if shuffle else "",
            EventField.SEED: seed,
            EventField.COMMITMENT: commitment(seed),
        },
    )
    return seed


async def join(store: Store, policy: RoomPolicy, seed: str | None) -> str:
    sid = new_session_id(ROOM)
    rank = rank_key(seed, sid) if seed else ""
    await store.join(ROOM, sid, policy, entry=Entry(rank=rank))
    return sid


def kendall_tau(order: list[str], other: list[str]) -> float:
    """Kendall's tau between two orders of the same items (O(n^2): fine for a few hundred)."""
    pos = {sid: i for i, sid in enumerate(other)}
    seq = [pos[sid] for sid in order]
    n, concordant = len(seq), 0
    for i in range(n):
        for j in range(i + 1, n):
            concordant += 1 if seq[i] < seq[j] else -1
    return concordant / (n * (n - 1) / 2)


async def admit_all(store: Store, policy: RoomPolicy, clock: FakeClock) -> list[str]:
    """Grant steps until nobody waits, every admitted visitor leaving at once: admission order."""
    order: list[str] = []
    for _ in range(10_000):
        report = await store.grant(ROOM, policy)
        order += report.granted
        for sid in report.granted:
            await store.leave(sid, policy)
        if report.waiting == 0:
            return order
        clock.advance(10)
    raise AssertionError("the line never emptied")


async def test_the_prequeue_is_admitted_in_the_published_order_and_later_arrivals_after_it(
    store: Store, policy: RoomPolicy, clock: FakeClock
):
    policy = replace(policy, capacity=5, batch_size=5, waiting_timeout_ms=60 * MINUTE)
    seed = await schedule(store, clock)
    early = []
    for _ in range(500):
        early.append(await join(store, policy, seed))
        clock.advance(1_000)  # arriving over the pre-queue's ten minutes
    nobody = await store.grant(ROOM, policy)
    assert nobody.granted == () and nobody.waiting == 500, "nobody is admitted before the start"
    first = await store.poll(early[0], policy)
    assert first is not None and first.status is Status.WAITING
    clock.advance(10 * MINUTE)  # past the start
    late = [await join(store, policy, seed) for _ in range(50)]
    order = await admit_all(store, policy, clock)
    assert (await store.controls(ROOM)).get(EventField.DRAWN) is not None
    assert order[:500] == drawn_order(seed, early), "the drawn order is the published rule's"
    assert order[500:] == late, "later arrivals in FIFO, after every pre-queue visitor"
    assert abs(kendall_tau(order[:500], early)) < 0.1, "arrival order gives no advantage"
    assert commitment(seed) == (await store.controls(ROOM))[EventField.COMMITMENT]


async def test_a_waiter_in_the_drawn_prequeue_sees_its_rank(
    store: Store, policy: RoomPolicy, clock: FakeClock
):
    policy = replace(policy, capacity=1, batch_size=1, waiting_timeout_ms=60 * MINUTE)
    seed = await schedule(store, clock)
    sids = [await join(store, policy, seed) for _ in range(20)]
    clock.advance(10 * MINUTE)
    await store.grant(ROOM, policy)  # the draw, and one admitted
    drawn = drawn_order(seed, sids)
    for place, sid in enumerate(drawn[1:]):
        ticket = await store.poll(sid, policy)
        assert ticket is not None and ticket.ahead == place
    await store.leave(drawn[3], policy)
    ticket = await store.poll(drawn[5], policy)
    assert ticket is not None and ticket.ahead == 3, "one who left is no longer ahead"


async def test_without_shuffle_the_prequeue_keeps_arrival_order(
    store: Store, policy: RoomPolicy, clock: FakeClock
):
    policy = replace(policy, capacity=3, batch_size=3, waiting_timeout_ms=60 * MINUTE)
    await schedule(store, clock, shuffle=False)
    early = [await join(store, policy, None) for _ in range(12)]
    clock.advance(10 * MINUTE)
    assert await admit_all(store, policy, clock) == early


async def test_nobody_is_admitted_at_once_in_the_prequeue_and_silent_waiters_expire(
    store: Store, policy: RoomPolicy, clock: FakeClock
):
    seed = await schedule(store, clock)
    sid = new_session_id(ROOM)
    ticket = await store.join(ROOM, sid, policy, entry=Entry(rank=rank_key(seed, sid)))
    assert ticket.status is Status.WAITING and ticket.active == 0, "an empty room admits nobody"
    lazy = await store.join(ROOM, new_session_id(ROOM), policy, entry=Entry(lazy=True))
    assert lazy.status is Status.WAITING and (await store.counts(ROOM)).waiting == 1
    clock.advance(policy.waiting_timeout_ms + 1)
    report = await store.grant(ROOM, policy)
    assert report.expired_waiting == 1 and report.waiting == 0
    clock.advance(10 * MINUTE)
    assert (await store.grant(ROOM, policy)).granted == (), "an expired waiter is never drawn"


async def test_the_room_closes_at_the_end_of_its_event(
    store: Store, policy: RoomPolicy, clock: FakeClock
):
    policy = replace(
        policy, capacity=1, waiting_timeout_ms=60 * MINUTE, idle_timeout_ms=60 * MINUTE
    )
    seed = await schedule(store, clock)
    await store.set_controls(ROOM, {EventField.ENDS: str(clock.now + 20 * MINUTE)})
    waiters = [await join(store, policy, seed) for _ in range(3)]
    clock.advance(10 * MINUTE)
    admitted = (await store.grant(ROOM, policy)).granted
    assert len(admitted) == 1
    await store.poll(admitted[0], policy)  # the claim
    clock.advance(10 * MINUTE)
    left = [sid for sid in waiters if sid not in admitted]
    ticket = await store.poll(left[0], policy)
    assert ticket is not None and ticket.status is Status.EXPIRED
    assert ticket.reason is not None and ticket.reason.value == "closed"
    still = await store.poll(admitted[0], policy)
    assert still is not None and still.status is Status.ACTIVE, "admitted visitors stay"


async def test_a_join_that_does_not_know_the_event_yet_still_gets_its_drawn_place(
    store: Store, policy: RoomPolicy, clock: FakeClock
):
    # A replica learns of a new event within a tick; a join in between carries no rank key.
    policy = replace(policy, capacity=4, batch_size=4, waiting_timeout_ms=60 * MINUTE)
    seed = await schedule(store, clock)
    early = [await join(store, policy, seed if i % 2 else None) for i in range(40)]
    clock.advance(10 * MINUTE)
    assert (await admit_all(store, policy, clock)) == drawn_order(seed, early)
