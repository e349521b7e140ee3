"""One behavioural contract, run against every store backend with an injected clock."""

from __future__ import annotations

import pytest

from gatekeeper.ids import new_session_id, room_of
from gatekeeper.store.base import REAP_LIMIT, Control, Mode, RoomPolicy, Status, Store
from tests.conftest import FakeClock

ROOM = "E1"
OTHER = "E2"


async def join(store: Store, policy: RoomPolicy, room: str = ROOM) -> str:
    sid = new_session_id(room)
    await store.join(room, sid, policy)
    return sid


async def status(store: Store, sid: str, policy: RoomPolicy) -> Status | None:
    ticket = await store.poll(sid, policy)
    return None if ticket is None else ticket.status


async def test_join_is_admitted_at_once_when_the_room_is_free(store: Store, policy: RoomPolicy):
    sid = new_session_id(ROOM)
    ticket = await store.join(ROOM, sid, policy, user_id="U1")
    assert ticket.status is Status.ACTIVE
    assert (ticket.session_id, ticket.room, ticket.active, ticket.waiting) == (sid, ROOM, 1, 0)


async def test_join_waits_when_the_room_is_full(store: Store, policy: RoomPolicy):
    await join(store, policy)
    await join(store, policy)
    sid = new_session_id(ROOM)
    ticket = await store.join(ROOM, sid, policy)
    assert ticket.status is Status.WAITING
    assert (ticket.ahead, ticket.waiting, ticket.active) == (0, 1, 2)


async def test_join_waits_behind_waiters_even_with_a_free_place(store: Store, policy: RoomPolicy):
    a, b = await join(store, policy), await join(store, policy)
    c = await join(store, policy)
    await store.leave(a, policy)
    # A place is free, but c waits: a newcomer must not overtake c.
    d = await join(store, policy)
    assert await status(store, d, policy) is Status.WAITING
    report = await store.grant(ROOM, policy)
    assert report.granted == (c,)
    assert await status(store, b, policy) is Status.ACTIVE
    assert await status(store, d, policy) is Status.WAITING


async def test_join_is_idempotent_by_session_id(store: Store, policy: RoomPolicy):
    for _ in range(2):
        await join(store, policy)
    sid = new_session_id(ROOM)
    first = await store.join(ROOM, sid, policy)
    again = await store.join(ROOM, sid, policy)
    assert first.status is again.status is Status.WAITING
    assert again.waiting == 1
    assert (await store.grant(ROOM, policy)).granted == ()


async def test_ids_of_the_room_queue_and_are_granted_as_they_are(store: Store):
    # The Redis store names a waiter by its id's token (the room is in its keys), and must
    # still hand back the whole id, whatever characters the token and the room name use.
    roomy = RoomPolicy(10, 10, 600_000, 600_000, 600_000, 600_000)
    for room in (ROOM, f"{ROOM}.x-y_z"):
        await store.set_controls(room, {Control.MODE: Mode.PAUSED})
        ids = ["-" * 22 + f".{room}", "_" * 22 + f".{room}", "0" * 22 + f".{room}"]
        ids.append(new_session_id(room))
        for n, sid in enumerate(ids, 1):
            assert (await store.join(room, sid, roomy)).status is Status.WAITING
            assert (await store.join(room, sid, roomy)).waiting == n
        await store.set_controls(room, {Control.MODE: None})
        assert (await store.grant(room, roomy)).granted == tuple(ids)


# Ids no room can have: `room_of` reads None from each.
MALFORMED = [
    "",
    "no-dot-at-all",
    "a" * 22,  # no room suffix
    "a" * 21 + f".{ROOM}",  # token too short
    "a" * 23 + f".{ROOM}",  # token too long
    "a" * 21 + f"!.{ROOM}",  # a character no token has
    "a" * 22 + f".{ROOM}/x",  # a character no room name has
    "a" * 22 + "." + "r" * 65,  # room name too long
    f"x.y.{ROOM}",
    "../../etc.passwd",
]


async def test_join_refuses_malformed_ids_and_ids_of_other_rooms_and_writes_nothing(
    store: Store, policy: RoomPolicy
):
    holder = await join(store, policy)
    before = await store.counts(ROOM)
    foreign = [new_session_id(OTHER), new_session_id(f"{ROOM}.x"), new_session_id(ROOM.lower())]
    for room in (ROOM, "E3"):
        for sid in MALFORMED + foreign:
            assert room_of(sid) != room
            with pytest.raises(ValueError):
                await store.join(room, sid, policy)
            assert await store.poll(sid, policy) is None
    assert await store.counts(ROOM) == before
    assert await store.rooms() == [ROOM]
    for room in (OTHER, "E3", f"{ROOM}.x"):
        assert (await store.counts(room)).waiting == (await store.counts(room)).active == 0
    assert await status(store, holder, policy) is Status.ACTIVE


async def test_poll_and_leave_find_the_room_from_the_id_and_change_nothing_else(
    store: Store, policy: RoomPolicy
):
    holders = [await join(store, policy) for _ in range(2)]
    waiter = await join(store, policy)
    elsewhere = await join(store, policy, OTHER)
    token, other_token = waiter.partition(".")[0], elsewhere.partition(".")[0]
    unknown = [
        *MALFORMED,
        new_session_id(ROOM),  # never joined
        new_session_id(OTHER),
        f"{token}.{OTHER}",  # this room's waiter, named after another room
        f"{other_token}.{ROOM}",  # the other room's visitor, named after this room
        f"{token}.{ROOM}.x",  # a room whose name only starts like this one
        f"{holders[0].partition('.')[0]}.{OTHER}",
    ]
    before = [await store.counts(room) for room in (ROOM, OTHER)]
    for sid in unknown:
        assert await store.poll(sid, policy) is None
        assert await store.leave(sid, policy) is False
        assert await store.leave(sid, policy, revoke=True) is False
    assert [await store.counts(room) for room in (ROOM, OTHER)] == before
    assert await status(store, waiter, policy) is Status.WAITING
    assert await status(store, elsewhere, policy) is Status.ACTIVE
    assert (await store.grant(ROOM, policy)).granted == ()
    await store.leave(holders[0], policy)
    assert (await store.grant(ROOM, policy)).granted == (waiter,)


async def test_grant_admits_in_fifo_order_up_to_capacity(store: Store, policy: RoomPolicy):
    holders = [await join(store, policy) for _ in range(2)]
    waiters = [await join(store, policy) for _ in range(5)]
    assert (await store.grant(ROOM, policy)).granted == ()
    for h in holders:
        await store.leave(h, policy)
    report = await store.grant(ROOM, policy)
    assert report.granted == tuple(waiters[:2])
    assert (report.waiting, report.active) == (3, 2)
    await store.leave(waiters[0], policy)
    assert (await store.grant(ROOM, policy)).granted == (waiters[2],)


async def test_grant_respects_batch_size(store: Store, clock: FakeClock):
    policy = RoomPolicy(10, 3, 120_000, 10_000, 60_000, 120_000)
    for _ in range(10):
        await join(store, policy)
    waiters = [await join(store, policy) for _ in range(8)]
    holders = list((await store.grant(ROOM, policy)).granted)
    assert holders == []
    # Free all ten places at once; one step admits at most batch_size.
    clock.advance(60_001)
    for w in waiters:
        await store.poll(w, policy)
    first = await store.grant(ROOM, policy)
    assert first.granted == tuple(waiters[:3])
    assert first.expired_active == 10
    assert (await store.grant(ROOM, policy)).granted == tuple(waiters[3:6])


async def test_position_counts_people_ahead(store: Store, policy: RoomPolicy):
    for _ in range(2):
        await join(store, policy)
    waiters = [await join(store, policy) for _ in range(4)]
    tickets = [await store.poll(w, policy) for w in waiters]
    assert [t.ahead for t in tickets if t] == [0, 1, 2, 3]
    await store.leave(waiters[0], policy)
    await store.leave(waiters[1], policy)
    last = await store.poll(waiters[3], policy)
    assert last is not None and last.ahead == 1 and last.waiting == 2


async def test_leave_while_waiting_is_never_granted(store: Store, policy: RoomPolicy):
    holders = [await join(store, policy) for _ in range(2)]
    gone = await join(store, policy)
    stays = await join(store, policy)
    assert await store.leave(gone, policy) is True
    for h in holders:
        await store.leave(h, policy)
    report = await store.grant(ROOM, policy)
    assert report.granted == (stays,)
    assert await status(store, gone, policy) is Status.LEFT


async def test_leave_is_idempotent_and_frees_once(store: Store, policy: RoomPolicy):
    a = await join(store, policy)
    await join(store, policy)
    w1, w2 = await join(store, policy), await join(store, policy)
    assert await store.leave(a, policy) is True
    assert await store.leave(a, policy) is True
    report = await store.grant(ROOM, policy)
    assert report.granted == (w1,)
    assert report.active == 2
    assert await status(store, w2, policy) is Status.WAITING


async def test_unknown_and_malformed_sessions(store: Store, policy: RoomPolicy):
    unknown = new_session_id(ROOM)
    assert await store.poll(unknown, policy) is None
    assert await store.leave(unknown, policy) is False
    for bad in ["", "x", "not-a-session", "a" * 22, "../../etc.passwd", "a" * 22 + ".{x}"]:
        assert room_of(bad) is None
        assert await store.poll(bad, policy) is None
        assert await store.leave(bad, policy) is False


async def test_waiter_that_stops_polling_expires_and_is_skipped(
    store: Store, policy: RoomPolicy, clock: FakeClock
):
    holders = [await join(store, policy) for _ in range(2)]
    silent = await join(store, policy)
    alive = await join(store, policy)
    clock.advance(policy.waiting_timeout_ms - 1)
    await store.poll(alive, policy)
    await store.poll(holders[0], policy)
    await store.poll(holders[1], policy)
    clock.advance(2)
    report = await store.grant(ROOM, policy)
    assert report.expired_waiting == 1
    assert await status(store, silent, policy) is Status.EXPIRED
    await store.leave(holders[0], policy)
    assert (await store.grant(ROOM, policy)).granted == (alive,)


async def test_stale_waiters_beyond_the_reap_limit_are_expired_by_the_walk(
    store: Store, clock: FakeClock
):
    roomy = RoomPolicy(1000, 100, 30_000, 10_000, 60_000, 120_000)
    await store.set_controls(ROOM, {"mode": "paused"})
    stale = [await join(store, roomy) for _ in range(REAP_LIMIT + 10)]
    clock.advance(roomy.waiting_timeout_ms)
    fresh = await join(store, roomy)
    await store.set_controls(ROOM, {"mode": None})
    report = await store.grant(ROOM, roomy)
    assert (report.granted, report.expired_waiting) == ((fresh,), len(stale))
    assert {await status(store, sid, roomy) for sid in stale} == {Status.EXPIRED}
    assert (await store.counts(ROOM)).waiting == 0


async def test_stale_waiter_is_expired_on_its_own_poll(
    store: Store, policy: RoomPolicy, clock: FakeClock
):
    for _ in range(2):
        await join(store, policy)
    w = await join(store, policy)
    clock.advance(policy.waiting_timeout_ms)
    assert await status(store, w, policy) is Status.EXPIRED
    assert (await store.counts(ROOM)).waiting == 0


async def test_grant_not_claimed_within_claim_window_frees_the_place(
    store: Store, policy: RoomPolicy, clock: FakeClock
):
    holders = [await join(store, policy) for _ in range(2)]
    w1, w2 = await join(store, policy), await join(store, policy)
    await store.leave(holders[0], policy)
    assert (await store.grant(ROOM, policy)).granted == (w1,)
    clock.advance(policy.claim_window_ms)
    await store.poll(w2, policy)
    await store.poll(holders[1], policy)
    report = await store.grant(ROOM, policy)
    assert report.expired_active == 1
    assert report.granted == (w2,)
    assert await status(store, w1, policy) is Status.EXPIRED


async def test_claimed_grant_gets_the_idle_lease(
    store: Store, policy: RoomPolicy, clock: FakeClock
):
    holders = [await join(store, policy) for _ in range(2)]
    w = await join(store, policy)
    await store.leave(holders[0], policy)
    await store.grant(ROOM, policy)
    clock.advance(policy.claim_window_ms - 1)
    assert await status(store, w, policy) is Status.ACTIVE
    clock.advance(policy.idle_timeout_ms - 1)
    assert await status(store, w, policy) is Status.ACTIVE


async def test_active_session_idle_past_timeout_expires(
    store: Store, policy: RoomPolicy, clock: FakeClock
):
    a = await join(store, policy)
    b = await join(store, policy)
    w = await join(store, policy)
    third = policy.idle_timeout_ms // 3
    clock.advance(third)
    await store.poll(b, policy)
    await store.poll(w, policy)
    clock.advance(third)
    await store.poll(w, policy)
    clock.advance(policy.idle_timeout_ms - 2 * third)
    report = await store.grant(ROOM, policy)
    assert report.expired_active == 1
    assert report.granted == (w,)
    assert await status(store, a, policy) is Status.EXPIRED
    assert await status(store, b, policy) is Status.ACTIVE


async def test_idle_active_is_expired_on_its_own_poll(
    store: Store, policy: RoomPolicy, clock: FakeClock
):
    a = await join(store, policy)
    clock.advance(policy.idle_timeout_ms)
    assert await status(store, a, policy) is Status.EXPIRED
    assert (await store.counts(ROOM)).active == 0


async def test_terminal_sessions_are_kept_for_retention_then_gone(
    store: Store, policy: RoomPolicy, clock: FakeClock
):
    a = await join(store, policy)
    await store.leave(a, policy)
    clock.advance(policy.retention_ms - 1)
    assert await status(store, a, policy) is Status.LEFT
    clock.advance(1)
    assert await store.poll(a, policy) is None
    assert await store.leave(a, policy) is False


async def test_rooms_are_independent(store: Store, policy: RoomPolicy):
    for _ in range(2):
        await join(store, policy, "E1")
    other = await store.join("E2", new_session_id("E2"), policy)
    assert other.status is Status.ACTIVE
    assert set(await store.rooms()) >= {"E1", "E2"}
    assert (await store.counts("E1")).active == 2
    assert (await store.counts("E2")).active == 1


async def test_grant_rate_and_eta_inputs(store: Store, policy: RoomPolicy, clock: FakeClock):
    fast = RoomPolicy(1, 1, 600_000, 600_000, 600_000, 600_000)
    holder = await join(store, fast)
    waiters = [await join(store, fast) for _ in range(6)]
    assert (await store.poll(waiters[-1], fast)).grant_rate == 0.0  # type: ignore[union-attr]
    current = holder
    for w in waiters[:4]:
        await store.leave(current, fast)
        assert (await store.grant(ROOM, fast)).granted == (w,)
        current = w
        clock.advance(2_000)
    ticket = await store.poll(waiters[-1], fast)
    assert ticket is not None
    # Four grants two seconds apart: about 0.5 grants per second.
    assert 0.4 < ticket.grant_rate < 0.7


@pytest.mark.parametrize("n", [1, 5])
async def test_grant_with_nobody_waiting_is_a_no_op(store: Store, policy: RoomPolicy, n: int):
    for _ in range(n):
        report = await store.grant(ROOM, policy)
        assert report.granted == () and report.waiting == 0


async def test_paused_room_admits_nobody_until_resumed(store: Store, policy: RoomPolicy):
    await store.set_controls(ROOM, {"mode": "paused"})
    first = await store.join(ROOM, new_session_id(ROOM), policy)
    assert first.status is Status.WAITING
    assert (await store.grant(ROOM, policy)).granted == ()
    await store.set_controls(ROOM, {"mode": None})
    assert await store.controls(ROOM) == {}
    assert (await store.grant(ROOM, policy)).granted == (first.session_id,)


async def test_queue_all_admits_nobody(store: Store, policy: RoomPolicy):
    await store.set_controls(ROOM, {"mode": "queue-all"})
    w = await join(store, policy)
    assert (await store.grant(ROOM, policy)).granted == ()
    assert await status(store, w, policy) is Status.WAITING


async def test_passthrough_still_counts(store: Store, policy: RoomPolicy):
    await store.set_controls(ROOM, {"mode": "passthrough"})
    ids = [await join(store, policy) for _ in range(3)]
    counts = await store.counts(ROOM)
    assert (counts.active, counts.waiting) == (2, 1)
    assert await status(store, ids[2], policy) is Status.WAITING


async def test_live_capacity_change_applies_to_join_and_grant(store: Store, policy: RoomPolicy):
    await store.set_controls(ROOM, {"capacity": "4"})
    ids = [await join(store, policy) for _ in range(5)]
    assert [await status(store, i, policy) for i in ids].count(Status.ACTIVE) == 4
    await store.set_controls(ROOM, {"capacity": "1"})
    for i in ids[:3]:
        await store.leave(i, policy)
    assert (await store.grant(ROOM, policy)).granted == ()
    await store.leave(ids[3], policy)
    assert (await store.grant(ROOM, policy)).granted == (ids[4],)


async def test_live_batch_size_change(store: Store, policy: RoomPolicy):
    big = RoomPolicy(10, 10, 600_000, 600_000, 600_000, 600_000)
    await store.set_controls(ROOM, {"mode": "paused", "batch-size": "2"})
    ids = [await join(store, big) for _ in range(5)]
    await store.set_controls(ROOM, {"mode": "open"})
    assert (await store.grant(ROOM, big)).granted == tuple(ids[:2])


async def test_new_visitors_per_minute_limit(store: Store, clock: FakeClock):
    # 60 a minute: a burst of five (5 s worth), then one a second.
    limited = RoomPolicy(100, 100, 600_000, 600_000, 600_000, 600_000, per_minute=60)
    ids = [await join(store, limited) for _ in range(12)]
    statuses = [await status(store, i, limited) for i in ids]
    assert statuses.count(Status.ACTIVE) == 5
    assert (await store.grant(ROOM, limited)).granted == ()
    clock.advance(1_000)
    assert (await store.grant(ROOM, limited)).granted == (ids[5],)
    clock.advance(3_000)
    assert (await store.grant(ROOM, limited)).granted == tuple(ids[6:9])
    await store.set_controls(ROOM, {"per-minute": "0"})
    assert (await store.grant(ROOM, limited)).granted == tuple(ids[9:])


async def test_revoke_ends_a_session_as_expired_and_frees_the_place(
    store: Store, policy: RoomPolicy
):
    a = await join(store, policy)
    await join(store, policy)
    w = await join(store, policy)
    assert await store.leave(a, policy, revoke=True) is True
    assert await status(store, a, policy) is Status.EXPIRED
    assert (await store.grant(ROOM, policy)).granted == (w,)


async def test_oldest_queued_join_time(store: Store, policy: RoomPolicy, clock: FakeClock):
    for _ in range(2):
        await join(store, policy)
    assert (await store.counts(ROOM)).oldest_join_ms == 0
    joined_at = clock.now
    await join(store, policy)
    clock.advance(5_000)
    await join(store, policy)
    assert (await store.counts(ROOM)).oldest_join_ms == joined_at


async def test_rate_and_audit_log(store: Store):
    assert await store.rate_ms() is None
    await store.set_rate_ms(50)
    assert await store.rate_ms() == 50
    await store.set_rate_ms(None)
    assert await store.rate_ms() is None
    for n in range(3):
        await store.audit({"action": "set", "room": ROOM, "n": str(n)})
    log = await store.audit_log(2)
    assert [e["n"] for e in log] == ["2", "1"]
    assert all("ts" in e for e in log)
