"""Why sessions end, and closed rooms: the same contract on every backend (injected clock)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gatekeeper.errors import JoinRefused, Refusal
from gatekeeper.ids import new_session_id
from gatekeeper.store.base import (
    NO_ENTRY,
    REAP_LIMIT,
    Control,
    EndReason,
    Entry,
    Mode,
    RoomPolicy,
    Status,
    Store,
    Ticket,
)
from tests.conftest import FakeClock

ROOM = "E1"
LAZY = Entry("192.0.2.1", lazy=True)


async def join(store: Store, policy: RoomPolicy, entry: Entry = NO_ENTRY) -> str:
    sid = new_session_id(ROOM)
    await store.join(ROOM, sid, policy, entry=entry)
    return sid


async def poll(store: Store, sid: str, policy: RoomPolicy) -> Ticket:
    ticket = await store.poll(sid, policy)
    assert ticket is not None
    return ticket


async def granted(store: Store, policy: RoomPolicy) -> str:
    """A session the grant loop admitted: it joined a full room, then a place came free."""
    holders = []
    while (ticket := await store.join(ROOM, new_session_id(ROOM), policy)).status is Status.ACTIVE:
        holders.append(ticket.session_id)
    waiter = ticket.session_id
    await store.leave(holders[-1], policy)
    assert (await store.grant(ROOM, policy)).granted == (waiter,)
    return waiter


async def close(store: Store) -> None:
    await store.set_controls(ROOM, {Control.MODE: Mode.CLOSED})


def ended(ticket: Ticket) -> tuple[Status, EndReason | None, bool]:
    return ticket.status, ticket.reason, ticket.ended


async def test_live_sessions_have_no_reason(store: Store, policy: RoomPolicy):
    active = await store.join(ROOM, new_session_id(ROOM), policy)
    await join(store, policy)
    waiting = await store.join(ROOM, new_session_id(ROOM), policy)
    assert (active.status, active.reason, active.ended) == (Status.ACTIVE, None, False)
    assert (waiting.status, waiting.reason, waiting.ended) == (Status.WAITING, None, False)
    assert (await poll(store, waiting.session_id, policy)).reason is None


@pytest.mark.parametrize("revoke", [False, True])
async def test_a_leave_ends_as_left_and_a_revoke_as_revoked(
    store: Store, policy: RoomPolicy, revoke: bool
):
    active = await join(store, policy)
    await join(store, policy)
    waiter = await join(store, policy)
    want = (Status.EXPIRED, EndReason.REVOKED) if revoke else (Status.LEFT, EndReason.LEFT)
    for sid in (active, waiter):
        assert await store.leave(sid, policy, revoke=revoke)
        ticket = await poll(store, sid, policy)
        assert ended(ticket) == (*want, False), "a leave is the caller's own count"
        assert await store.leave(sid, policy, revoke=not revoke), "idempotent"
        assert (await poll(store, sid, policy)).reason is want[1], "the first end stands"
        again = await store.join(ROOM, sid, policy)
        assert (again.status, again.reason) == want, "a join of an ended id reads it"


async def test_a_silent_waiter_ends_as_waiting_timeout_at_its_poll(
    store: Store, policy: RoomPolicy, clock: FakeClock
):
    await join(store, policy)
    await join(store, policy)
    waiter = await join(store, policy)
    clock.advance(policy.waiting_timeout_ms)
    assert ended(await poll(store, waiter, policy)) == (
        Status.EXPIRED,
        EndReason.WAITING_TIMEOUT,
        True,
    )
    assert ended(await poll(store, waiter, policy)) == (
        Status.EXPIRED,
        EndReason.WAITING_TIMEOUT,
        False,
    ), "only the poll that ended it says so"


async def test_a_silent_waiter_ends_as_waiting_timeout_at_a_grant_step(
    store: Store, policy: RoomPolicy, clock: FakeClock
):
    await join(store, policy)
    await join(store, policy)
    waiter = await join(store, policy)
    clock.advance(policy.waiting_timeout_ms)
    report = await store.grant(ROOM, policy)
    assert (report.expired_waiting, report.closed) == (1, 0)
    assert report.ended() == {EndReason.WAITING_TIMEOUT: 1}
    assert ended(await poll(store, waiter, policy)) == (
        Status.EXPIRED,
        EndReason.WAITING_TIMEOUT,
        False,
    )


async def test_a_grant_never_claimed_ends_as_claim_timeout(
    store: Store, policy: RoomPolicy, clock: FakeClock
):
    by_grant = await granted(store, policy)
    clock.advance(policy.claim_window_ms)
    assert ended(await poll(store, by_grant, policy)) == (
        Status.EXPIRED,
        EndReason.CLAIM_TIMEOUT,
        True,
    )
    # The same, reaped by a grant step rather than found by a poll.
    at_once = await join(store, policy, LAZY)
    clock.advance(policy.claim_window_ms)
    report = await store.grant(ROOM, policy)
    assert (report.expired_active, report.unclaimed) == (1, 1)
    assert report.ended() == {EndReason.CLAIM_TIMEOUT: 1}
    assert ended(await poll(store, at_once, policy)) == (
        Status.EXPIRED,
        EndReason.CLAIM_TIMEOUT,
        False,
    )


async def test_a_claimed_place_idle_past_its_lease_ends_as_idle_timeout(
    store: Store, policy: RoomPolicy, clock: FakeClock
):
    lazy = await join(store, policy, LAZY)
    by_grant = await granted(store, policy)
    clock.advance(policy.claim_window_ms - 1)
    for sid in (by_grant, lazy):
        assert (await poll(store, sid, policy)).status is Status.ACTIVE  # the claim
    clock.advance(policy.idle_timeout_ms)
    assert ended(await poll(store, by_grant, policy)) == (
        Status.EXPIRED,
        EndReason.IDLE_TIMEOUT,
        True,
    )
    report = await store.grant(ROOM, policy)
    assert (report.expired_active, report.unclaimed) == (1, 0)
    assert report.ended() == {EndReason.IDLE_TIMEOUT: 1}
    assert (await poll(store, lazy, policy)).reason is EndReason.IDLE_TIMEOUT


async def test_a_join_admitted_at_once_is_claimed_from_the_start(
    store: Store, policy: RoomPolicy, clock: FakeClock
):
    # Not a lazy join: its owner has the answer in hand, and its lease is the idle timeout.
    sid = await join(store, policy)
    clock.advance(policy.idle_timeout_ms)
    report = await store.grant(ROOM, policy)
    assert report.ended() == {EndReason.IDLE_TIMEOUT: 1}
    assert (await poll(store, sid, policy)).reason is EndReason.IDLE_TIMEOUT


async def test_a_closed_room_refuses_every_join(store: Store, policy: RoomPolicy):
    await close(store)
    for entry in (Entry(), LAZY, Entry("192.0.2.9")):
        sid = new_session_id(ROOM)
        with pytest.raises(JoinRefused) as refused:
            await store.join(ROOM, sid, policy, entry=entry)
        assert (refused.value.reason, refused.value.retry_after_s) == (Refusal.ROOM_CLOSED, 0)
        assert await store.poll(sid, policy) is None, "a refused join writes nothing"
    counts = await store.counts(ROOM)
    assert (counts.waiting, counts.active) == (0, 0)


async def test_a_closed_room_refuses_before_the_queue_cap(store: Store, policy: RoomPolicy):
    capped = replace(policy, max_waiting=1)
    await join(store, capped)
    await join(store, capped)
    await join(store, capped)
    await close(store)
    with pytest.raises(JoinRefused) as refused:
        await store.join(ROOM, new_session_id(ROOM), capped)
    assert refused.value.reason is Refusal.ROOM_CLOSED


async def test_a_waiter_polling_in_a_closed_room_ends_as_closed(
    store: Store, policy: RoomPolicy, clock: FakeClock
):
    await join(store, policy)
    await join(store, policy)
    waiter, silent = await join(store, policy), await join(store, policy)
    clock.advance(policy.waiting_timeout_ms - 1)
    await poll(store, waiter, policy)
    clock.advance(1)
    await close(store)
    assert ended(await poll(store, waiter, policy)) == (Status.EXPIRED, EndReason.CLOSED, True)
    # One who had lost their place by their own silence keeps that reason.
    assert (await poll(store, silent, policy)).reason is EndReason.WAITING_TIMEOUT
    assert (await store.counts(ROOM)).waiting == 0


async def test_admitted_visitors_keep_their_place_in_a_closed_room(
    store: Store, policy: RoomPolicy, clock: FakeClock
):
    active = await join(store, policy)
    by_grant = await granted(store, policy)
    await close(store)
    for _ in range(3):
        clock.advance(policy.claim_window_ms - 1)
        for sid in (active, by_grant):
            assert ended(await poll(store, sid, policy)) == (Status.ACTIVE, None, False)
        report = await store.grant(ROOM, policy)
        assert (report.active, report.expired_active) == (2, 0)
    assert await store.leave(active, policy)
    assert (await poll(store, active, policy)).reason is EndReason.LEFT
    clock.advance(policy.idle_timeout_ms)
    assert (await poll(store, by_grant, policy)).reason is EndReason.IDLE_TIMEOUT


async def test_a_grant_step_in_a_closed_room_admits_nobody_and_ends_waiters_in_batches(
    store: Store, policy: RoomPolicy, clock: FakeClock
):
    roomy = replace(policy, waiting_timeout_ms=10 * policy.waiting_timeout_ms)
    holder = await join(store, roomy)
    await join(store, roomy)
    waiters = [await join(store, roomy) for _ in range(REAP_LIMIT + 3)]
    await store.leave(holder, roomy)  # a free place: still nobody is let in
    await close(store)
    first = await store.grant(ROOM, roomy)
    assert first.granted == ()
    assert (first.closed, first.expired_waiting, first.waiting) == (REAP_LIMIT, REAP_LIMIT, 3)
    assert first.ended() == {EndReason.CLOSED: REAP_LIMIT}
    # In join order: the first in line are the first told.
    assert ended(await poll(store, waiters[0], roomy)) == (Status.EXPIRED, EndReason.CLOSED, False)
    last = await poll(store, waiters[-1], roomy)
    assert ended(last) == (Status.EXPIRED, EndReason.CLOSED, True), "its poll came first"
    second = await store.grant(ROOM, roomy)
    assert (second.granted, second.closed, second.waiting, second.active) == ((), 2, 0, 1)
    assert (await store.grant(ROOM, roomy)).ended() == {}


async def test_a_reopened_room_lets_joins_in_again(store: Store, policy: RoomPolicy):
    await close(store)
    with pytest.raises(JoinRefused):
        await join(store, policy)
    await store.set_controls(ROOM, {Control.MODE: None})
    assert (await store.join(ROOM, new_session_id(ROOM), policy)).status is Status.ACTIVE
    await join(store, policy)
    waiter = await store.join(ROOM, new_session_id(ROOM), policy)
    assert waiter.status is Status.WAITING
    assert (await poll(store, waiter.session_id, policy)).status is Status.WAITING


async def test_an_admitted_session_ends_at_its_max_session_however_busy(
    store: Store, policy: RoomPolicy, clock: FakeClock
):
    capped = replace(policy, max_session_ms=90_000, idle_timeout_ms=60_000)
    sid = new_session_id(ROOM)
    joined = await store.join(ROOM, sid, capped)
    assert joined.status is Status.ACTIVE and joined.ends_at == clock.now + 90_000
    for _ in range(8):  # busy: a poll every 10 s
        clock.advance(10_000)
        ticket = await store.poll(sid, capped)
        assert ticket is not None and ticket.status is Status.ACTIVE
        assert ticket.ends_at == joined.ends_at
    clock.advance(10_000)
    ended = await store.poll(sid, capped)
    assert ended is not None and ended.status is Status.EXPIRED
    assert ended.reason is EndReason.SESSION_LIMIT


async def test_the_grant_step_ends_capped_sessions_and_counts_them(
    store: Store, policy: RoomPolicy, clock: FakeClock
):
    capped = replace(
        policy, max_session_ms=30_000, claim_window_ms=60_000, waiting_timeout_ms=120_000
    )
    await store.join(ROOM, new_session_id(ROOM), capped)  # admitted at once, claimed
    waiter = new_session_id(ROOM)
    await store.join(ROOM, new_session_id(ROOM), capped)
    await store.join(ROOM, waiter, capped)
    clock.advance(30_000)
    report = await store.grant(ROOM, capped)
    assert report.expired_active == 2 and report.limited == 2
    assert report.ended() == {EndReason.SESSION_LIMIT: 2}
    assert report.granted == (waiter,)
    ticket = await store.poll(waiter, capped)
    assert ticket is not None and ticket.ends_at == clock.now + 30_000, "a grant caps too"
