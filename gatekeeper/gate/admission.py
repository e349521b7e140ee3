"""Admission: from a request's cookie to a verdict (pass, admitted, waiting, ...) for one room.

All cookie logic lives here: the cookie's name per room, reading and verifying it (once per
distinct value, cached), the Cookie headers known to carry a fresh pass (the hot path of an
admitted visitor: two dict lookups, no store call), and the Set-Cookie headers the gate sends.
In a room with `gate.bind-pass`, a cookie counts only from the client address (or network) it
was issued to (`gate.binding`); from anywhere else it is as good as none.
A pass in its second half (or run out) is renewed only once the store says the session is still
ACTIVE (one store call per visitor per pass), so no pass outlives its session by more than a
pass TTL on any number of replicas.

A request without a cookie joins lazily (`store.base.Entry`): when the room is busy it gets a
cookie and the waiting page, and its session is written only when the cookie comes back, so a
client that keeps no cookies adds nobody to the line. Joins count against the client's join
limit (its address through trusted proxies, `gatekeeper.clients`) and the room's queue cap.

In a room that needs enqueue tokens (`core.invitations`), a join needs a valid one: it takes
the user's one place (or finds the place the user holds), never lazily, without a challenge.

A closed room (sold out) lets nobody join: a newcomer, and a waiter whose session the close
ended, get the closed answer (no new session); admitted visitors go on until they leave or time
out.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from functools import partial

from gatekeeper.asgi import HeaderSeq, Scope
from gatekeeper.clients import ClientAddresses
from gatekeeper.clock import Clock, seconds
from gatekeeper.config.settings import ChallengeKind, FailurePolicy, Settings
from gatekeeper.core.events import Phase
from gatekeeper.core.invitations import Invitations, token_of
from gatekeeper.core.rooms import Rooms
from gatekeeper.enqueue import TokenProblem
from gatekeeper.errors import JoinRefused, Refusal, StoreError, StoreFull
from gatekeeper.gate.binding import Binding
from gatekeeper.gate.challenge import Challenges
from gatekeeper.gate.cookies import CookieAttributes, read_cookie, set_cookie_header, strip_cookie
from gatekeeper.gate.tokens import CookieCodec, Visitor
from gatekeeper.ids import new_session_id, room_of
from gatekeeper.metrics import Metrics
from gatekeeper.store.base import (
    QUEUE_FULL_RETRY_S,
    TERMINAL,
    EndReason,
    Entry,
    Mode,
    Queue,
    RoomPolicy,
    Status,
    Ticket,
)
from gatekeeper.verdicts import Verdict
from gatekeeper.web.views import ChallengeView

log = logging.getLogger("gatekeeper.gate")

# The verdict of a join the store turned away.
_REFUSED = {
    Refusal.RATE_LIMITED: Verdict.LIMITED,
    Refusal.QUEUE_FULL: Verdict.FULL,
    Refusal.ROOM_CLOSED: Verdict.CLOSED,
}

# Cookie headers known to carry a pass, remembered this many at most (a few MB).
_KNOWN_MAX = 16_384
_COOKIE = b"cookie"


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with one request: the verdict, the session, and a cookie to set if any."""

    verdict: Verdict
    session_id: str = ""
    cookie: tuple[bytes, bytes] | None = None
    ticket: Ticket | None = None
    pass_until_ms: int = 0
    retry_after_s: int = 0
    """LIMITED and FULL: when to try again (CLOSED: 0, not again)."""
    provisional: bool = False
    """WAITING without a place yet: the session is written when the cookie comes back."""
    challenge: ChallengeView | None = None
    """A provisional visitor's challenge, to be met before that comeback counts."""
    problem: TokenProblem | None = None
    """DENIED: what was wrong with the join's enqueue token."""


class Strip:
    """Marker: strip our cookies from each Cookie header (nothing known about them)."""


STRIP = Strip()


@dataclass(frozen=True, slots=True)
class Admitted:
    """An admitted request on its way to the app, and what to do on the way back."""

    room: str
    session_id: str
    done: bool = False
    """The path is a done path: a 2xx answer releases the place."""
    set_cookie: tuple[bytes, bytes] | None = None
    """A Set-Cookie header to pass on with the response (a new or renewed pass)."""
    cookie: bytes | None | Strip = STRIP
    """The request's Cookie header without ours when already known (None: nothing left)."""


@dataclass(frozen=True, slots=True)
class KnownHeader:
    """A Cookie header seen with a pass: this room's cookie in it, and what to forward.

    `admitted` is built once, when the header is first seen, and serves every later request
    that carries the same header (the hot path builds nothing).
    """

    cookie: str
    admitted: Admitted


class Admission:
    """Decides admission for a room from the request headers; see the module docstring."""

    def __init__(
        self, store: Queue, rooms: Rooms, metrics: Metrics, settings: Settings, clock: Clock
    ) -> None:
        cookie = settings.gate.cookie
        self.store = store
        self.rooms = rooms
        self.clock = clock
        self.codec = CookieCodec(
            settings.cookie_keys, max_age_s=int(cookie.max_age), clock=seconds(clock)
        )
        self._metrics = metrics
        self._name = cookie.name
        self._attributes = CookieAttributes(
            secure=cookie.secure,
            same_site=cookie.same_site,
            max_age_s=int(cookie.max_age),
            path=cookie.path,
            domain=cookie.domain or None,
        )
        self._default_room = settings.rooms.default_room
        self.addresses = ClientAddresses(settings.proxy.trusted_proxies)
        self._binding = Binding(settings, self.codec, self.addresses)
        self.challenges = Challenges(settings)
        self.invitations = Invitations(settings, clock)
        self._pass_ms = int(cookie.pass_ttl * 1000)
        self._half_ms = self._pass_ms // 2
        self._fail_open = settings.gate.failure_policy is FailurePolicy.OPEN
        # False after a failed store call until one succeeds: no early renewals then, so that
        # during an outage admitted visitors keep going only until their pass runs out.
        self._store_ok = True
        # Store polls in flight per session, with when each was asked (clock ms).
        self._polls: dict[str, tuple[int, asyncio.Task[Ticket | None]]] = {}
        self._known: dict[tuple[str, bytes], KnownHeader] = {}

    def cookie_name(self, room: str) -> str:
        """The cookie holding a visitor's session in `room` (one cookie per room)."""
        return self._name if room == self._default_room else f"{self._name}-{room}"

    def quick_pass(self, room: str, scope: Scope) -> Admitted | None:
        """The admitted request whose one Cookie header was seen with a fresh pass.

        The hot path of an admitted visitor: the same answer `decide` would give (PASS, no
        cookie to set) from two dict lookups; None whenever `decide` must look (several or no
        Cookie headers, first sight of the header, pass in its second half or run out, room
        held, a cookie bound to another address: see `gate.binding`).
        """
        raw = None
        for key, value in scope["headers"]:
            # The length test first: most headers are told apart without lower-casing them.
            if len(key) == 6 and (key == _COOKIE or key.lower() == _COOKIE):
                if raw is not None:
                    return None  # several Cookie headers: the full path reads them all
                raw = value
        if raw is None:
            return None
        known = self._known.get((room, raw))
        if known is None or self.rooms.mode(room) is Mode.QUEUE_ALL:
            return None
        visitor = self.codec.loads(known.cookie)
        if visitor is None:
            return None
        if visitor.bound and not self._binding.holds(room, scope, visitor.bound):
            return None  # bound to another address: `decide` starts the visitor over
        left = visitor.pass_until_ms - self.clock()
        if left <= 0 or (left <= self._half_ms and self._store_ok):
            return None
        return known.admitted

    def remember(self, room: str, headers: HeaderSeq, session_id: str) -> None:
        """Remember the request's single Cookie header as one carrying a pass of `session_id`
        (a PASS that `decide` just gave, so the cookie was verified): see quick_pass."""
        cookies = [value for key, value in headers if key.lower() == _COOKIE]
        if len(cookies) != 1:
            return
        raw = bytes(cookies[0])
        value = read_cookie([(_COOKIE, raw)], self.cookie_name(room))
        if value is None:
            return
        rest = strip_cookie([(_COOKIE, raw)], self._name, family=True)
        admitted = Admitted(room, session_id, cookie=rest[0][1] if rest else None)
        if len(self._known) >= _KNOWN_MAX:
            self._known.clear()
        self._known[(room, raw)] = KnownHeader(value, admitted)

    async def decide(self, room: str, scope: Scope, *, join: bool = True) -> Decision:
        """The verdict for a request to `room`; without `join`, a newcomer is ABSENT."""
        mode = self.rooms.mode(room)
        if mode is Mode.QUEUE_ALL:
            # Emergency stop: nobody reaches the origin; sessions keep their places.
            return Decision(Verdict.HELD)
        raw = read_cookie(scope["headers"], self.cookie_name(room))
        visitor = self.codec.loads(raw) if raw else None
        if visitor is not None and (
            room_of(visitor.session_id) != room
            or not self._binding.holds(room, scope, visitor.bound)
        ):
            visitor = None  # another room's, or bound to another address: as good as none
        now = self.clock()
        on_pass = visitor if visitor is not None and visitor.pass_until_ms > now else None
        if on_pass is not None and (
            on_pass.pass_until_ms - now > self._half_ms or not self._store_ok
        ):
            # A fresh pass is enough (no store call); while the store fails, no early renewal.
            return Decision(Verdict.PASS, on_pass.session_id, None, None, on_pass.pass_until_ms)
        policy = self.rooms.policy(room)
        asked, ticket = now, None
        if visitor is not None:
            try:
                asked, ticket = await self._poll(visitor.session_id, policy)
            except StoreError as exc:
                return self._store_failed(exc, on_pass)
            self._store_ok = True
            if ticket is not None and ticket.status is Status.ACTIVE:
                # The pass runs from when the store was asked, so that it cannot outlive the
                # session by more than a pass TTL, whichever replica renews it.
                return self._admit(ticket, asked, scope, renewed=on_pass is not None)
        provisional = False
        if ticket is None or ticket.status in TERMINAL:
            if mode is Mode.CLOSED or self.rooms.phase(room) is Phase.CLOSED:
                # Sold out: no new session (the store would refuse it), and a waiter whose
                # session the close ended sees the closed page rather than joining again.
                return Decision(Verdict.CLOSED)
            if not join:
                return Decision(Verdict.ABSENT)
            # A cookie back for a session the store does not know (the first answer to a lazy
            # join, or one past its retention) joins with that session: this browser keeps
            # cookies. Without a cookie the join is lazy.
            claim = None
            if self.invitations.active:
                claim = self.invitations.check(room, token_of(scope)[0])
            if isinstance(claim, TokenProblem):
                return Decision(Verdict.DENIED, problem=claim)
            back = visitor is not None and ticket is None
            sid = visitor.session_id if back and visitor is not None else new_session_id(room)
            client, rank = self.addresses.key(scope), self.rooms.rank(room, sid)
            if claim is None:
                lazy = visitor is None or not await self._met_challenge(room, sid, scope, back)
                entry = Entry(client, lazy, rank)
            else:
                entry = Entry(client, False, rank, claim.user_id, claim.priority)
            user_id = "" if claim is None else claim.user_id
            try:
                ticket = await self.store.join(room, sid, policy, user_id=user_id, entry=entry)
            except JoinRefused as refused:
                # Closed in the store before this replica's next grant tick saw it: the same.
                verdict = _REFUSED[refused.reason]
                return Decision(verdict, retry_after_s=refused.retry_after_s)
            except StoreFull as exc:
                # Redis is at maxmemory: nobody new fits, but the store answers, and admitted
                # visitors go on (their polls still work), whatever the failure policy.
                log.warning("store full, newcomer turned away: %s", exc)
                self._metrics.store_errors.labels("gate").inc()
                return Decision(Verdict.FULL, retry_after_s=QUEUE_FULL_RETRY_S)
            except StoreError as exc:
                return self._store_failed(exc, None)
            self._store_ok = True
            provisional = entry.lazy and ticket.status is Status.WAITING
            if not provisional:
                self._metrics.joined(room, ticket.status is Status.ACTIVE)
            if ticket.status is Status.ACTIVE:
                return self._admit(ticket, now, scope, claimed=not entry.lazy)
        sid = ticket.session_id
        fresh = visitor is None or visitor.session_id != sid
        cookie = self.set_cookie(room, sid, 0, scope) if fresh else None
        if mode is Mode.PASSTHROUGH:
            # The gate is off but still counting: the visitor keeps their session and place.
            return Decision(Verdict.PASSTHROUGH, sid, cookie, ticket)
        if not provisional:
            return Decision(Verdict.WAITING, sid, cookie, ticket)
        challenge = self.challenges.view(room, self.cookie_name(room))
        return Decision(Verdict.WAITING, sid, cookie, ticket, provisional=True, challenge=challenge)

    async def _met_challenge(self, room: str, sid: str, scope: Scope, back: bool) -> bool:
        """Whether a join with cookie may take a place in line: in a room with a challenge,
        only the comeback of `sid` (`back`) with an answer that meets it."""
        if self.challenges.kind(room) is ChallengeKind.NONE:
            return True
        if not back:
            return False
        answer = self.challenges.answer(scope["headers"], self.cookie_name(room))
        ip = self.addresses.address(scope)
        return await self.challenges.passed(room, sid, answer, "" if ip is None else str(ip))

    def _admit(
        self,
        ticket: Ticket,
        asked: int,
        scope: Scope,
        *,
        renewed: bool = False,
        claimed: bool = True,
    ) -> Decision:
        """Let an ACTIVE session through (the request `scope`), its new pass running from
        `asked` (the store call).

        A place taken by a lazy join is not `claimed` yet: its pass starts in its second half,
        so the visitor's next request polls the store, which turns the claim window into the
        idle timeout (the browser came back with the cookie)."""
        sid = ticket.session_id
        until = asked + (self._pass_ms if claimed else self._half_ms)
        verdict = Verdict.PASS if renewed else Verdict.ADMITTED
        cookie = self.set_cookie(ticket.room, sid, until, scope)
        return Decision(verdict, sid, cookie, ticket, until)

    async def _poll(self, session_id: str, policy: RoomPolicy) -> tuple[int, Ticket | None]:
        """The session's ticket and when the store was asked; concurrent requests of one
        visitor share one store call (one call per visitor per pass)."""
        flight = self._polls.get(session_id)
        if flight is None:
            task = asyncio.ensure_future(self.store.poll(session_id, policy))
            flight = (self.clock(), task)
            self._polls[session_id] = flight
            task.add_done_callback(partial(self._landed, session_id))
        # Shielded: a request cancelled (client gone) does not cancel the others' answer.
        return flight[0], await asyncio.shield(flight[1])

    def _landed(self, session_id: str, task: asyncio.Task[Ticket | None]) -> None:
        flight = self._polls.get(session_id)
        if flight is not None and flight[1] is task:
            del self._polls[session_id]
        if not task.cancelled() and task.exception() is None:
            # Retrieved: a failed poll nobody waits for any more logs nothing. One count per
            # store call, however many requests shared it.
            ticket = task.result()
            if ticket is not None:
                self._metrics.polled(ticket)

    def _store_failed(self, exc: StoreError, on_pass: Visitor | None) -> Decision:
        self._store_ok = False
        self._metrics.store_errors.labels("gate").inc()
        if on_pass is not None:
            # The closed policy's promise: admitted visitors keep going until the pass runs out.
            log.warning("store unavailable, pass kept until it runs out: %s", exc)
            return Decision(Verdict.PASS, on_pass.session_id, None, None, on_pass.pass_until_ms)
        if self._fail_open:
            log.error("store unavailable, failing OPEN (visitor let through): %s", exc)
            return Decision(Verdict.FAIL_OPEN, "fail-open")
        log.warning("store unavailable, visitor held back: %s", exc)
        return Decision(Verdict.UNAVAILABLE)

    async def release(self, room: str, session_id: str, reason: str) -> None:
        """Give up a session's place (a done path or the origin's leave command)."""
        try:
            await self.store.leave(session_id, self.rooms.policy(room))
        except StoreError as exc:
            self._metrics.store_errors.labels("gate").inc()
            log.warning("could not release %s: %s", session_id, exc)
        else:
            self._metrics.leaves.labels(room, reason).inc()
            self._metrics.session_ended(room, EndReason.LEFT)

    async def drain(self) -> None:
        """Wait for the store polls in flight (at shutdown, before the store closes)."""
        while flights := [task for _, task in self._polls.values() if not task.done()]:
            await asyncio.gather(*flights, return_exceptions=True)
        await self.challenges.aclose()

    def set_cookie(
        self, room: str, session_id: str, pass_until_ms: int, scope: Scope
    ) -> tuple[bytes, bytes]:
        """The Set-Cookie header carrying `session_id` in `room` with the given pass, for the
        request `scope` (in a bound room the cookie is bound to its client address)."""
        value = self.codec.dumps(session_id, pass_until_ms, self._binding.tag(room, scope))
        return set_cookie_header(self.cookie_name(room), value, self._attributes)
