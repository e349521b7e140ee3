"""A lean asyncio RESP2 client for the Redis store's hot calls: few connections, pipelined."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections import deque
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import parse_qsl, unquote, urlsplit

import hiredis

Arg = str | int | float | bytes


class RespError(Exception):
    """Base class of the errors this client raises."""


class RespConnectionError(RespError):
    """No connection, or the connection broke while the command was in flight."""


class RespTimeoutError(RespConnectionError):
    """Redis did not answer (or accept the connection) within the timeout."""


class ReplyError(RespError):
    """Redis answered with an error reply."""


class NoScriptError(ReplyError):
    """EVALSHA of a script Redis does not have cached."""


class ReadOnlyError(ReplyError):
    """A write reached a read-only replica (typically just after a failover)."""


class UnsupportedURL(ValueError):
    """A URL this client does not handle (the caller falls back to redis-py)."""


def pack(args: tuple[Arg, ...]) -> bytes:
    """One command in RESP (hiredis packs it in C)."""
    # The stub types the argument as a 1-tuple; any length is accepted.
    packed: bytes = hiredis.pack_command(args)  # type: ignore[arg-type]
    return packed


def _reply_error(err: ReplyError) -> ReplyError:
    message = str(err)
    if message.startswith("NOSCRIPT"):
        return NoScriptError(message)
    if message.startswith("READONLY"):
        return ReadOnlyError(message)
    return err


@dataclass(frozen=True)
class Endpoint:
    """Where and how to connect: from a `redis://`, `rediss://` or `unix://` URL."""

    host: str = "localhost"
    port: int = 6379
    path: str | None = None
    username: str | None = None
    password: str | None = None
    db: int = 0
    ssl: ssl.SSLContext | None = field(default=None, compare=False)

    def handshake(self) -> list[tuple[Arg, ...]]:
        """Commands every new connection sends before it carries calls."""
        commands: list[tuple[Arg, ...]] = []
        if self.password is not None:
            if self.username:
                commands.append(("AUTH", self.username, self.password))
            else:
                commands.append(("AUTH", self.password))
        if self.db:
            commands.append(("SELECT", self.db))
        return commands


_CERT_REQS = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}
_TRUE = ("1", "yes", "true", "y", "on")


def parse_url(url: str) -> Endpoint:
    """An `Endpoint` for a standalone Redis URL, as redis-py reads it.

    Raises `UnsupportedURL` for other schemes and for query options beyond `db` and the
    basic TLS ones, so that such URLs keep redis-py's full handling.
    """
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    known = {"db", "ssl_cert_reqs", "ssl_ca_certs", "ssl_check_hostname"}
    if parts.scheme not in ("redis", "rediss", "unix") or set(query) - known:
        raise UnsupportedURL(url)
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    db = int(query.get("db", 0))
    if parts.scheme == "unix":
        if not parts.path:
            raise UnsupportedURL(url)
        return Endpoint(path=unquote(parts.path), username=username, password=password, db=db)
    path_db = parts.path.strip("/")
    if path_db and "db" not in query:
        db = int(path_db)
    context = None
    if parts.scheme == "rediss":
        context = ssl.create_default_context(cafile=query.get("ssl_ca_certs"))
        reqs = _CERT_REQS.get(query.get("ssl_cert_reqs", "required").lower())
        if reqs is None:
            raise UnsupportedURL(url)
        context.check_hostname = (
            reqs != ssl.CERT_NONE and query.get("ssl_check_hostname", "true").lower() in _TRUE
        )
        context.verify_mode = reqs
    return Endpoint(
        host=unquote(parts.hostname or "localhost"),
        port=parts.port or 6379,
        username=username,
        password=password,
        db=db,
        ssl=context,
    )


class _Connection(asyncio.Protocol):
    """One socket: commands are buffered and written once per loop iteration; replies are
    matched to their futures in order.

    A future stays queued until its own reply arrives, even when its caller gave up: that is
    what keeps every later reply with its caller. A timeout closes the connection and fails
    everything still queued on it, so no reply is ever read after one went missing.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout_s: float) -> None:
        self._loop = loop
        self._timeout_s = timeout_s
        self._reader = hiredis.Reader(encoding="utf-8", replyError=ReplyError)
        self._waiting: deque[asyncio.Future[Any]] = deque()
        self._deadlines: deque[float] = deque()
        self._out: list[bytes] = []
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not derive from asyncio.Transport, but have its methods.
        self._transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send(self, packed: bytes) -> asyncio.Future[Any]:
        """Queue one packed command; its reply (or error) arrives on the returned future."""
        if self.closed:
            raise RespConnectionError("connection closed")
        loop = self._loop
        fut = loop.create_future()
        deadline = loop.time() + self._timeout_s
        self._waiting.append(fut)
        self._deadlines.append(deadline)
        out = self._out
        out.append(packed)
        if len(out) == 1:
            loop.call_soon(self._flush)
        if self._timer is None:
            self._timer = loop.call_at(deadline, self._check_deadline)
        return fut

    def _flush(self) -> None:
        out = self._out
        if self.closed or not out or self._transport is None:
            return
        self._transport.write(out[0] if len(out) == 1 else b"".join(out))
        out.clear()

    def _check_deadline(self) -> None:
        # One timer per connection, re-armed for the oldest command still waiting: cheaper
        # than a timeout per call.
        self._timer = None
        if self.closed or not self._deadlines:
            return
        oldest = self._deadlines[0]
        # The loop may run a timer up to its clock resolution early: a millisecond of slack
        # keeps that from re-arming the timer in a busy loop.
        if oldest <= self._loop.time() + 0.001:
            self.fail(RespTimeoutError(f"no reply from Redis within {self._timeout_s:g} s"))
        else:
            self._timer = self._loop.call_at(oldest, self._check_deadline)

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        reader = self._reader
        reader.feed(data)
        waiting = self._waiting
        deadlines = self._deadlines
        while True:
            try:
                reply = reader.gets()
            except Exception as exc:  # a protocol or decoding error: the stream is unusable
                self.fail(RespConnectionError(f"unreadable reply: {exc}"))
                return
            if reply is False:
                return
            if not waiting:
                self.fail(RespConnectionError("reply without a command"))
                return
            fut = waiting.popleft()
            deadlines.popleft()
            if fut.done():  # its caller was cancelled; the reply is consumed all the same
                continue
            if isinstance(reply, ReplyError):
                fut.set_exception(_reply_error(reply))
            else:
                fut.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(RespConnectionError(f"connection lost: {exc}" if exc else "connection closed"))

    def fail(self, exc: RespError) -> None:
        """Close the connection and fail every command still waiting on it."""
        if self.closed:
            return
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._transport is not None:
            self._transport.abort()
        self._out.clear()
        waiting = self._waiting
        self._deadlines.clear()
        while waiting:
            fut = waiting.popleft()
            if not fut.done():
                fut.set_exception(exc)
                # Nobody may await it (its caller was cancelled): keep asyncio quiet.
                fut.exception()


class RespClient:
    """A few pipelined connections to one standalone Redis, opened lazily.

    Calls pick connections round-robin; a broken connection is replaced on the next call that
    picks it. Bulk strings are decoded as UTF-8 (like redis-py's `decode_responses=True`).
    """

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        connections: int = 1,
        connect_timeout_s: float = 0.5,
        socket_timeout_s: float = 0.5,
    ) -> None:
        self.endpoint = endpoint
        self._connect_timeout_s = connect_timeout_s
        self._socket_timeout_s = socket_timeout_s
        self._conns: list[_Connection | None] = [None] * connections
        self._opening: list[asyncio.Task[_Connection] | None] = [None] * connections
        self._next = 0

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> RespClient:
        """A client for `url`; raises `UnsupportedURL` when redis-py should handle it."""
        return cls(parse_url(url), **kwargs)

    def _send(self, packed: bytes) -> Awaitable[Any]:
        i = self._next
        self._next = (i + 1) % len(self._conns)
        conn = self._conns[i]
        if conn is not None and not conn.closed:
            return conn.send(packed)
        return self._send_when_open(i, packed)

    async def _send_when_open(self, i: int, packed: bytes) -> Any:
        opening = self._opening[i]
        if opening is None:
            opening = self._opening[i] = asyncio.ensure_future(self._open(i))
        # Shielded: one caller's cancellation must not abort a connect others wait for.
        conn = await asyncio.shield(opening)
        return await conn.send(packed)

    async def _open(self, i: int) -> _Connection:
        loop = asyncio.get_running_loop()
        ep = self.endpoint
        conn: _Connection | None = None
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                if ep.path is not None:
                    _, conn = await loop.create_unix_connection(
                        lambda: _Connection(loop, self._socket_timeout_s), ep.path
                    )
                else:
                    _, conn = await loop.create_connection(
                        lambda: _Connection(loop, self._socket_timeout_s),
                        ep.host,
                        ep.port,
                        ssl=ep.ssl,
                    )
                # Calls wait until Redis has answered on the new connection: a stalled Redis
                # accepts connections (in the kernel) but must not be handed calls that it
                # would run, unasked for, once it resumes (a join would leave an orphan
                # session holding a place).
                for command in ep.handshake() or [("PING",)]:
                    await conn.send(pack(command))
        except TimeoutError:
            if conn is not None:
                conn.fail(RespConnectionError("connect timed out"))
            raise RespTimeoutError(
                f"no connection to Redis within {self._connect_timeout_s:g} s"
            ) from None
        except OSError as exc:
            if conn is not None:
                conn.fail(RespConnectionError("connect failed"))
            raise RespConnectionError(f"cannot connect to Redis: {exc}") from exc
        except BaseException:
            if conn is not None:
                conn.fail(RespConnectionError("connect failed"))
            raise
        finally:
            self._opening[i] = None
        self._conns[i] = conn
        return conn

    async def execute(self, *args: Arg, retry: bool = False) -> Any:
        """Send one command and return its reply; `retry` repeats it once on a connection
        error or timeout (only for commands that are safe to run twice)."""
        packed = pack(args)
        if not retry:
            return await self._send(packed)
        try:
            return await self._send(packed)
        except RespConnectionError:
            return await self._send(packed)

    def script(
        self, sha: str, source: str, keys: Sequence[str], args: Sequence[str | int]
    ) -> Awaitable[Any]:
        """Run a Lua script by SHA; on NOSCRIPT (restart, failover, SCRIPT FLUSH) by EVAL,
        which runs and caches it in one step. Retried once on a connection error: the store's
        scripts are idempotent per session id."""
        return self.script_packed(pack(("EVALSHA", sha, len(keys), *keys, *args)), sha, source)

    async def script_packed(self, packed: bytes, sha: str, source: str) -> Any:
        """`script` with its EVALSHA command packed already (see `scripts.Template`)."""
        # The retry inlined: this is the hot path, and a coroutine frame less is cheaper.
        try:
            try:
                return await self._send(packed)
            except RespConnectionError:
                return await self._send(packed)
        except NoScriptError:
            # The same command with EVAL and the source in place of EVALSHA and the SHA.
            start = packed.index(b"\r\n") + 2
            head = b"$7\r\nEVALSHA\r\n$40\r\n%b\r\n" % sha.encode()
            if not packed.startswith(head, start):
                raise ValueError("not an EVALSHA command") from None
            code = source.encode()
            body = packed[start + len(head) :]
            packed = packed[:start] + b"$4\r\nEVAL\r\n$%d\r\n%b\r\n" % (len(code), code) + body
            try:
                return await self._send(packed)
            except RespConnectionError:
                return await self._send(packed)

    def disconnect(self) -> None:
        """Close every connection (failing what is in flight); the next calls reconnect."""
        for i, conn in enumerate(self._conns):
            if conn is not None:
                conn.fail(RespConnectionError("disconnected"))
                self._conns[i] = None

    async def aclose(self) -> None:
        """Close every connection, and wait for connects still under way to end."""
        opening = [t for t in self._opening if t is not None]
        if opening:
            await asyncio.gather(*opening, return_exceptions=True)
        self.disconnect()
