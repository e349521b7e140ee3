"""What the page tests share: one waiting view to vary."""

from __future__ import annotations

from gatekeeper.web.views import WaitingView

VIEW = WaitingView(
    session_id="s3ss10n-id",
    status="WAITING",
    position=42,
    estimated_wait_seconds=190,
    poll_after_ms=2500,
    status_url="/api/waiting-room/sessions/s3ss10n-id",
    static_prefix="/_gatekeeper/static",
    joined_position=120,
)
"""A waiter 42nd in line: the tests vary it with `dataclasses.replace`."""
