"""What a waiter is told: its estimated wait, when to poll again, and the poll API's body."""

from __future__ import annotations

import math

from gatekeeper.config.events import format_instant
from gatekeeper.config.settings import PollingSettings
from gatekeeper.core.estimates import Basis, wait_range
from gatekeeper.store.base import TERMINAL, RoomPolicy, Status, Ticket

FRONT_S = 5
# Waiters expected within NEAR_S poll at the minimum interval: grants come in bursts, so the
# last seconds of an estimate are the least certain and a late claim leaves a place idle.
NEAR_S = 10
# Further back a waiter polls again after a quarter of its estimated wait: a few polls per
# halving of the wait, so a long queue costs little.
ETA_DIVISOR = 4


def estimated_wait_seconds(ticket: Ticket) -> int | None:
    """Seconds until this waiter is let in at the observed grant rate (None: no rate yet)."""
    if ticket.status is Status.ACTIVE:
        return 0
    if ticket.status is not Status.WAITING or ticket.grant_rate <= 0:
        return None
    return math.ceil((ticket.ahead + 1) / ticket.grant_rate)


def poll_after_ms(
    ticket: Ticket, polling: PollingSettings, policy: RoomPolicy, max_rate: float
) -> int:
    """How long the client should wait before polling again.

    Near the front (or with a short ETA) clients poll often so a grant is claimed quickly; far
    back they poll rarely, so a huge queue costs little. Before the first grant there is no
    observed rate: waiters the room could admit within FRONT_S seconds at its fastest
    (`max_rate` per second) poll at the minimum, so the first grants are claimed at once.
    Always well inside the waiting timeout and the claim window, so a slow poller never
    loses a place.
    """
    ceiling = min(polling.max_ms, policy.waiting_timeout_ms // 4, policy.claim_window_ms // 3)
    ceiling = max(ceiling, polling.min_ms)
    if ticket.status is not Status.WAITING:
        return ceiling
    eta = estimated_wait_seconds(ticket)
    if eta is not None:
        if eta <= NEAR_S:
            return polling.min_ms
        return max(polling.min_ms, min(eta * 1000 // ETA_DIVISOR, ceiling))
    # No grant seen yet: whoever the first few grant steps can reach polls often; everyone
    # else slowly, since by their next poll there is a rate to go by.
    return polling.min_ms if (ticket.ahead + 1) / max_rate <= FRONT_S else ceiling


def status_body(
    ticket: Ticket,
    polling: PollingSettings,
    policy: RoomPolicy,
    max_rate: float,
    basis: Basis | None = None,
) -> dict[str, object]:
    """The poll API's JSON object for a ticket; an ended session's tells why (`reason`, an
    `EndReason` value, or null for a session that ended before reasons were kept).

    `estimatedWaitRange` is `estimates.wait_range` from `basis` (default: the policy's own
    numbers); `estimatedWaitSeconds` stays the observed-rate estimate, null before the first
    grant, when only the range (from the configured numbers) has an answer.
    """
    found = wait_range(ticket, basis or Basis.of(policy, max_rate))
    body: dict[str, object] = {
        "sessionId": ticket.session_id,
        "status": ticket.status.value,
        "position": ticket.ahead,
        "estimatedWaitSeconds": estimated_wait_seconds(ticket),
        "estimatedWaitRange": None if found is None else list(found),
        "pollAfterMs": poll_after_ms(ticket, polling, policy, max_rate),
    }
    if ticket.status in TERMINAL:
        body["reason"] = None if ticket.reason is None else ticket.reason.value
    if ticket.status is Status.ACTIVE and ticket.ends_at is not None:
        body["endsAt"] = format_instant(ticket.ends_at)  # max-session: the hard end
    return body
