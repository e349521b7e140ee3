"""Hypothesis drives the memory and Redis stores with the same operations: they must agree."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    rule,
)

from gatekeeper.ids import new_session_id
from gatekeeper.store.base import RoomPolicy, Status, Ticket
from gatekeeper.store.memory import MemoryStore
from gatekeeper.store.redis import RedisStore
from tests.conftest import FakeClock, unique_prefix

pytestmark = pytest.mark.redis

POLICY = RoomPolicy(
    capacity=2,
    batch_size=2,
    waiting_timeout_ms=30_000,
    claim_window_ms=10_000,
    idle_timeout_ms=20_000,
    retention_ms=60_000,
)
ROOMS = ("A", "B")
BIASED = st.sampled_from(("A", "A", "A", "B"))


def comparable(ticket: Ticket | None) -> Any:
    if ticket is None:
        return None
    return (ticket.session_id, ticket.room, ticket.status, ticket.ahead, ticket.waiting,
            ticket.active, pytest.approx(ticket.grant_rate, rel=1e-6, abs=1e-9))  # fmt: skip


def make_machine(redis_url: str) -> type[RuleBasedStateMachine]:
    class StoresAgree(RuleBasedStateMachine):
        sessions = Bundle("sessions")

        @initialize()
        def setup(self) -> None:
            self.loop = asyncio.new_event_loop()
            self.clock = FakeClock()
            self.memory = MemoryStore(self.clock)
            self.redis = RedisStore.from_url(
                redis_url, key_prefix=unique_prefix(), clock=self.clock
            )
            self.joined: dict[str, list[str]] = {room: [] for room in ROOMS}
            self.capacity = {room: POLICY.capacity for room in ROOMS}

        def teardown(self) -> None:
            if hasattr(self, "loop"):
                self.loop.run_until_complete(self.redis.aclose())
                self.loop.close()

        def both(self, method: str, *args: Any) -> tuple[Any, Any]:
            mem = self.loop.run_until_complete(getattr(self.memory, method)(*args))
            red = self.loop.run_until_complete(getattr(self.redis, method)(*args))
            return mem, red

        @rule(target=sessions, room=BIASED)
        def join(self, room: str) -> str:
            sid = new_session_id(room)
            mem, red = self.both("join", room, sid, POLICY)
            assert comparable(mem) == comparable(red)
            self.joined[room].append(sid)
            return sid

        @rule(room=BIASED, n=st.integers(2, 5))
        def join_several(self, room: str, n: int) -> None:
            for _ in range(n):
                self.join(room)

        @rule(sid=sessions)
        def poll(self, sid: str) -> None:
            mem, red = self.both("poll", sid, POLICY)
            assert comparable(mem) == comparable(red)

        @rule(sid=consumes(sessions))
        def leave(self, sid: str) -> None:
            mem, red = self.both("leave", sid, POLICY)
            assert mem == red

        @rule(room=BIASED)
        def grant(self, room: str) -> None:
            mem, red = self.both("grant", room, POLICY)
            assert mem == red
            self.check_fifo(room, mem.granted)

        @rule(
            room=BIASED,
            change=st.sampled_from(
                [("capacity", "1"), ("capacity", "3"), ("capacity", None), ("batch-size", "1"),
                 ("batch-size", None), ("per-minute", "12"), ("per-minute", "60"),
                 ("per-minute", None), ("mode", "paused"), ("mode", "queue-all"),
                 ("mode", "passthrough"), ("mode", None)]
            ),
        )  # fmt: skip
        def control(self, room: str, change: tuple[str, str | None]) -> None:
            self.both("set_controls", room, dict([change]))
            self.capacity[room] = int(
                self.loop.run_until_complete(self.memory.controls(room)).get("capacity", 2)
            )

        @rule(ms=st.sampled_from([1, 999, 5_000, 10_000, 20_001, 30_000, 61_000]))
        def advance(self, ms: int) -> None:
            self.clock.advance(ms)

        def check_fifo(self, room: str, granted: tuple[str, ...]) -> None:
            """Nobody who joined before a granted session is still a live waiter."""
            if not granted:
                return
            order = self.joined[room]
            last = max(order.index(g) for g in granted)
            sessions = self.memory._sessions
            waiting = self.memory._rooms[room].waiting.scores
            for sid in order[:last]:
                session = sessions.get(sid)
                if session is not None and session.status is Status.WAITING:
                    assert waiting[sid] + POLICY.waiting_timeout_ms <= self.clock.now

        @invariant()
        def capacity_holds_and_counts_agree(self) -> None:
            if not hasattr(self, "loop"):
                return
            for room in ROOMS:
                mem, red = self.both("counts", room)
                assert (mem.waiting, mem.active) == (red.waiting, red.active)
                assert mem.oldest_join_ms == red.oldest_join_ms
                # A live capacity cut leaves those already inside; it never admits above it.
                assert red.active <= max(POLICY.capacity, 3)

        @invariant()
        def each_session_in_one_state(self) -> None:
            if not hasattr(self, "loop"):
                return
            for room in ROOMS:
                r = self.memory._rooms.get(room)
                if r is None:
                    continue
                assert not set(r.waiting.scores) & set(r.active.scores)
                for sid in r.active.scores:
                    assert self.memory._sessions[sid].status is Status.ACTIVE
                for sid in r.waiting.scores:
                    assert self.memory._sessions[sid].status is Status.WAITING

    return StoresAgree


def test_memory_and_redis_stores_agree(redis_url: str) -> None:
    machine = make_machine(redis_url)
    machine.TestCase.settings = settings(
        max_examples=60,
        stateful_step_count=40,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    machine.TestCase().runTest()
