"""The Lua scripts (`store/lua/*.lua`): loading them and calling them by SHA."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Sequence
from enum import StrEnum
from importlib import resources
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoScriptError

from gatekeeper.store.redis.resp import Arg, RespClient, pack

Client = aioredis.Redis | RedisCluster
"""A redis-py client: one Redis or a Redis Cluster."""


class ScriptName(StrEnum):
    """The scripts in `store/lua/`, one per atomic step (file name without `.lua`)."""

    JOIN = "join"
    POLL = "poll"
    LEAVE = "leave"
    GRANT = "grant"
    COUNTS = "counts"
    SET_CONTROLS = "set_controls"
    FORGET = "forget"
    RELEASE = "release"
    LIST = "list"
    SEED = "seed"


LIBRARY = "lib"
"""The shared helpers prepended to every script."""


def lua_source(name: str) -> str:
    """The text of one `.lua` file of the store."""
    return (resources.files("gatekeeper.store") / "lua" / f"{name}.lua").read_text()


# At `maxmemory` (policy noeviction) Redis refuses a script before it runs unless its flags
# allow it. Every step but join frees memory or changes almost none (a renewed lease or
# heartbeat, a waiter moved to active, a control), so it runs at maxmemory: admitted visitors
# keep their pass, waiters their place, leaves and grants go on and operators keep control.
# Join adds a session: it is refused whole, before it writes anything (a script without flags
# would only be stopped at its first memory-adding command, and not at all once it wrote).
RUNS_AT_MAXMEMORY = frozenset(ScriptName) - {ScriptName.JOIN}

# Scripts that only read: `no-writes` (which implies allow-oom) has Redis refuse any write.
READ_ONLY = frozenset({ScriptName.COUNTS})


def flags(name: ScriptName) -> list[str]:
    """The Redis 7 script flags of a script (empty: refused at maxmemory)."""
    if name in READ_ONLY:
        return ["no-writes"]
    return ["allow-oom"] if name in RUNS_AT_MAXMEMORY else []


def shebang(name: ScriptName) -> str:
    """The first line of a script as Redis runs it. A shebang needs Redis 7 (older versions
    cannot compile it); with one and no flags, a script is refused at maxmemory before it runs."""
    declared = flags(name)
    return "#!lua flags=" + ",".join(declared) if declared else "#!lua"


def load_script(name: ScriptName) -> str:
    """The Lua of a script: the shared helpers, then the script itself."""
    return lua_source(LIBRARY) + "\n" + lua_source(name)


def redis_source(name: ScriptName) -> str:
    """A script as Redis runs it: its flags line (which must come first), then the Lua."""
    return shebang(name) + "\n" + load_script(name)


class Script:
    """A Lua script called by SHA; when Redis lost its script cache (restart, failover,
    SCRIPT FLUSH) the call falls back to EVAL, which runs and caches it in one atomic step.

    With `lean` (a standalone Redis) the call goes through the lean pipelined client, which
    costs far less CPU per call than redis-py's; otherwise through `client`.
    """

    def __init__(self, client: Client, name: ScriptName, *, lean: RespClient | None = None) -> None:
        self._client = client
        self._lean = lean
        # The SHA is of the whole source, flags line included, as Redis computes it.
        self._source = redis_source(name)
        self._sha = hashlib.sha1(self._source.encode()).hexdigest()

    def call(self, keys: Sequence[str | None], args: Sequence[str | int | None]) -> Call:
        """A call of this script with these keys and arguments but for the `None` slots,
        which each call fills (`Call.__call__`)."""
        return Call(self, keys, args)

    def __call__(self, keys: list[str], args: list[str | int]) -> Awaitable[Any]:
        # A plain function handing back the awaitable: one coroutine frame less per call.
        if self._lean is not None:
            return self._lean.script(self._sha, self._source, keys, args)
        return self._redis_py(keys, args)

    async def _redis_py(self, keys: list[str], args: list[str | int]) -> Any:
        try:
            return await self._client.evalsha(self._sha, len(keys), *keys, *args)
        except NoScriptError:
            return await self._client.eval(self._source, len(keys), *keys, *args)


class Template:
    """A command packed once but for a few slots (`None` arguments), which `fill` packs per
    call: on the hot path that costs half of packing the whole command each time."""

    __slots__ = ("_first", "_rest")

    def __init__(self, args: Sequence[Arg | None]) -> None:
        chunks: list[bytes] = []
        fixed = [b"*%d\r\n" % len(args)]
        for arg in args:
            if arg is None:
                chunks.append(b"".join(fixed))
                fixed = []
            else:  # packed by hiredis, so that every constant is encoded as it would be
                packed = pack((arg,))
                fixed.append(packed[packed.index(b"\r\n") + 2 :])
        chunks.append(b"".join(fixed))
        self._first = chunks[0]
        self._rest = tuple(chunks[1:])

    def fill(self, values: Sequence[str]) -> bytes:
        """The command with `values` in its slots, in order (ValueError for a wrong count)."""
        out = [self._first]
        for value, chunk in zip(values, self._rest, strict=True):
            data = value.encode()
            out.append(b"$%d\r\n%b\r\n%b" % (len(data), data, chunk))
        return b"".join(out)


class Call:
    """One script's keys and arguments, fixed but for a few slots (`None`) that each call
    fills, in order: keys first, then arguments. Built once per room and policy; on the lean
    client the command is packed once too (`Template`)."""

    __slots__ = ("_script", "_keys", "_args", "_slots", "_template")

    def __init__(
        self, script: Script, keys: Sequence[str | None], args: Sequence[str | int | None]
    ) -> None:
        self._script = script
        self._keys = tuple(keys)
        self._args = tuple(args)
        self._slots = sum(1 for x in (*keys, *args) if x is None)
        self._template = None
        if script._lean is not None:
            self._template = Template(("EVALSHA", script._sha, len(keys), *keys, *args))

    def __call__(self, *values: str) -> Awaitable[Any]:
        """Run the script with `values` in the slots (one EVALSHA, as `Script` runs it)."""
        script, template = self._script, self._template
        if template is not None and script._lean is not None:
            return script._lean.script_packed(template.fill(values), script._sha, script._source)
        if len(values) != self._slots:
            raise ValueError(f"{self._slots} values expected, got {len(values)}")
        filled = iter(values)
        keys = [next(filled) if k is None else k for k in self._keys]
        args = [next(filled) if a is None else a for a in self._args]
        return script(keys, args)
