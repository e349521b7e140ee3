"""A room's scheduled on-sale (`rooms.overrides.<room>.event`): parsing and checking it."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime

from gatekeeper.config.settings import EventSettings
from gatekeeper.errors import ConfigError

# Instants between 2000 and 2200: a typo (seconds for milliseconds, a year 20260) is refused.
_EARLIEST_MS = 946_684_800_000
_LATEST_MS = 7_258_118_400_000
_EPOCH_MS = re.compile(r"[0-9]{12,14}")
_KEYS = {"prequeue-opens-at", "starts-at", "ends-at", "shuffle"}


def parse_instant(raw: object) -> int | None:
    """Epoch milliseconds from epoch ms (a number or digits) or ISO 8601 with a UTC offset (or
    Z); None when `raw` is neither or lies outside 2000..2200. A time without an offset is
    refused: whose midnight would it be?"""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        ms = raw
    elif isinstance(raw, str) and _EPOCH_MS.fullmatch(raw.strip()):
        ms = int(raw.strip())
    elif isinstance(raw, datetime | str):
        try:
            when = raw if isinstance(raw, datetime) else datetime.fromisoformat(raw.strip())
        except ValueError:
            return None
        if when.tzinfo is None:
            return None
        ms = round(when.timestamp() * 1000)
    else:
        return None
    return ms if _EARLIEST_MS <= ms <= _LATEST_MS else None


def format_instant(ms: int) -> str:
    """An instant as ISO 8601 in UTC with milliseconds, e.g. 2026-12-08T18:00:00.000Z."""
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def parse_event(raw: object, where: str) -> EventSettings:
    """An event from its mapping; `where` names it in errors (a config key or an API field)."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: must be a mapping with starts-at (and prequeue-opens-at, "
                          f"ends-at, shuffle), got {raw!r}")  # fmt: skip
    unknown = sorted(str(k) for k in raw if k not in _KEYS)
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown key (one of {', '.join(sorted(_KEYS))})")
    starts = _instant(raw.get("starts-at"), f"{where}.starts-at")
    opens = starts
    if raw.get("prequeue-opens-at") is not None:
        opens = _instant(raw["prequeue-opens-at"], f"{where}.prequeue-opens-at")
    ends = None
    if raw.get("ends-at") is not None:
        ends = _instant(raw["ends-at"], f"{where}.ends-at")
    shuffle = raw.get("shuffle", True)
    if not isinstance(shuffle, bool):
        raise ConfigError(f"{where}.shuffle: must be true or false, got {shuffle!r}")
    return checked(EventSettings(opens, starts, ends, shuffle), where)


def checked(event: EventSettings, where: str) -> EventSettings:
    """`event` when its instants are in order, else a ConfigError naming `where`."""
    if event.prequeue_opens_at > event.starts_at:
        raise ConfigError(f"{where}: prequeue-opens-at must not be after starts-at")
    if event.ends_at is not None and event.ends_at <= event.starts_at:
        raise ConfigError(f"{where}: ends-at must be after starts-at")
    return event


def _instant(raw: object, where: str) -> int:
    ms = parse_instant(raw)
    if ms is None:
        raise ConfigError(
            f"{where}: must be an ISO 8601 time with an offset (2026-12-08T18:00:00Z) or epoch "
            f"milliseconds between 2000 and 2200, got {raw!r}"
        )
    return ms
