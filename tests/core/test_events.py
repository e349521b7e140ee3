"""On-sale events: the draw's rule, the phases, and parsing the schedule."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from gatekeeper.config.events import format_instant, parse_event, parse_instant
from gatekeeper.config.settings import EventSettings
from gatekeeper.core.draw import commitment, drawn_order, new_seed, rank_key
from gatekeeper.core.events import Phase, phase_at
from gatekeeper.errors import ConfigError

START = 1_796_752_800_000  # 2026-12-08T18:00:00Z


def test_the_commitment_and_the_order_follow_the_published_rule() -> None:
    seed = new_seed()
    assert len(seed) == 64 and commitment(seed) == hashlib.sha256(bytes.fromhex(seed)).hexdigest()
    sids = [f"{i:022d}.tour" for i in range(500)]
    expected = sorted(
        sids, key=lambda s: hmac.new(bytes.fromhex(seed), s.encode(), hashlib.sha256).hexdigest()
    )
    assert drawn_order(seed, sids) == expected
    assert (
        rank_key(seed, sids[0])
        == hmac.new(bytes.fromhex(seed), sids[0].encode(), hashlib.sha256).hexdigest()
    )
    assert new_seed() != seed
    with pytest.raises(ValueError):
        commitment("A" * 64)


def test_phases_follow_the_schedule_and_close_wins() -> None:
    event = EventSettings(START - 600_000, START, START + 3_600_000)
    assert phase_at(event, START - 600_001) is Phase.BEFORE
    assert phase_at(event, START - 600_000) is Phase.PREQUEUE
    assert phase_at(event, START - 1) is Phase.PREQUEUE
    assert phase_at(event, START) is Phase.OPEN
    assert phase_at(event, START + 3_600_000) is Phase.CLOSED
    assert phase_at(event, START, closed=True) is Phase.CLOSED
    assert phase_at(None, START) is Phase.OPEN


@pytest.mark.parametrize(
    "raw",
    [START, str(START), "2026-12-08T18:00:00Z", "2026-12-08T19:00:00+01:00"],
)
def test_instants_in_iso_8601_or_epoch_ms(raw: object) -> None:
    assert parse_instant(raw) == START
    assert format_instant(START) == "2026-12-08T18:00:00.000Z"


@pytest.mark.parametrize(
    "raw", ["2026-12-08T18:00:00", START // 1000, "tomorrow", True, None, 10**40, "9" * 5000]
)
def test_times_without_an_offset_seconds_and_nonsense_are_refused(raw: object) -> None:
    assert parse_instant(raw) is None


def test_an_event_is_checked_as_a_whole() -> None:
    event = parse_event({"starts-at": START, "prequeue-opens-at": START - 60_000}, "e")
    assert event == EventSettings(START - 60_000, START, None, True)
    assert parse_event({"starts-at": START}, "e").prequeue_opens_at == START
    for bad in (
        {"starts-at": START, "prequeue-opens-at": START + 1},
        {"starts-at": START, "ends-at": START},
        {"starts-at": START, "shuffle": "yes"},
        {"starts-at": START, "sttarts": 1},
        {"prequeue-opens-at": START},
        [START],
    ):
        with pytest.raises(ConfigError):
            parse_event(bad, "waitingroom.rooms.overrides.tour.event")
