"""What a waiter is told: the estimated wait, the poll interval and its bounds, the poll body."""

from __future__ import annotations

from typing import cast

from gatekeeper.config.settings import PollingSettings
from gatekeeper.core.schedule import estimated_wait_seconds, poll_after_ms, status_body
from gatekeeper.store.base import EndReason, RoomPolicy, Status, Ticket

POLLING = PollingSettings(min_ms=1000, max_ms=20_000)
POLICY = RoomPolicy(10, 5, 300_000, 60_000, 300_000, 3_600_000)


def ticket(status: Status, ahead: int = 0, rate: float = 0.0) -> Ticket:
    return Ticket("x", "default", status, ahead, ahead + 1, 100, rate)


def test_estimated_wait_counts_the_waiter_itself_and_needs_a_rate() -> None:
    assert estimated_wait_seconds(ticket(Status.WAITING, ahead=9, rate=2.0)) == 5
    assert estimated_wait_seconds(ticket(Status.WAITING, ahead=10, rate=2.0)) == 6
    assert estimated_wait_seconds(ticket(Status.WAITING, ahead=9)) is None
    assert estimated_wait_seconds(ticket(Status.ACTIVE)) == 0
    assert estimated_wait_seconds(ticket(Status.LEFT)) is None


def test_the_poll_interval_stays_inside_the_waiting_timeout_and_the_claim_window() -> None:
    short = RoomPolicy(10, 5, 8_000, 30_000, 300_000, 3_600_000)
    assert poll_after_ms(ticket(Status.ACTIVE), POLLING, short, 1.0) == 2000  # timeout / 4
    tight = RoomPolicy(10, 5, 300_000, 6_000, 300_000, 3_600_000)
    assert poll_after_ms(ticket(Status.ACTIVE), POLLING, tight, 1.0) == 2000  # window / 3
    tiny = RoomPolicy(10, 5, 1_000, 1_000, 300_000, 3_600_000)
    assert poll_after_ms(ticket(Status.ACTIVE), POLLING, tiny, 1.0) == 1000  # never below min


def test_the_first_wave_is_what_the_max_rate_admits_within_five_seconds() -> None:
    assert poll_after_ms(ticket(Status.WAITING, ahead=4), POLLING, POLICY, 1.0) == 1000
    assert poll_after_ms(ticket(Status.WAITING, ahead=5), POLLING, POLICY, 1.0) == 20_000


def test_status_body_is_the_poll_api_object() -> None:
    body = status_body(ticket(Status.WAITING, ahead=199, rate=5.0), POLLING, POLICY, 50.0)
    assert body == {
        "sessionId": "x",
        "status": "WAITING",
        "position": 199,
        "estimatedWaitSeconds": 40,
        "estimatedWaitRange": [32, 49],  # the prior spread: see tests/core/test_estimates.py
        "pollAfterMs": 10_000,
    }


def test_before_the_first_grant_only_the_range_has_an_answer() -> None:
    # 9 ahead, the room full (10 places, 100 active): places free at 10 per 300 s (the idle
    # timeout, no expected stay given), so about 300 s.
    body = status_body(ticket(Status.WAITING, ahead=9), POLLING, POLICY, 50.0)
    low, high = cast(list[int], body["estimatedWaitRange"])
    assert body["estimatedWaitSeconds"] is None and low < 300 < high
    assert status_body(ticket(Status.ACTIVE), POLLING, POLICY, 50.0)["estimatedWaitRange"] == [0, 0]
    assert status_body(ticket(Status.LEFT), POLLING, POLICY, 50.0)["estimatedWaitRange"] is None


def test_an_ended_session_s_body_tells_why_and_only_then() -> None:
    for status in (Status.WAITING, Status.ACTIVE):
        assert "reason" not in status_body(ticket(status), POLLING, POLICY, 50.0)
    closed = Ticket("x", "default", Status.EXPIRED, 0, 0, 1, 0.0, EndReason.CLOSED)
    body = status_body(closed, POLLING, POLICY, 50.0)
    assert (body["status"], body["reason"]) == ("EXPIRED", "closed")
    # A session that ended before reasons were kept (an older version) has none to tell.
    assert status_body(ticket(Status.LEFT), POLLING, POLICY, 50.0)["reason"] is None


def test_a_session_ends_as_left_only_when_it_left() -> None:
    assert {r: r.status for r in EndReason} == {
        EndReason.LEFT: Status.LEFT,
        EndReason.WAITING_TIMEOUT: Status.EXPIRED,
        EndReason.CLAIM_TIMEOUT: Status.EXPIRED,
        EndReason.IDLE_TIMEOUT: Status.EXPIRED,
        EndReason.REVOKED: Status.EXPIRED,
        EndReason.CLOSED: Status.EXPIRED,
        EndReason.SESSION_LIMIT: Status.EXPIRED,
    }


def test_an_admitted_session_with_a_cap_tells_when_it_ends() -> None:
    capped = Ticket("x", "default", Status.ACTIVE, 0, 0, 1, 0.0, None, 1_796_752_800_000)
    assert status_body(capped, POLLING, POLICY, 50.0)["endsAt"] == "2026-12-08T18:00:00.000Z"
    assert "endsAt" not in status_body(ticket(Status.ACTIVE), POLLING, POLICY, 50.0)
