"""The seed's JSON API: join, poll and leave, under a configurable prefix."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from gatekeeper.asgi import Receive, Scope, Send, send_bytes, send_error, send_json
from gatekeeper.clients import ClientAddresses
from gatekeeper.config import Settings
from gatekeeper.core.invitations import Invitations
from gatekeeper.core.rooms import Rooms
from gatekeeper.enqueue import MAX_USER_ID_CHARS, TokenProblem
from gatekeeper.errors import JoinRefused, Refusal, StoreError, StoreFull
from gatekeeper.ids import ROOM_ID, new_session_id, room_of
from gatekeeper.metrics import Metrics
from gatekeeper.store.base import QUEUE_FULL_RETRY_S, EndReason, Entry, Status, Store, Ticket
from gatekeeper.web.api_routes import MAX_EVENT_ID, TABLE
from gatekeeper.web.events import Events
from gatekeeper.web.json_body import read_object
from gatekeeper.web.openapi import Router, encoded

log = logging.getLogger("gatekeeper.web.api")

MAX_USER_ID = MAX_USER_ID_CHARS
RETRY_AFTER = (b"retry-after", b"2")
_REFUSED = {
    Refusal.RATE_LIMITED: "too many joins from your network; try again after Retry-After",
    Refusal.QUEUE_FULL: "the line is full; try again after Retry-After",
    Refusal.ROOM_CLOSED: "this waiting room is closed: no more places are available",
}
_UNINVITED = {
    TokenProblem.REQUIRED: "this waiting room takes joins with an enqueue token from the site",
    TokenProblem.INVALID: "the enqueue token is not valid here (expired, altered or another "
    "room's): ask the site for a new one",
}
# A refusal's status code; a closed room is a final answer (no Retry-After), not an overload.
_REFUSED_STATUS = {Refusal.RATE_LIMITED: 429, Refusal.QUEUE_FULL: 503, Refusal.ROOM_CLOSED: 409}
# Client keys remembered per peer address; emptied when full (a key is cheap to make again).
_CLIENT_KEYS = 4096
_NO_CONTENT = {"type": "http.response.start", "status": 204, "headers": []}


def session_url(prefix: str, session_id: str) -> str:
    """The poll URL of a session under the API prefix."""
    return f"{prefix}/sessions/{session_id}"


class WaitingRoomAPI:
    """ASGI app for `POST /sessions`, `GET /sessions/{id}`, `POST /sessions/{id}:leave`, the
    public event and the OpenAPI document: the operations of `api_routes.TABLE`.

    Mounted under `settings.api.prefix`; it sees the full path and strips the prefix itself.
    """

    def __init__(
        self,
        store: Store,
        rooms: Rooms,
        settings: Settings,
        metrics: Metrics | None = None,
        events: Events | None = None,
    ) -> None:
        self.store = store
        self.metrics = metrics or Metrics()
        self.rooms = rooms
        self.prefix = settings.api.prefix
        self._max_body = settings.api.max_body_bytes
        self._addresses = ClientAddresses(settings.proxy.trusted_proxies)
        # Behind no trusted proxy a client's key depends on its peer address alone.
        self._keys: dict[str, str] | None = None if settings.proxy.trusted_proxies else {}
        self._events = events or Events(store, rooms)
        self._invitations = Invitations(settings, rooms.clock)
        self._router = Router(
            TABLE,
            {"joinSession": self._join, "pollSession": self._poll, "leaveSession": self._leave,
             "getEvent": self._event, "getOpenAPI": self._openapi},
        )  # fmt: skip
        self._spec: bytes | None = None

    def handles(self, path: str) -> bool:
        """True when `path` belongs to the API."""
        return path == self.prefix or path.startswith(self.prefix + "/")

    def session_url(self, session_id: str) -> str:
        """The poll URL of a session."""
        return session_url(self.prefix, session_id)

    def body(self, ticket: Ticket) -> dict[str, object]:
        """The status object of a ticket."""
        return self.rooms.status_body(ticket)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = self._router.match(scope["path"][len(self.prefix) :])
        try:
            if found is None:
                return await send_error(send, 404, "not_found", "no such endpoint")
            route, param = found
            handler = route.handlers.get(scope["method"])
            if handler is None:
                return await _not_allowed(send, route.allow)
            await handler(scope, receive, send, param)
        except JoinRefused as refused:
            await _refuse(send, refused)
        except StoreFull as exc:
            # Redis is at maxmemory: nobody new fits, but what is there keeps working.
            self.metrics.store_errors.labels("api").inc()
            log.warning("store full, join turned away: %s", exc)
            await _refuse(send, JoinRefused(Refusal.QUEUE_FULL, QUEUE_FULL_RETRY_S))
        except StoreError as exc:
            self.metrics.store_errors.labels("api").inc()
            log.warning("store unavailable: %s", exc)
            await send_error(send, 503, "store_unavailable", "try again shortly", [RETRY_AFTER])

    async def _join(self, scope: Scope, receive: Receive, send: Send, _: str) -> None:
        data = await read_object(scope, receive, send, self._max_body)
        if data is None:
            return  # answered already (400/413), or the client has gone
        event_id, user_id, problem = _parse_join(data)
        token = data.get("enqueueToken")
        if problem or not isinstance(token, str | None):
            return await send_error(send, 400, "bad_request", problem or "enqueueToken: a string")
        room = self.rooms.resolve(event_id)
        if room is None:
            return await send_error(send, 404, "unknown_event", "no waiting room for this event")
        claim = self._invitations.check(room, token)
        if isinstance(claim, TokenProblem):
            return await send_error(send, 403, claim.value, _UNINVITED[claim])
        session_id = new_session_id(room)
        entry = Entry(self._client_key(scope), rank=self.rooms.rank(room, session_id))
        if claim is not None:  # the token's user, whatever label the body gave
            entry = replace(entry, user=claim.user_id, priority=claim.priority)
            user_id = claim.user_id
        policy = self.rooms.policy(room)
        ticket = await self.store.join(room, session_id, policy, user_id=user_id, entry=entry)
        self.metrics.joined(room, ticket.status is Status.ACTIVE)
        # A user who holds a place already gets that session back (one place per user).
        location = self.session_url(ticket.session_id).encode()
        await send_json(send, 202, self.body(ticket), [(b"location", location)])

    async def _event(self, scope: Scope, receive: Receive, send: Send, room: str) -> None:
        """A room's on-sale event, as anyone may audit it (docs/onsale.md)."""
        view = await self._events.public(room) if ROOM_ID.fullmatch(room) else None
        if view is None:
            return await send_error(send, 404, "not_found", "no event in this room")
        await send_json(send, 200, view)

    async def _poll(self, scope: Scope, receive: Receive, send: Send, session_id: str) -> None:
        room = room_of(session_id)
        ticket = None
        if room is not None:
            ticket = await self.store.poll(session_id, self.rooms.policy(room))
        if ticket is None:
            return await send_error(send, 404, "not_found", "unknown session")
        self.metrics.polled(ticket)
        await send_json(send, 200, self.body(ticket))

    async def _leave(self, scope: Scope, receive: Receive, send: Send, session_id: str) -> None:
        room = room_of(session_id)
        if room is None or not await self.store.leave(session_id, self.rooms.policy(room)):
            return await send_error(send, 404, "not_found", "unknown session")
        self.metrics.leaves.labels(room, "api").inc()
        self.metrics.session_ended(room, EndReason.LEFT)
        await send(dict(_NO_CONTENT))
        await send({"type": "http.response.body", "body": b""})

    async def _openapi(self, scope: Scope, receive: Receive, send: Send, _: str) -> None:
        if self._spec is None:
            self._spec = encoded(TABLE, self.prefix)
        await send_bytes(send, 200, self._spec, b"application/json")

    def _client_key(self, scope: Scope) -> str:
        """The key join limits count the client by; remembered per peer address when no proxy
        is trusted: parsing an address (`ipaddress`) costs more than the rest of a join's
        bookkeeping."""
        keys, client = self._keys, scope.get("client")
        if keys is None or not isinstance(client, tuple | list) or not client:
            return self._addresses.key(scope)
        peer = client[0]
        if not isinstance(peer, str):
            return self._addresses.key(scope)
        found = keys.get(peer)
        if found is None:
            if len(keys) >= _CLIENT_KEYS:
                keys.clear()
            found = keys[peer] = self._addresses.key(scope)
        return found


def _parse_join(data: dict[str, Any]) -> tuple[str | None, str, str | None]:
    """(eventId, userId, problem) from a join body (already a JSON object, see json_body)."""
    event_id, user_id = data.get("eventId"), data.get("userId")
    if event_id is not None and not isinstance(event_id, str):
        return None, "", "eventId must be a string"
    if user_id is not None and not isinstance(user_id, str):
        return None, "", "userId must be a string"
    if event_id is not None and len(event_id) > MAX_EVENT_ID:
        return None, "", f"eventId is too long ({MAX_EVENT_ID} characters at most)"
    if user_id is not None and len(user_id) > MAX_USER_ID:
        return None, "", f"userId is too long ({MAX_USER_ID} characters at most)"
    return event_id, user_id or "", None


async def _refuse(send: Send, refused: JoinRefused) -> None:
    retry = [(b"retry-after", str(refused.retry_after_s).encode())] if refused.retry_after_s else []
    why = refused.reason
    await send_error(send, _REFUSED_STATUS[why], why.value, _REFUSED[why], retry)


async def _not_allowed(send: Send, allow: bytes) -> None:
    """405 with the methods the path takes (the route table's)."""
    await send_error(send, 405, "method_not_allowed", "method not allowed", [(b"allow", allow)])
