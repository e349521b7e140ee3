"""The lean RESP2 client against real redis-servers: pipelining, errors, timeouts, reconnects."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import signal
import ssl
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from gatekeeper.config.settings import RedisSettings
from gatekeeper.store.redis import RedisStore
from gatekeeper.store.redis.resp import (
    NoScriptError,
    ReadOnlyError,
    ReplyError,
    RespClient,
    RespConnectionError,
    RespTimeoutError,
    UnsupportedURL,
    parse_url,
)
from tests.conftest import unique_prefix
from tests.redis_server import RedisServer, free_port

pytestmark = pytest.mark.redis

SCRIPT = "return {KEYS[1], tonumber(ARGV[1]) + 1, {ARGV[2]}, false, 'tail'}"
SHA = hashlib.sha1(SCRIPT.encode()).hexdigest()


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[RespClient]:
    c = RespClient.from_url(redis_url, connect_timeout_s=2, socket_timeout_s=2)
    try:
        yield c
    finally:
        await c.aclose()


@pytest.fixture
async def admin(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    a = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        yield a
    finally:
        await a.aclose()


async def test_concurrent_calls_get_their_own_replies_in_order(client: RespClient) -> None:
    key = unique_prefix()
    echoes = [client.execute("ECHO", f"v{i}") for i in range(500)]
    incrs = [client.execute("INCR", key) for _ in range(200)]
    replies = await asyncio.gather(*echoes, *incrs)
    assert replies[:500] == [f"v{i}" for i in range(500)]
    # Commands of one connection run in the order they were issued.
    assert replies[500:] == list(range(1, 201))


async def test_several_connections_take_calls_in_turn(redis_url: str) -> None:
    client = RespClient.from_url(redis_url, connections=3)
    try:
        replies = await asyncio.gather(*(client.execute("ECHO", f"v{i}") for i in range(300)))
        assert replies == [f"v{i}" for i in range(300)]
        ids = await asyncio.gather(*(client.execute("CLIENT", "ID") for _ in range(3)))
        assert len(set(ids)) == 3
    finally:
        await client.aclose()


async def test_calls_of_one_loop_iteration_share_one_write(client: RespClient) -> None:
    await client.execute("PING")
    conn = client._conns[0]
    assert conn is not None
    writes: list[bytes] = []
    transport = conn._transport
    assert transport is not None
    real_write = transport.write

    def counting(data: bytes) -> None:
        writes.append(data)
        real_write(data)

    conn._transport = type("T", (), {"write": staticmethod(counting), "abort": transport.abort})()
    try:
        assert await asyncio.gather(*(client.execute("ECHO", str(i)) for i in range(50))) == [
            str(i) for i in range(50)
        ]
    finally:
        conn._transport = transport
    assert len(writes) == 1 and writes[0].count(b"ECHO") == 50


async def test_reply_types(client: RespClient) -> None:
    key = unique_prefix()
    assert await client.execute("PING") == "PONG"
    assert await client.execute("SET", key, "é") == "OK"
    assert await client.execute("GET", key) == "é"
    assert await client.execute("GET", key + ":missing") is None
    assert await client.execute("RPUSH", key + ":l", "a", "b", 3) == 3
    assert await client.execute("LRANGE", key + ":l", 0, -1) == ["a", "b", "3"]
    assert await client.execute("LRANGE", key + ":none", 0, -1) == []
    reply = await client.execute("EVAL", SCRIPT, 1, key, 41, "x")
    assert reply == [key, 42, ["x"], None, "tail"]


async def test_large_bulk_replies_split_across_reads(client: RespClient) -> None:
    key = unique_prefix()
    big = "x" * 3_000_000 + "é" * 500_000
    other = "y" * 1_000_001
    await client.execute("MSET", key, big, key + ":2", other)
    replies = await asyncio.gather(
        client.execute("GET", key),
        client.execute("ECHO", "between"),
        client.execute("GET", key + ":2"),
        client.execute("MGET", key, key + ":2"),
    )
    assert replies == [big, "between", other, [big, other]]


async def test_error_replies_raise_and_the_connection_stays_usable(client: RespClient) -> None:
    key = unique_prefix()
    await client.execute("SET", key, "not a number")
    results = await asyncio.gather(
        client.execute("ECHO", "before"),
        client.execute("INCR", key),
        client.execute("NOSUCHCOMMAND"),
        client.execute("ECHO", "after"),
        return_exceptions=True,
    )
    assert results[0] == "before" and results[3] == "after"
    assert isinstance(results[1], ReplyError) and "not an integer" in str(results[1])
    assert isinstance(results[2], ReplyError) and "unknown command" in str(results[2])
    with pytest.raises(ReplyError, match="boom"):
        await client.execute("EVAL", "return redis.error_reply('boom')", 0)


async def test_noscript_falls_back_to_eval_after_script_flush(
    client: RespClient, admin: aioredis.Redis
) -> None:
    key = unique_prefix()
    await admin.script_flush()
    with pytest.raises(NoScriptError):
        await client.execute("EVALSHA", SHA, 1, key, 1, "a")
    expected = [key, 2, ["a"], None, "tail"]
    assert await client.script(SHA, SCRIPT, [key], [1, "a"]) == expected
    assert await client.execute("EVALSHA", SHA, 1, key, 1, "a") == expected  # now cached
    await admin.script_flush()
    replies = await asyncio.gather(
        *(client.script(SHA, SCRIPT, [key], [i, "a"]) for i in range(20))
    )
    assert [r[1] for r in replies] == list(range(1, 21))


async def test_a_cancelled_call_does_not_shift_later_replies(client: RespClient) -> None:
    slow = asyncio.ensure_future(client.execute("EVAL", "local t = 0 return 'slow'", 0))
    fast = asyncio.ensure_future(client.execute("ECHO", "mine"))
    slow.cancel()
    assert await fast == "mine"
    assert await client.execute("ECHO", "next") == "next"


async def test_timeout_fails_in_flight_calls_and_never_crosses_replies(
    redis_server: RedisServer,
) -> None:
    client = RespClient.from_url(redis_server.url, connect_timeout_s=0.5, socket_timeout_s=0.2)
    try:
        assert await client.execute("ECHO", "warm") == "warm"
        loop = asyncio.get_running_loop()
        started = loop.time()
        # DEBUG SLEEP holds the server past the timeout; the ECHO behind it times out too.
        results = await asyncio.gather(
            client.execute("DEBUG", "SLEEP", "0.5"),
            client.execute("ECHO", "stale"),
            return_exceptions=True,
        )
        assert all(isinstance(r, RespTimeoutError) for r in results), results
        assert loop.time() - started < 0.45
        await asyncio.sleep(0.4)  # the server wakes and answers on the closed connection
        assert await asyncio.gather(*(client.execute("ECHO", f"e{i}") for i in range(10))) == [
            f"e{i}" for i in range(10)
        ]
    finally:
        await client.aclose()


async def test_stalled_server_fails_calls_within_the_timeout_then_recovers(
    redis_server: RedisServer,
) -> None:
    assert redis_server.proc is not None
    client = RespClient.from_url(redis_server.url, connect_timeout_s=0.2, socket_timeout_s=0.2)
    loop = asyncio.get_running_loop()
    try:
        await client.execute("PING")
        os.kill(redis_server.proc.pid, signal.SIGSTOP)
        try:
            started = loop.time()
            with pytest.raises(RespTimeoutError):
                await client.script(SHA, SCRIPT, ["k"], [1, "a"])  # one retry: two timeouts
            assert loop.time() - started < 0.7
            # New connections wait for Redis's answer before carrying calls: these never
            # reach the stalled server, so it cannot run them later, unasked for.
            for _ in range(3):
                with pytest.raises(RespTimeoutError):
                    await client.execute("INCR", "stalled-counter", retry=True)
        finally:
            os.kill(redis_server.proc.pid, signal.SIGCONT)
        assert await client.execute("GET", "stalled-counter") is None
        assert await client.script(SHA, SCRIPT, ["k"], [1, "a"]) == ["k", 2, ["a"], None, "tail"]
    finally:
        await client.aclose()


async def test_reconnects_after_a_restart_and_fails_fast_while_down(
    redis_server: RedisServer,
) -> None:
    client = RespClient.from_url(redis_server.url, connect_timeout_s=0.2, socket_timeout_s=0.2)
    loop = asyncio.get_running_loop()
    try:
        assert await client.execute("ECHO", "up") == "up"
        redis_server.kill()
        started = loop.time()
        for _ in range(3):
            with pytest.raises(RespConnectionError):
                await client.execute("PING", retry=True)
        assert loop.time() - started < 0.5
        redis_server.start()
        # Redis restarted with an empty script cache: EVALSHA falls back to EVAL.
        assert await client.script(SHA, SCRIPT, ["k"], [5, "b"]) == ["k", 6, ["b"], None, "tail"]
    finally:
        await client.aclose()


async def test_unreachable_redis_fails_fast() -> None:
    client = RespClient.from_url(
        f"redis://127.0.0.1:{free_port()}/0", connect_timeout_s=0.2, socket_timeout_s=0.2
    )
    with pytest.raises(RespConnectionError, match="cannot connect"):
        await client.execute("PING", retry=True)
    await client.aclose()


async def test_auth_and_db_come_from_the_url(redis_server: RedisServer) -> None:
    admin = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    await admin.execute_command("ACL", "SETUSER", "gk", "on", ">s3cret:/@", "~*", "+@all")
    base = f"127.0.0.1:{redis_server.port}"
    client = RespClient.from_url(f"redis://gk:s3cret%3A%2F%40@{base}/3")
    try:
        assert await client.execute("ACL", "WHOAMI") == "gk"
        await client.execute("SET", "where", "db3")
        db3 = aioredis.Redis.from_url(f"redis://{base}/3", decode_responses=True)
        assert await db3.get("where") == "db3"
        assert await admin.get("where") is None
        await db3.aclose()
    finally:
        await client.aclose()
    wrong = RespClient.from_url(f"redis://gk:nope@{base}/0")
    with pytest.raises(ReplyError, match="WRONGPASS"):
        await wrong.execute("PING")
    await wrong.aclose()
    # A password alone (AUTH <password>) authenticates the default user.
    await admin.config_set("requirepass", "pw")
    await admin.execute_command("AUTH", "pw")
    only_password = RespClient.from_url(f"redis://:pw@{base}?db=2")
    try:
        assert await only_password.execute("ACL", "WHOAMI") == "default"
        assert " db=2 " in await only_password.execute("CLIENT", "INFO")
    finally:
        await only_password.aclose()
        await admin.aclose()


async def test_unix_socket() -> None:
    # Not tmp_path: a socket path must stay under ~100 characters.
    sock = Path(tempfile.mkdtemp(prefix="gk-sock-")) / "redis.sock"
    server = RedisServer(None, "--unixsocket", str(sock), "--unixsocketperm", "700").start()
    client = RespClient.from_url(f"unix://{sock}?db=1")
    try:
        assert await client.execute("ECHO", "over unix") == "over unix"
        assert " db=1 " in await client.execute("CLIENT", "INFO")
    finally:
        await client.aclose()
        server.stop()
        shutil.rmtree(sock.parent, ignore_errors=True)


async def test_readonly_reply_is_its_own_error(redis_server: RedisServer) -> None:
    admin = aioredis.Redis.from_url(redis_server.url)
    client = RespClient.from_url(redis_server.url)
    try:
        await admin.execute_command("REPLICAOF", "127.0.0.1", str(free_port()))
        with pytest.raises(ReadOnlyError):
            await client.execute("SET", "k", "v")
    finally:
        await admin.execute_command("REPLICAOF", "NO", "ONE")
        await admin.aclose()
        await client.aclose()


async def test_disconnect_fails_in_flight_calls_and_next_call_reconnects(
    client: RespClient,
) -> None:
    await client.execute("PING")
    first = client._conns[0]
    pending = asyncio.ensure_future(client.execute("ECHO", "lost"))
    await asyncio.sleep(0)
    client.disconnect()
    with pytest.raises(RespConnectionError):
        await pending
    assert await client.execute("ECHO", "again") == "again"
    assert client._conns[0] is not first


def test_parse_url() -> None:
    ep = parse_url("redis://u%40x:p%3Aw@example.com:6380/4")
    assert (ep.host, ep.port, ep.username, ep.password, ep.db, ep.ssl) == (
        "example.com", 6380, "u@x", "p:w", 4, None
    )  # fmt: skip
    assert ep.handshake() == [("AUTH", "u@x", "p:w"), ("SELECT", 4)]
    assert parse_url("redis://localhost").handshake() == []
    assert parse_url("redis://:pw@h?db=2").handshake() == [("AUTH", "pw"), ("SELECT", 2)]
    unix = parse_url("unix:///run/redis.sock?db=5")
    assert (unix.path, unix.db) == ("/run/redis.sock", 5)
    tls = parse_url("rediss://h:6390/0")
    assert tls.ssl is not None and tls.ssl.verify_mode == ssl.CERT_REQUIRED
    assert tls.ssl.check_hostname
    loose = parse_url("rediss://h/0?ssl_cert_reqs=none")
    assert loose.ssl is not None and loose.ssl.verify_mode == ssl.CERT_NONE
    for url in ("redis://h/0?health_check_interval=5", "redis+cluster://h:1", "http://h"):
        with pytest.raises(UnsupportedURL):
            parse_url(url)


async def test_store_uses_the_lean_client_only_for_urls_it_supports(redis_url: str) -> None:
    lean = RedisStore.open(RedisSettings(url=redis_url))
    fallback = RedisStore.open(RedisSettings(url=redis_url + "?health_check_interval=30"))
    try:
        assert lean._lean is not None and fallback._lean is None
        await lean.ping()
        await fallback.ping()
    finally:
        await lean.aclose()
        await fallback.aclose()
