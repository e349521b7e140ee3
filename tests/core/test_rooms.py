"""Room rules: poll intervals and ETAs from the observed (or, before any grant, best) rate."""

from __future__ import annotations

from gatekeeper.config import load_config
from gatekeeper.core.rooms import Rooms
from gatekeeper.store.base import Status, Ticket

ROOMS = Rooms(load_config(None, environ={}))  # batch 10 every 200 ms: 50 admissions/s at most


def waiting(ahead: int, rate: float = 0.0) -> Ticket:
    return Ticket("x", "default", Status.WAITING, ahead, ahead + 1, 100, rate)


def test_before_the_first_grant_waiters_poll_as_if_the_room_ran_at_full_speed():
    assert ROOMS.max_rate("default") == 50
    assert ROOMS.poll_after_ms(waiting(0)) == 1000
    assert ROOMS.poll_after_ms(waiting(249)) == 1000  # within 5 s of the front at 50/s
    assert ROOMS.poll_after_ms(waiting(250)) == 20_000
    assert ROOMS.poll_after_ms(waiting(1_000_000)) == 20_000


def test_with_an_observed_rate_the_interval_is_a_quarter_of_the_eta():
    body = ROOMS.status_body(waiting(199, rate=5.0))
    assert body["estimatedWaitSeconds"] == 40
    assert body["pollAfterMs"] == 10_000
    assert ROOMS.poll_after_ms(waiting(49, rate=5.0)) == 1000  # 10 s from the front
    assert ROOMS.poll_after_ms(waiting(54, rate=5.0)) == 2750
    assert ROOMS.poll_after_ms(waiting(599, rate=5.0)) == 20_000


def test_admitted_and_ended_sessions_poll_slowly():
    active = Ticket("x", "default", Status.ACTIVE, 0, 0, 1, 0.0)
    assert ROOMS.status_body(active)["estimatedWaitSeconds"] == 0
    assert ROOMS.poll_after_ms(active) == 20_000
