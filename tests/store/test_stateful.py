"""Hypothesis drives the memory and Redis stores with the same operations: they must agree."""

from __future__ import annotations

import asyncio
import string
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
    multiple,
    rule,
)

from gatekeeper.config.settings import RedisSettings
from gatekeeper.errors import JoinRefused
from gatekeeper.ids import new_session_id, room_of
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
ANY_ROOM = st.sampled_from((*ROOMS, "C"))

_TOKEN_CHARS = string.ascii_letters + string.digits + "-_"
_TOKENS = st.text(_TOKEN_CHARS, min_size=22, max_size=22)


def _spoil(token: str, at: int, char: str) -> str:
    return token[:at] + char + token[at + 1 :]


def _with_room(token: str, room: str) -> str:
    return f"{token}.{room}"


MALFORMED = st.one_of(
    st.just(""),
    _TOKENS,  # no room suffix
    st.builds(
        _with_room,
        st.text(_TOKEN_CHARS, max_size=21) | st.text(_TOKEN_CHARS, min_size=23, max_size=40),
        ANY_ROOM,
    ),  # wrong token length
    st.builds(
        _with_room,
        st.builds(_spoil, _TOKENS, st.integers(0, 21), st.sampled_from("!{}/ %\né.")),
        ANY_ROOM,
    ),  # a character no token has
    st.builds(_with_room, _TOKENS, st.sampled_from(["A{x}", "A/B", "A B", "Ä", "A\n"])),
    st.builds(_with_room, _TOKENS, st.just("r" * 65)),  # room name too long
)
FRESH = st.builds(new_session_id, ANY_ROOM)
"""Ids nobody joined, of any room (an id of the room a join names, or of another one)."""


def _elsewhere(sid: str) -> str:
    """The same token, named after another room."""
    token, _, room = sid.partition(".")
    return f"{token}.{'B' if room == 'A' else 'A'}"


def comparable(ticket: Ticket | None | type[ValueError]) -> Any:
    if not isinstance(ticket, Ticket):
        return ticket
    return (ticket.session_id, ticket.room, ticket.status, ticket.ahead, ticket.waiting,
            ticket.active, pytest.approx(ticket.grant_rate, rel=1e-6, abs=1e-9), ticket.reason,
            ticket.ended)  # fmt: skip


def make_machine(redis_url: str) -> type[RuleBasedStateMachine]:
    class StoresAgree(RuleBasedStateMachine):
        sessions = Bundle("sessions")

        @initialize()
        def setup(self) -> None:
            self.loop = asyncio.new_event_loop()
            self.clock = FakeClock()
            self.memory = MemoryStore(self.clock)
            self.redis = RedisStore.open(
                RedisSettings(url=redis_url, key_prefix=unique_prefix()), clock=self.clock
            )
            self.joined: dict[str, list[str]] = {room: [] for room in ROOMS}
            self.capacity = {room: POLICY.capacity for room in ROOMS}

        def teardown(self) -> None:
            if hasattr(self, "loop"):
                self.loop.run_until_complete(self.redis.aclose())
                self.loop.close()

        def both(self, method: str, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
            mem = self.loop.run_until_complete(getattr(self.memory, method)(*args, **kwargs))
            red = self.loop.run_until_complete(getattr(self.redis, method)(*args, **kwargs))
            return mem, red

        def both_or_refused(self, method: str, *args: Any) -> tuple[Any, Any]:
            """`both`, where a call that raises ValueError answers `ValueError`, and a join
            turned away its refusal (a closed room)."""
            answers: list[Any] = []
            for store in (self.memory, self.redis):
                try:
                    answers.append(self.loop.run_until_complete(getattr(store, method)(*args)))
                except ValueError:
                    answers.append(ValueError)
                except JoinRefused as refused:
                    answers.append((refused.reason, refused.retry_after_s))
            return answers[0], answers[1]

        def all_counts(self) -> list[Any]:
            return [self.both("counts", room) for room in ROOMS]

        @rule(target=sessions, room=BIASED)
        def join(self, room: str) -> Any:
            sid = new_session_id(room)
            mem, red = self.both_or_refused("join", room, sid, POLICY)
            assert comparable(mem) == comparable(red)
            if not isinstance(mem, Ticket):
                return multiple()  # a closed room: nothing written
            self.joined[room].append(sid)
            return multiple(sid)

        @rule(target=sessions, room=BIASED, sid=MALFORMED | FRESH)
        def join_odd(self, room: str, sid: str) -> Any:
            """A join with an id that may not name its room: refused by both, or a join."""
            before = self.all_counts()
            mem, red = self.both_or_refused("join", room, sid, POLICY)
            assert comparable(mem) == comparable(red)
            if room_of(sid) != room:
                assert mem is red is ValueError
                assert self.all_counts() == before
                return multiple()
            if not isinstance(mem, Ticket):
                assert self.all_counts() == before, "a refused join writes nothing"
                return multiple()
            self.joined[room].append(sid)
            return multiple(sid)

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

        @rule(sid=MALFORMED | FRESH | sessions.map(_elsewhere), revoke=st.booleans())
        def poll_and_leave_unknown(self, sid: str, revoke: bool) -> None:
            """Ids nobody joined: unknown to both, and nothing changes."""
            before = self.all_counts()
            assert self.both("poll", sid, POLICY) == (None, None)
            assert self.both("leave", sid, POLICY, revoke=revoke) == (False, False)
            assert self.all_counts() == before

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
                 ("mode", "passthrough"), ("mode", "closed"), ("mode", None)]
            ),
        )  # fmt: skip
        def control(self, room: str, change: tuple[str, str | None]) -> None:
            self.both("set_controls", room, dict([change]))
            self.capacity[room] = int(
                self.loop.run_until_complete(self.memory.controls(room)).get("capacity", 2)
            )

        @rule(room=ANY_ROOM, idle_ms=st.sampled_from([0, 1, 10_000, 60_000]))
        def forget(self, room: str, idle_ms: int) -> None:
            """Both forget the same rooms at the same moments, and list the same rooms."""
            mem, red = self.both("forget", room, idle_ms)
            assert mem == red
            if mem:
                # Released in both: nobody inside, and the rate estimate starts afresh.
                mem_counts, red_counts = self.both("counts", room)
                assert (mem_counts.waiting, mem_counts.active) == (0, 0)
                assert mem_counts.grant_rate == red_counts.grant_rate == 0.0
            mem_rooms, red_rooms = self.both("rooms")
            assert mem_rooms == red_rooms

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
