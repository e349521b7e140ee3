"""Redis key names: every key of a room carries the `{room}` hash tag (one cluster slot)."""

from __future__ import annotations

from gatekeeper.ids import room_of


class RedisKeys:
    """Key names of one room; the `{room}` hash tag keeps a room in one cluster slot."""

    __slots__ = (
        "room",
        "session_prefix",
        "joins",
        "cursor",
        "waiting",
        "waiting_seq",
        "active",
        "stats",
        "control",
        "prequeue",
        "prequeue_rank",
        "users",
        "_client",
    )

    def __init__(self, prefix: str, stream: str, room: str) -> None:
        base = f"{prefix}:{{{room}}}:"
        self.room = room
        self.session_prefix = base + "session:"
        self.joins = base + stream
        self.cursor = base + "stream:last-id"
        self.waiting = base + "waiting"
        self.waiting_seq = base + "waiting-seq"
        self.active = base + "active"
        self.stats = base + "stats"
        self.control = base + "control"
        self._client = base + "client:"
        self.prequeue = base + "prequeue"
        self.prequeue_rank = base + "prequeue-rank"
        self.users = base + "users"

    def session(self, session_id: str) -> str:
        """The session hash of an id of this room."""
        return self.session_prefix + session_id

    def client(self, key: str) -> str:
        """The join bucket of a client (`Entry.client`) in this room."""
        return self._client + key

    def member(self, session_id: str) -> str:
        """How a waiter is named in the room's waiting set, waiting-seq hash and stream.

        The bare token of a `<token>.<room>` id (the room is in every key already: this saves
        memory per waiter). The store only queues ids of the room (`Store.join`); any other id
        is named whole behind a '.', which no token contains, so the scripts can always tell
        the two apart (`session_of` in lib.lua) and entries queued that way still decode.
        """
        if room_of(session_id) == self.room:
            return session_id.partition(".")[0]
        return "." + session_id

    def own_member(self, session_id: str) -> str:
        """`member` of an id already known to be of this room (`room_of` matched it): the
        token alone, without matching the id again."""
        return session_id.partition(".")[0]


def session_of(member: str, room: str) -> str:
    """The session id a waiter's member names (`RedisKeys.member`; `session_of` in lib.lua)."""
    return member[1:] if member.startswith(".") else f"{member}.{room}"


class GlobalKeys:
    """Key names shared by every room: the grant loop's work list, its control hash, audit."""

    __slots__ = ("rooms", "control", "audit")

    def __init__(self, prefix: str) -> None:
        self.rooms = f"{prefix}:rooms"
        self.control = f"{prefix}:control"
        self.audit = f"{prefix}:audit"
