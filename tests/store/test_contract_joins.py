"""The join controls of every backend: lazy joins, per-client buckets, the queue cap."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gatekeeper.errors import JoinRefused, Refusal
from gatekeeper.ids import new_session_id
from gatekeeper.store.base import Entry, RoomPolicy, Status, Store
from tests.conftest import FakeClock

ROOM = "E1"


async def fill(store: Store, policy: RoomPolicy) -> None:
    for _ in range(policy.capacity):
        await store.join(ROOM, new_session_id(ROOM), policy)


async def test_a_lazy_join_that_would_wait_writes_nothing(store: Store, policy: RoomPolicy):
    await fill(store, policy)
    await store.join(ROOM, new_session_id(ROOM), policy)  # one waiter
    sid = new_session_id(ROOM)
    ticket = await store.join(ROOM, sid, policy, entry=Entry("192.0.2.1", lazy=True))
    assert ticket.status is Status.WAITING
    assert (ticket.ahead, ticket.waiting, ticket.active) == (1, 1, 2), "everyone is ahead"
    assert await store.poll(sid, policy) is None
    assert (await store.counts(ROOM)).waiting == 1
    placed = await store.join(ROOM, sid, policy, entry=Entry("192.0.2.1"))
    assert (placed.status, placed.ahead, placed.waiting) == (Status.WAITING, 1, 2)


async def test_a_lazy_join_admitted_at_once_holds_the_claim_window(
    store: Store, policy: RoomPolicy, clock: FakeClock
):
    lazy = Entry("192.0.2.1", lazy=True)
    unclaimed, claimed = new_session_id(ROOM), new_session_id(ROOM)
    assert (await store.join(ROOM, unclaimed, policy, entry=lazy)).status is Status.ACTIVE
    assert (await store.join(ROOM, claimed, policy, entry=lazy)).status is Status.ACTIVE
    clock.advance(policy.claim_window_ms - 1)
    assert (await store.poll(claimed, policy)).status is Status.ACTIVE  # type: ignore[union-attr]
    clock.advance(2)
    report = await store.grant(ROOM, policy)
    assert report.expired_active == 1 and report.active == 1
    assert (await store.poll(unclaimed, policy)).status is Status.EXPIRED  # type: ignore[union-attr]
    clock.advance(policy.idle_timeout_ms - 10)
    assert (await store.poll(claimed, policy)).status is Status.ACTIVE  # type: ignore[union-attr]


async def test_a_client_bucket_refuses_and_refills(
    store: Store, policy: RoomPolicy, clock: FakeClock
):
    limited = replace(policy, client_joins_per_minute=6, client_join_burst=2)
    me, other = Entry("192.0.2.1"), Entry("192.0.2.2")
    for _ in range(2):
        await store.join(ROOM, new_session_id(ROOM), limited, entry=me)
    sid = new_session_id(ROOM)
    with pytest.raises(JoinRefused) as refused:
        await store.join(ROOM, sid, limited, entry=me)
    assert refused.value.reason is Refusal.RATE_LIMITED and refused.value.retry_after_s == 10
    assert await store.poll(sid, limited) is None, "a refused join writes nothing"
    await store.join(ROOM, new_session_id(ROOM), limited, entry=other)
    await store.join(ROOM, new_session_id(ROOM), limited, entry=Entry())  # no client: no limit
    clock.advance(9_999)
    with pytest.raises(JoinRefused):
        await store.join(ROOM, new_session_id(ROOM), limited, entry=me)
    clock.advance(1)
    await store.join(ROOM, new_session_id(ROOM), limited, entry=me)
    # A retried join of an existing session spends nothing and is never refused.
    existing = new_session_id(ROOM)
    clock.advance(10_000)
    await store.join(ROOM, existing, limited, entry=me)
    for _ in range(3):
        assert (await store.join(ROOM, existing, limited, entry=me)).session_id == existing


async def test_lazy_joins_that_write_nothing_spend_no_token(store: Store, policy: RoomPolicy):
    limited = replace(policy, client_joins_per_minute=1, client_join_burst=1)
    await fill(store, policy)
    for _ in range(50):
        lazy = Entry("192.0.2.1", lazy=True)
        ticket = await store.join(ROOM, new_session_id(ROOM), limited, entry=lazy)
        assert ticket.status is Status.WAITING
    await store.join(ROOM, new_session_id(ROOM), limited, entry=Entry("192.0.2.1"))
    with pytest.raises(JoinRefused):
        await store.join(ROOM, new_session_id(ROOM), limited, entry=Entry("192.0.2.1"))


async def test_the_queue_cap_refuses_joins_that_would_wait(store: Store, policy: RoomPolicy):
    capped = replace(policy, max_waiting=2)
    await fill(store, capped)
    for _ in range(2):
        await store.join(ROOM, new_session_id(ROOM), capped)
    for entry in (Entry(), Entry("192.0.2.1", lazy=True)):
        sid = new_session_id(ROOM)
        with pytest.raises(JoinRefused) as refused:
            await store.join(ROOM, sid, capped, entry=entry)
        assert refused.value.reason is Refusal.QUEUE_FULL and refused.value.retry_after_s == 30
        assert await store.poll(sid, capped) is None
    assert (await store.counts(ROOM)).waiting == 2
