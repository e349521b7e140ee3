"""Admission: from a request's cookie to a verdict (pass, admitted, waiting, ...) for one room.

Shared by the gate (middleware) and the `auth_request` endpoint. The cookie is verified once
per distinct value (cached); an admitted visitor with a fresh pass costs no store call, and a
pass in its second half is renewed at once while the store confirms in the background.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass

from gatekeeper.asgi import Headers
from gatekeeper.clock import Clock
from gatekeeper.errors import StoreError
from gatekeeper.gate.cookies import read_cookie, set_cookie_header
from gatekeeper.gate.tokens import CookieCodec
from gatekeeper.ids import new_session_id, room_of
from gatekeeper.runtime import Runtime
from gatekeeper.store.base import TERMINAL, Mode, Status, Ticket

log = logging.getLogger("gatekeeper.gate")

# Sessions a background check found no longer active, remembered this many at most.
_DENIED_MAX = 100_000
# Cookie headers known to carry a pass, remembered this many at most (a few MB).
_KNOWN_MAX = 16_384

PASS = "pass"
ADMITTED = "admitted"
WAITING = "waiting"
HELD = "held"
UNAVAILABLE = "unavailable"
FAIL_OPEN = "fail_open"
PASSTHROUGH = "passthrough"
ABSENT = "absent"
LET_THROUGH = frozenset({PASS, ADMITTED, FAIL_OPEN, PASSTHROUGH})


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with one request: the verdict, the session, and a cookie to set if any."""

    verdict: str
    session_id: str = ""
    cookie: tuple[bytes, bytes] | None = None
    ticket: Ticket | None = None
    pass_until_ms: int = 0


@dataclass(frozen=True, slots=True)
class KnownHeader:
    """A Cookie header seen before: this room's cookie in it, and the header without ours."""

    cookie: str
    forwarded: bytes | None


class Admission:
    """Decides admission for a room from the request headers; see the module docstring."""

    def __init__(self, runtime: Runtime, clock: Clock) -> None:
        settings = runtime.settings
        gate = settings.gate
        self.runtime = runtime
        self._clock = clock
        keys = settings.cookie_keys
        if not keys:
            log.warning(
                "WAITINGROOM_GATE_COOKIE_KEYS is not set: using a random key, so cookies do not "
                "survive a restart and replicas cannot share visitors"
            )
            keys = (secrets.token_urlsafe(32),)
        self.codec = CookieCodec(keys, max_age_s=int(gate.cookie.max_age))
        self._cookie = gate.cookie
        self._default_room = settings.rooms.default_room
        self._pass_ms = int(gate.cookie.pass_ttl * 1000)
        self._half_ms = self._pass_ms // 2
        self._fail_open = gate.failure_policy == "open"
        self._renewing: set[str] = set()
        # False after a failed store call until one succeeds: no early renewals then, so that
        # during an outage admitted visitors keep going only until their pass runs out.
        self._store_ok = True
        self._denied: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._known: dict[tuple[str, bytes], KnownHeader] = {}

    def cookie_name(self, room: str) -> str:
        """The cookie holding a visitor's session in `room` (one cookie per room)."""
        base = self._cookie.name
        return base if room == self._default_room else f"{base}-{room}"

    def quick_pass(
        self, room: str, cookie_header: bytes, now: int
    ) -> tuple[str, KnownHeader] | None:
        """The session and header of a request whose Cookie header was seen with a fresh pass.

        The hot path of an admitted visitor: the same answer `decide` would give (PASS, no
        cookie to set) from two dict lookups; None whenever `decide` must look (first sight
        of the header, pass in its second half, session refused, room held).
        """
        known = self._known.get((room, cookie_header))
        if known is None or self.runtime.rooms.mode(room) is Mode.QUEUE_ALL:
            return None
        visitor = self.codec.loads(known.cookie)
        if visitor is None:
            return None
        left = visitor.pass_until_ms - now
        if left <= 0 or (left <= self._half_ms and self._store_ok):
            return None
        sid = visitor.session_id
        if self._denied and self._denied.get(sid, 0) > now:
            return None
        return sid, known

    def remember(self, room: str, cookie_header: bytes, known: KnownHeader) -> None:
        """Keep a Cookie header that `decide` let through on its pass, for `quick_pass`."""
        if len(self._known) >= _KNOWN_MAX:
            self._known.clear()
        self._known[(room, cookie_header)] = known

    async def decide(self, room: str, headers: Headers, *, join: bool = True) -> Decision:
        """The verdict for a request to `room`; without `join`, a newcomer is ABSENT."""
        mode = self.runtime.rooms.mode(room)
        if mode is Mode.QUEUE_ALL:
            # Emergency stop: nobody reaches the origin; sessions keep their places.
            return Decision(HELD)
        name = self.cookie_name(room)
        raw = read_cookie(headers, name)
        visitor = self.codec.loads(raw) if raw else None
        now = self._clock()
        if visitor is not None:
            sid = visitor.session_id
            if room_of(sid) != room or (self._denied and self._denied.get(sid, 0) > now):
                visitor = None
            elif visitor.pass_until_ms > now:
                # The hot path: a fresh pass is enough, no store call.
                if visitor.pass_until_ms - now > self._half_ms or not self._store_ok:
                    return Decision(PASS, sid, None, None, visitor.pass_until_ms)
                self._renew_later(room, sid)
                until = now + self._pass_ms
                return Decision(PASS, sid, self._set_cookie(name, sid, until), None, until)
        store, policy = self.runtime.store, self.runtime.rooms.policy(room)
        metrics = self.runtime.metrics
        try:
            ticket = None
            if visitor is not None:
                ticket = await store.poll(visitor.session_id, policy)
            if ticket is None or ticket.status in TERMINAL:
                if not join:
                    return Decision(ABSENT)
                ticket = await store.join(room, new_session_id(room), policy)
                metrics.joined(room, ticket.status is Status.ACTIVE)
        except StoreError as exc:
            self._store_ok = False
            metrics.store_errors.labels("gate").inc()
            if self._fail_open:
                log.error("store unavailable, failing OPEN (visitor let through): %s", exc)
                return Decision(FAIL_OPEN, "fail-open")
            log.warning("store unavailable, visitor held back: %s", exc)
            return Decision(UNAVAILABLE)
        self._store_ok = True
        sid = ticket.session_id
        if ticket.status is Status.ACTIVE:
            until = now + self._pass_ms
            return Decision(ADMITTED, sid, self._set_cookie(name, sid, until), ticket, until)
        fresh = visitor is None or visitor.session_id != sid
        cookie = self._set_cookie(name, sid, 0) if fresh else None
        if mode is Mode.PASSTHROUGH:
            # The gate is off but still counting: the visitor keeps their session and place.
            return Decision(PASSTHROUGH, sid, cookie, ticket)
        return Decision(WAITING, sid, cookie, ticket)

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
            ticket = await self.runtime.store.poll(session_id, self.runtime.rooms.policy(room))
        except StoreError as exc:
            self._store_ok = False
            self.runtime.metrics.store_errors.labels("gate").inc()
            log.warning("background pass check failed for %s: %s", session_id, exc)
            return
        finally:
            self._renewing.discard(session_id)
        self._store_ok = True
        if ticket is None or ticket.status is not Status.ACTIVE:
            if len(self._denied) >= _DENIED_MAX:
                self._denied.clear()
            self._denied[session_id] = self._clock() + 2 * self._pass_ms + 1

    async def drain(self) -> None:
        """Wait for background checks in flight (used at shutdown and by tests)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def set_cookie(self, room: str, session_id: str, pass_until_ms: int) -> tuple[bytes, bytes]:
        """The Set-Cookie header carrying `session_id` in `room` with the given pass."""
        return self._set_cookie(self.cookie_name(room), session_id, pass_until_ms)

    def _set_cookie(self, name: str, session_id: str, pass_until_ms: int) -> tuple[bytes, bytes]:
        c = self._cookie
        return set_cookie_header(
            name,
            self.codec.dumps(session_id, pass_until_ms),
            max_age_s=int(c.max_age),
            secure=c.secure,
            same_site=c.same_site,
            path=c.path,
            domain=c.domain or None,
        )
