"""Per-room metrics stay bounded: configured rooms, a bounded number of others, then `_other`."""

from __future__ import annotations

from gatekeeper.config import load_config
from gatekeeper.core.granter import Granter
from gatekeeper.core.rooms import Rooms
from gatekeeper.ids import new_session_id
from gatekeeper.metrics import OTHER_ROOMS, Metrics
from gatekeeper.store.base import EndReason, GrantReport, Status, Ticket
from gatekeeper.store.memory import MemoryStore
from tests.conftest import FakeClock


def _text(metrics: Metrics) -> str:
    return metrics.render()[0].decode()


def _report(waiting: int, active: int) -> GrantReport:
    return GrantReport(("x",), 1, 0, waiting, active)


def test_rooms_beyond_the_bound_share_one_label_and_their_gauges_are_summed() -> None:
    metrics = Metrics(room_labels=2)
    metrics.set_configured({"vip"})
    for room in ("a", "b", "c", "d"):
        metrics.joined(room, True)
        metrics.grant_report(room, _report(1, 2), 10)
    metrics.joined("vip", False)  # configured: its own label even beyond the bound
    metrics.leaves.labels("d", "api").inc()
    text = _text(metrics)
    for room in ("a", "b", "vip"):
        assert f'room="{room}"' in text
    assert 'room="c"' not in text and 'room="d"' not in text
    assert f'gatekeeper_room_waiting{{room="{OTHER_ROOMS}"}} 2.0' in text
    assert f'gatekeeper_room_capacity{{room="{OTHER_ROOMS}"}} 20.0' in text
    assert f'gatekeeper_joins_total{{admitted="true",room="{OTHER_ROOMS}"}} 2.0' in text
    assert f'gatekeeper_leaves_total{{reason="api",room="{OTHER_ROOMS}"}} 1.0' in text
    metrics.grant_report("c", _report(0, 0), 10)
    assert f'gatekeeper_room_active{{room="{OTHER_ROOMS}"}} 2.0' in _text(metrics)


def test_a_forgotten_room_loses_its_series_and_frees_its_label() -> None:
    metrics = Metrics(room_labels=1)
    metrics.grant_report("a", _report(0, 0), 5)
    metrics.joined("a", True)
    metrics.grant_report("b", _report(3, 0), 5)
    metrics.retain({"a", "b"})
    metrics.forget_room("a")
    metrics.retain({"b"})
    text = _text(metrics)
    assert 'room="a"' not in text
    metrics.forget_room("b")
    assert f'gatekeeper_room_waiting{{room="{OTHER_ROOMS}"}} 0.0' in _text(metrics)
    metrics.grant_report("c", _report(1, 0), 5)  # a's label is free again
    assert 'gatekeeper_room_waiting{room="c"} 1.0' in _text(metrics)


def test_retain_keeps_rooms_labelled_since_the_last_tick() -> None:
    metrics = Metrics()
    metrics.joined("new", True)
    metrics.retain(set())  # the tick read the room list before this join listed the room
    assert 'room="new"' in _text(metrics)
    metrics.retain(set())
    assert 'room="new"' not in _text(metrics)


async def test_metrics_size_is_bounded_whatever_the_rooms_ever_seen(clock: FakeClock) -> None:
    settings = load_config(None, environ={}, overrides={"waitingroom.rooms.forget-after": 1})
    store, rooms, metrics = MemoryStore(clock), Rooms(settings), Metrics()
    granter = Granter(store, rooms, 200, metrics, clock)
    sizes = []
    for wave in range(5):
        for n in range(400):
            room = f"w{wave}-{n}"
            sid = new_session_id(room)
            metrics.joined(room, True)
            await store.join(room, sid, rooms.policy(room))
            await store.leave(sid, rooms.policy(room))
            metrics.leaves.labels(room, "api").inc()
        await granter.tick()
        sizes.append(len(metrics.render()[0]))
        clock.advance(1000)
        await granter.tick()
        assert await store.rooms() == []
    assert max(sizes) < 150_000
    assert sizes[-1] <= sizes[0] * 1.05
    assert len(_text(metrics)) < 10_000  # everything forgotten: no per-room series left


def test_ended_sessions_are_counted_by_reason_once_each() -> None:
    metrics = Metrics()
    # A grant step: 3 leases out (1 never claimed), 5 waiters gone (2 of them by a close).
    metrics.grant_report("a", GrantReport((), 3, 5, 0, 0, unclaimed=1, closed=2), 10)
    expired = Ticket("x.a", "a", Status.EXPIRED, 0, 0, 0, 0.0, EndReason.CLOSED, ended=True)
    metrics.polled(expired)
    metrics.polled(Ticket("x.a", "a", Status.EXPIRED, 0, 0, 0, 0.0, EndReason.CLOSED))
    metrics.polled(Ticket("y.a", "a", Status.ACTIVE, 0, 0, 1, 0.0))
    metrics.session_ended("a", EndReason.LEFT)
    text = _text(metrics)
    for reason, count in {"claim_timeout": 1, "idle_timeout": 2, "waiting_timeout": 3,
                          "closed": 3, "left": 1}.items():  # fmt: skip
        assert f'gatekeeper_sessions_ended_total{{reason="{reason}",room="a"}} {count}.0' in text
    assert 'reason="revoked"' not in text, "a reason never seen has no series"
    assert 'gatekeeper_expirations_total{reason="active_lease",room="a"} 3.0' in text
    assert 'gatekeeper_expirations_total{reason="waiting_timeout",room="a"} 3.0' in text
    assert 'gatekeeper_expirations_total{reason="closed",room="a"} 2.0' in text
    metrics.forget_room("a")
    assert "gatekeeper_sessions_ended_total{" not in _text(metrics)
