"""Admission: from a request's cookie to a verdict (pass, admitted, waiting, ...) for one room.

All cookie logic lives here: the cookie's name per room, reading and verifying it (once per
distinct value, cached), the Cookie headers known to carry a fresh pass (the hot path of an
admitted visitor: two dict lookups, no store call), and the Set-Cookie headers the gate sends.
A pass in its second half is renewed at once while the store confirms in the background.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from gatekeeper.asgi import HeaderSeq
from gatekeeper.clock import Clock, seconds
from gatekeeper.config.settings import FailurePolicy, Settings
from gatekeeper.core.rooms import Rooms
from gatekeeper.errors import StoreError
from gatekeeper.gate.cookies import CookieAttributes, read_cookie, set_cookie_header, strip_cookie
from gatekeeper.gate.tokens import CookieCodec, Visitor
from gatekeeper.ids import new_session_id, room_of
from gatekeeper.metrics import Metrics
from gatekeeper.store.base import TERMINAL, Mode, Queue, Status, Ticket
from gatekeeper.verdicts import Verdict

log = logging.getLogger("gatekeeper.gate")

# Sessions a background check found no longer active, remembered this many at most.
_DENIED_MAX = 100_000
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
        self._pass_ms = int(cookie.pass_ttl * 1000)
        self._half_ms = self._pass_ms // 2
        self._fail_open = settings.gate.failure_policy is FailurePolicy.OPEN
        self._renewing: set[str] = set()
        # False after a failed store call until one succeeds: no early renewals then, so that
        # during an outage admitted visitors keep going only until their pass runs out.
        self._store_ok = True
        self._denied: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._known: dict[tuple[str, bytes], KnownHeader] = {}

    @property
    def cookie_family(self) -> str:
        """The base cookie name; every room's cookie is this name or `<name>-<room>`."""
        return self._name

    def cookie_name(self, room: str) -> str:
        """The cookie holding a visitor's session in `room` (one cookie per room)."""
        return self._name if room == self._default_room else f"{self._name}-{room}"

    def quick_pass(self, room: str, headers: HeaderSeq) -> Admitted | None:
        """The admitted request whose one Cookie header was seen with a fresh pass.

        The hot path of an admitted visitor: the same answer `decide` would give (PASS, no
        cookie to set) from two dict lookups; None whenever `decide` must look (several or no
        Cookie headers, first sight of the header, pass in its second half, session refused,
        room held).
        """
        raw = None
        for key, value in headers:
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
        now = self.clock()
        left = visitor.pass_until_ms - now
        if left <= 0 or (left <= self._half_ms and self._store_ok):
            return None
        if self._denied and self._denied.get(visitor.session_id, 0) > now:
            return None
        return known.admitted

    def remember(self, room: str, headers: HeaderSeq) -> None:
        """Remember the request's single Cookie header as one carrying a pass (see quick_pass)."""
        cookies = [value for key, value in headers if key.lower() == _COOKIE]
        if len(cookies) != 1:
            return
        raw = bytes(cookies[0])
        value = read_cookie([(_COOKIE, raw)], self.cookie_name(room))
        visitor = self.codec.loads(value) if value is not None else None
        if value is None or visitor is None:
            return
        rest = strip_cookie([(_COOKIE, raw)], self._name, family=True)
        admitted = Admitted(room, visitor.session_id, cookie=rest[0][1] if rest else None)
        if len(self._known) >= _KNOWN_MAX:
            self._known.clear()
        self._known[(room, raw)] = KnownHeader(value, admitted)

    async def decide(self, room: str, headers: HeaderSeq, *, join: bool = True) -> Decision:
        """The verdict for a request to `room`; without `join`, a newcomer is ABSENT."""
        mode = self.rooms.mode(room)
        if mode is Mode.QUEUE_ALL:
            # Emergency stop: nobody reaches the origin; sessions keep their places.
            return Decision(Verdict.HELD)
        name = self.cookie_name(room)
        raw = read_cookie(headers, name)
        visitor = self.codec.loads(raw) if raw else None
        now = self.clock()
        if visitor is not None:
            passed = self._on_pass(room, visitor, now)
            if passed is not None:
                return passed
            if room_of(visitor.session_id) != room or self._is_denied(visitor.session_id, now):
                visitor = None
        try:
            ticket = await self._look_up(room, visitor, join)
        except StoreError as exc:
            return self._store_failed(exc)
        if ticket is None:
            return Decision(Verdict.ABSENT)
        self._store_ok = True
        sid = ticket.session_id
        if ticket.status is Status.ACTIVE:
            until = now + self._pass_ms
            return Decision(Verdict.ADMITTED, sid, self.set_cookie(room, sid, until), ticket, until)
        fresh = visitor is None or visitor.session_id != sid
        cookie = self.set_cookie(room, sid, 0) if fresh else None
        if mode is Mode.PASSTHROUGH:
            # The gate is off but still counting: the visitor keeps their session and place.
            return Decision(Verdict.PASSTHROUGH, sid, cookie, ticket)
        return Decision(Verdict.WAITING, sid, cookie, ticket)

    def _is_denied(self, session_id: str, now: int) -> bool:
        return bool(self._denied) and self._denied.get(session_id, 0) > now

    def _on_pass(self, room: str, visitor: Visitor, now: int) -> Decision | None:
        """PASS for a fresh pass of this room (renewed in its second half), else None."""
        sid = visitor.session_id
        if visitor.pass_until_ms <= now or room_of(sid) != room or self._is_denied(sid, now):
            return None
        # The hot path: a fresh pass is enough, no store call.
        if visitor.pass_until_ms - now > self._half_ms or not self._store_ok:
            return Decision(Verdict.PASS, sid, None, None, visitor.pass_until_ms)
        self._renew_later(room, sid)
        until = now + self._pass_ms
        return Decision(Verdict.PASS, sid, self.set_cookie(room, sid, until), None, until)

    async def _look_up(self, room: str, visitor: Visitor | None, join: bool) -> Ticket | None:
        """The visitor's ticket from the store; a newcomer joins (None when `join` is off)."""
        policy = self.rooms.policy(room)
        ticket = None
        if visitor is not None:
            ticket = await self.store.poll(visitor.session_id, policy)
        if ticket is None or ticket.status in TERMINAL:
            if not join:
                return None
            ticket = await self.store.join(room, new_session_id(room), policy)
            self._metrics.joined(room, ticket.status is Status.ACTIVE)
        return ticket

    def _store_failed(self, exc: StoreError) -> Decision:
        self._store_ok = False
        self._metrics.store_errors.labels("gate").inc()
        if self._fail_open:
            log.error("store unavailable, failing OPEN (visitor let through): %s", exc)
            return Decision(Verdict.FAIL_OPEN, "fail-open")
        log.warning("store unavailable, visitor held back: %s", exc)
        return Decision(Verdict.UNAVAILABLE)

    def _renew_later(self, room: str, session_id: str) -> None:
        """Confirm in the background that the session is still active (and extend its lease).

        The request does not wait; if the session ended (left, revoked, expired), this replica
        refuses its pass from then on, so a renewed pass cannot outlive the session here.
        """
        if session_id in self._renewing:
            return
        self._renewing.add(session_id)
        task = asyncio.get_running_loop().create_task(self._confirm(room, session_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _confirm(self, room: str, session_id: str) -> None:
        try:
            ticket = await self.store.poll(session_id, self.rooms.policy(room))
        except StoreError as exc:
            self._store_ok = False
            self._metrics.store_errors.labels("gate").inc()
            log.warning("background pass check failed for %s: %s", session_id, exc)
            return
        finally:
            self._renewing.discard(session_id)
        self._store_ok = True
        if ticket is None or ticket.status is not Status.ACTIVE:
            if len(self._denied) >= _DENIED_MAX:
                self._denied.clear()
            self._denied[session_id] = self.clock() + 2 * self._pass_ms + 1

    async def release(self, room: str, session_id: str, reason: str) -> None:
        """Give up a session's place (a done path or the origin's leave command)."""
        try:
            await self.store.leave(session_id, self.rooms.policy(room))
        except StoreError as exc:
            self._metrics.store_errors.labels("gate").inc()
            log.warning("could not release %s: %s", session_id, exc)
        else:
            self._metrics.leaves.labels(room, reason).inc()

    async def drain(self) -> None:
        """Wait for the background checks in flight (at shutdown, before the store closes)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def set_cookie(self, room: str, session_id: str, pass_until_ms: int) -> tuple[bytes, bytes]:
        """The Set-Cookie header carrying `session_id` in `room` with the given pass."""
        value = self.codec.dumps(session_id, pass_until_ms)
        return set_cookie_header(self.cookie_name(room), value, self._attributes)
