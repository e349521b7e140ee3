"""Prepared script calls (`scripts.Call`, `scripts.Template`): the same command, packed once."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from gatekeeper.config.settings import RedisSettings
from gatekeeper.ids import new_session_id
from gatekeeper.store.base import RoomPolicy, Status
from gatekeeper.store.redis import RedisStore
from gatekeeper.store.redis.resp import RespClient, pack
from gatekeeper.store.redis.scripts import Call, Script, ScriptName, Template
from tests.conftest import unique_prefix

ECHO = "return {KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3]}"
ONE = RoomPolicy(1, 5, 30_000, 10_000, 60_000, 120_000)
TWO = RoomPolicy(2, 5, 30_000, 10_000, 60_000, 120_000)


@pytest.mark.parametrize(
    "args",
    [
        ("EVALSHA", "a" * 40, 2, None, "k2", None, 7, None),
        (None, "x", 0, -3, 1.5, b"raw\r\nbytes", "ünïcode ✓", None),
        ("GET", None),
        (None,),
    ],
)
def test_a_filled_template_is_the_command_hiredis_packs(args: tuple[object, ...]) -> None:
    values = ["", "sid-é", "v" * 300, "\r\n"][: args.count(None)]
    filled = iter(values)
    whole = tuple(next(filled) if a is None else a for a in args)
    template = Template(args)  # type: ignore[arg-type]
    assert template.fill(values) == pack(whole)  # type: ignore[arg-type]


def test_a_template_refuses_a_wrong_number_of_values() -> None:
    template = Template(("GET", None))
    with pytest.raises(ValueError):
        template.fill([])
    with pytest.raises(ValueError):
        template.fill(["a", "b"])


class _Echo(Script):
    """A test script run like the store's (SHA, EVAL fallback), with a source of its own."""

    def __init__(self, client: aioredis.Redis, lean: RespClient | None) -> None:
        super().__init__(client, ScriptName.COUNTS, lean=lean)
        self._source = ECHO
        self._sha = hashlib.sha1(ECHO.encode()).hexdigest()


@pytest.fixture
async def clients(redis_url: str) -> AsyncIterator[tuple[aioredis.Redis, RespClient]]:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    lean = RespClient.from_url(redis_url, connect_timeout_s=2, socket_timeout_s=2)
    try:
        yield client, lean
    finally:
        await lean.aclose()
        await client.aclose()


@pytest.mark.redis
@pytest.mark.parametrize("use_lean", [True, False], ids=["lean", "redis-py"])
async def test_a_call_fills_its_slots_in_order_and_survives_a_script_flush(
    clients: tuple[aioredis.Redis, RespClient], use_lean: bool
) -> None:
    client, lean = clients
    script = _Echo(client, lean if use_lean else None)
    call = script.call([None, "fixed-key"], ["fixed", None, 42])
    assert isinstance(call, Call)
    expected = ["k1", "fixed-key", "fixed", "two", "42"]
    assert await call("k1", "two") == expected
    await client.script_flush()  # NOSCRIPT: the same command by EVAL
    assert await call("k1", "two") == expected
    assert await call("k1", "two") == expected  # and cached again
    with pytest.raises(ValueError):
        await call("only one")


@pytest.mark.redis
async def test_concurrent_prepared_calls_get_their_own_replies(
    clients: tuple[aioredis.Redis, RespClient],
) -> None:
    client, lean = clients
    call = _Echo(client, lean).call([None, "k"], [None, "b", "c"])
    replies = [call(f"key{i}", f"a{i}") for i in range(300)]
    for i, reply in enumerate(replies):
        assert (await reply)[:4] == [f"key{i}", "k", f"a{i}", "b"]


@pytest.mark.redis
async def test_a_changed_policy_prepares_new_calls(redis_url: str) -> None:
    store = RedisStore.open(RedisSettings(url=redis_url, key_prefix=unique_prefix()))
    try:
        first = await store.join("R", new_session_id("R"), ONE)
        second = await store.join("R", new_session_id("R"), ONE)
        # An equal policy (another object) keeps the calls; a larger capacity is honoured.
        equal = RoomPolicy(1, 5, 30_000, 10_000, 60_000, 120_000)
        third = await store.join("R", new_session_id("R"), equal)
        fourth = await store.join("R", new_session_id("R"), TWO)
        assert [t.status for t in (first, second, third)] == [Status.ACTIVE, *[Status.WAITING] * 2]
        # Two places now, one taken and people waiting: the newcomer queues behind them.
        assert fourth.status is Status.WAITING
        polled = await store.poll(second.session_id, TWO)
        assert polled is not None and polled.status is Status.WAITING
        await store.grant("R", TWO)
        polled = await store.poll(second.session_id, TWO)
        assert polled is not None and polled.status is Status.ACTIVE
    finally:
        await store.aclose()
