"""Wait ranges: the range math, the room watch, and coverage in simulated churning crowds."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import cast

import pytest

from bench import eta
from gatekeeper.config import load_config
from gatekeeper.core.estimates import (
    FORGET_MS,
    PRIOR_SD,
    Basis,
    RoomWatch,
    configured_wait,
    wait_range,
)
from gatekeeper.core.rooms import Rooms
from gatekeeper.store.base import Status, Ticket

BASIS = Basis(capacity=100, max_rate=50.0, stay_s=300.0)


def waiting(ahead: int, rate: float = 2.0, active: int = 100, sid: str = "x") -> Ticket:
    return Ticket(sid, "default", Status.WAITING, ahead, ahead + 1, active, rate)


def test_the_range_holds_the_estimate_and_grows_with_the_position() -> None:
    last = (0, 0)
    for ahead in (0, 1, 5, 20, 100, 1000, 10_000):
        low, high = wait_range(waiting(ahead), BASIS) or (-1, -1)
        central = math.ceil((ahead + 1) / 2.0)
        assert 0 <= low <= central <= high
        assert low >= last[0] and high >= last[1]
        last = (low, high)
    assert last[1] > 5000 and wait_range(waiting(0), BASIS)[0] == 0  # type: ignore[index]


def test_the_range_narrows_relative_to_the_estimate_far_back() -> None:
    near, far = wait_range(waiting(9), BASIS), wait_range(waiting(999), BASIS)
    assert near is not None and far is not None
    assert far[1] / far[0] < near[1] / max(near[0], 1)


def test_a_rate_that_moves_more_widens_the_range() -> None:
    steady = wait_range(waiting(200), replace(BASIS, spread=0.05))
    moving = wait_range(waiting(200), replace(BASIS, spread=0.5))
    assert steady is not None and moving is not None
    assert moving[0] < steady[0] <= 101 <= steady[1] < moving[1]


def test_positions_moving_faster_than_grants_lower_only_the_low_end() -> None:
    plain = wait_range(waiting(200), BASIS)
    drained = wait_range(waiting(200), replace(BASIS, drain=1.5))
    assert plain is not None and drained is not None
    assert drained[0] < plain[0] and drained[1] == plain[1]


def test_admitted_ended_and_unadmitting_rooms() -> None:
    active = Ticket("x", "default", Status.ACTIVE, 0, 0, 1, 0.0)
    left = Ticket("x", "default", Status.LEFT, 0, 0, 1, 0.0)
    assert wait_range(active, BASIS) == (0, 0)
    assert wait_range(left, BASIS) is None
    assert wait_range(waiting(5, rate=0.0), replace(BASIS, capacity=0)) is None


def test_before_the_first_grant_free_places_go_at_the_fastest_rate() -> None:
    # 40 of 100 places free: the first 40 in line go within a second at 50/s.
    assert configured_wait(39, 60, BASIS) == pytest.approx(40 / 50)
    # The 41st waits for a place to free: 100 places / 300 s stay = one every 3 s.
    assert configured_wait(40, 60, BASIS) == pytest.approx(40 / 50 + 3)
    assert configured_wait(99, 100, BASIS) == pytest.approx(300)
    # Churn never beats the fastest grant rate.
    assert configured_wait(99, 100, replace(BASIS, stay_s=0.1)) == pytest.approx(2)
    low, high = wait_range(waiting(99, rate=0.0), BASIS) or (0, 0)
    assert low < 300 < high and high / low < 10


def test_rooms_take_the_expected_stay_or_else_the_idle_timeout() -> None:
    base = {"waitingroom.lifecycle.idle-timeout": 120, "waitingroom.processing.capacity": 60}
    plain = Rooms(load_config(None, environ={}, overrides=base))
    assert plain.expected_stay_s("default") == 120
    assert plain.status_body(waiting(59, rate=0.0, active=60))["estimatedWaitRange"] == list(
        wait_range(waiting(59, rate=0.0, active=60), plain.basis("default")) or ()
    )
    overrides = {"slow": {"expected-stay": 600}, "capped": {"max-session": 10}}
    rooms = Rooms(load_config(None, environ={}, overrides={
        **base,
        "waitingroom.lifecycle.expected-stay": 30,
        "waitingroom.rooms.overrides": overrides,
    }))  # fmt: skip
    assert rooms.expected_stay_s("default") == 30
    assert rooms.expected_stay_s("slow") == 600
    assert rooms.expected_stay_s("capped") == 10  # nobody stays past max-session
    # 60 ahead in a full room of 60: one place frees every 0.5 s at a 30 s stay.
    body = rooms.status_body(waiting(59, rate=0.0, active=60))
    low, high = cast(list[int], body["estimatedWaitRange"])
    assert body["estimatedWaitSeconds"] is None and low < 30 < high < 120


def test_the_watch_learns_the_spread_and_drain_and_forgets_rooms() -> None:
    watch = RoomWatch()
    assert watch.last("default") == (PRIOR_SD, 1.0)
    now = 1_000_000
    for step in range(60):  # a rate swinging between 1 and 4 per second
        now += 5_000
        watch.observe(waiting(500 - 10 * step, rate=1.0 if step % 2 else 4.0), now)
    spread, drain = watch.last("default")
    assert spread > 0.4
    assert drain > 1.5  # 10 places a step at ~2.5 grants/s over 5 s: positions outrun grants
    steady = RoomWatch()
    for step in range(60):
        steady.observe(replace(waiting(100), room="calm", grant_rate=2.0), now + step * 5_000)
    assert steady.last("calm")[0] < PRIOR_SD
    steady.retain(["other"])
    assert len(steady) == 0
    watch.observe(replace(waiting(3), room="b"), now + FORGET_MS + 60_000)
    assert len(watch) == 1  # "default" unseen for FORGET_MS: dropped


@pytest.mark.parametrize("shape", eta.SHAPES, ids=lambda s: s.name)
def test_most_waiters_get_in_inside_their_last_quoted_range(shape: eta.Shape) -> None:
    result = eta.measure(shape)
    assert result.measured >= 200
    assert result.last_inside >= 0.8
    assert result.all_inside >= 0.8
    # Honest but useful: not a band that covers by being absurdly wide.
    assert result.far_ratio < 4 and result.width < 2
