"""Room rules: policies, live controls and rate, and poll intervals from the best known rate."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from gatekeeper.config import load_config
from gatekeeper.core.rooms import Rooms, policy_for
from gatekeeper.store.base import Control, Mode, RoomPolicy, Status, Ticket
from tests.config.support import ROOMS as ROOMS_YAML
from tests.config.support import load

ROOMS = Rooms(load_config(None, environ={}))  # batch 10 every 200 ms: 50 admissions/s at most


def waiting(ahead: int, rate: float = 0.0) -> Ticket:
    return Ticket("x", "default", Status.WAITING, ahead, ahead + 1, 100, rate)


def test_before_the_first_grant_waiters_poll_as_if_the_room_ran_at_full_speed() -> None:
    assert ROOMS.max_rate("default") == 50
    assert ROOMS.poll_after_ms(waiting(0)) == 1000
    assert ROOMS.poll_after_ms(waiting(249)) == 1000  # within 5 s of the front at 50/s
    assert ROOMS.poll_after_ms(waiting(250)) == 20_000
    assert ROOMS.poll_after_ms(waiting(1_000_000)) == 20_000


def test_with_an_observed_rate_the_interval_is_a_quarter_of_the_eta() -> None:
    body = ROOMS.status_body(waiting(199, rate=5.0))
    assert body["estimatedWaitSeconds"] == 40
    assert body["pollAfterMs"] == 10_000
    assert ROOMS.poll_after_ms(waiting(49, rate=5.0)) == 1000  # 10 s from the front
    assert ROOMS.poll_after_ms(waiting(54, rate=5.0)) == 2750
    assert ROOMS.poll_after_ms(waiting(599, rate=5.0)) == 20_000


def test_admitted_and_ended_sessions_poll_slowly() -> None:
    active = Ticket("x", "default", Status.ACTIVE, 0, 0, 1, 0.0)
    assert ROOMS.status_body(active)["estimatedWaitSeconds"] == 0
    assert ROOMS.poll_after_ms(active) == 20_000


def test_policy_for_applies_room_overrides(tmp_path: Path) -> None:
    s = load(tmp_path, ROOMS_YAML)
    assert policy_for(s, "black-friday") == RoomPolicy(
        capacity=500,
        batch_size=50,
        waiting_timeout_ms=600_000,
        claim_window_ms=30_000,
        idle_timeout_ms=60_000,
        retention_ms=250,
        client_joins_per_minute=60,
        client_join_burst=60,
    )
    defaults = RoomPolicy(
        50, 5, 120_000, 30_000, 60_000, 3_600_000, client_joins_per_minute=60, client_join_burst=60
    )
    assert policy_for(s, "quiet") == defaults and policy_for(s, "unlisted") == defaults


def test_a_live_rate_sets_the_max_rate_and_the_first_wave() -> None:
    rooms = Rooms(load_config(None, environ={}))
    rooms.set_rate_ms(1000)  # batch 10 every second: 10 admissions/s at most
    assert rooms.rate_ms == 1000
    assert rooms.max_rate("default") == 10
    assert rooms.poll_after_ms(waiting(49)) == 1000  # within 5 s of the front at 10/s
    assert rooms.poll_after_ms(waiting(50)) == 20_000
    assert rooms.poll_after_ms(waiting(249)) == 20_000  # in the first wave at 50/s only


def test_effective_is_the_policy_with_the_live_controls_applied() -> None:
    rooms = Rooms(load_config(None, environ={}))
    policy = rooms.policy("default")
    assert rooms.effective("default") == policy
    rooms.set_live("default", {Control.CAPACITY: "7", Control.PER_MINUTE: "60"})
    assert rooms.effective("default") == replace(policy, capacity=7, per_minute=60)
    rooms.set_live("default", {Control.BATCH_SIZE: "2"})
    assert rooms.effective("default") == replace(policy, batch_size=2)
    assert rooms.max_rate("default") == 10  # 2 every 200 ms
    assert rooms.policy("default") == policy  # the configured policy is unchanged


def test_mode_follows_the_live_control_and_falls_back_to_open() -> None:
    rooms = Rooms(load_config(None, environ={}))
    assert rooms.mode("default") is Mode.OPEN
    rooms.set_live("default", {Control.MODE: Mode.PAUSED})
    assert rooms.mode("default") is Mode.PAUSED
    rooms.set_live("default", {Control.MODE: "sideways"})
    assert rooms.mode("default") is Mode.OPEN


def _capped(cap: int, **extra: object) -> Rooms:
    return Rooms(
        load_config(None, environ={}, overrides={"waitingroom.rooms.max-unlisted": cap, **extra})
    )


def test_new_unlisted_rooms_are_refused_at_the_cap_and_listed_ones_keep_working() -> None:
    rooms = _capped(3)
    assert [rooms.resolve(r) for r in ("a", "b", "c", "d")] == ["a", "b", "c", None]
    assert rooms.resolve("a") == "a"  # let in since the last tick: still works
    rooms.retain(["a", "b", "c"])
    assert rooms.unlisted == 3
    assert rooms.resolve("d") is None and rooms.resolve("b") == "b"
    rooms.retain(["a"])  # two were forgotten: two new ones fit
    assert [rooms.resolve(r) for r in ("d", "e", "f")] == ["d", "e", None]


def test_configured_rooms_and_the_default_are_never_capped(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "waitingroom:\n  rooms:\n    max-unlisted: 0\n    overrides:\n      vip: {capacity: 5}\n"
    )
    rooms = Rooms(load_config(str(config), environ={}))
    assert rooms.resolve("vip") == "vip"
    assert rooms.resolve(None) == rooms.resolve("default") == "default"
    assert rooms.resolve("other") is None  # 0: no unlisted room at all
    rooms.retain(["other", "vip"])
    assert rooms.unlisted == 1 and rooms.resolve("another") is None


def test_retain_drops_the_caches_of_rooms_no_longer_listed() -> None:
    rooms = _capped(1000)
    for n in range(500):
        rooms.set_live(f"r{n}", {Control.CAPACITY: "3", Control.MODE: Mode.PAUSED})
        rooms.effective(f"r{n}")
    rooms.set_live("default", {Control.MODE: Mode.PAUSED})
    rooms.retain(["r7"])
    assert rooms.mode("r7") is Mode.PAUSED and rooms.effective("r7").capacity == 3
    assert rooms.mode("default") is Mode.PAUSED  # configured: kept
    assert rooms.mode("r8") is Mode.OPEN
    assert rooms.effective("r8").capacity == rooms.policy("r8").capacity
    assert set(rooms._live) | set(rooms._modes) | set(rooms._effective) <= {"r7", "default", "r8"}
