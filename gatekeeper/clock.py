"""The one clock: integer milliseconds since the epoch, injected everywhere time is read."""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], int]
"""Returns the current time in integer milliseconds since the epoch."""


def wall_clock() -> int:
    """The machine's clock in milliseconds (production; tests inject a fake one)."""
    return time.time_ns() // 1_000_000


def seconds(clock: Clock) -> Callable[[], float]:
    """The same clock in float seconds, for libraries that count in seconds."""
    return lambda: clock() / 1000
