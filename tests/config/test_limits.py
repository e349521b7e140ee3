"""The listener's and the proxy's size, count and time limits: defaults, bounds, sources."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gatekeeper.config import Settings, load_config
from gatekeeper.config.settings import ProxySettings, ServerSettings
from tests.config.support import error_of, load

COUNTS = [  # key, lowest, highest
    ("server.max-head-bytes", 1024, 1_048_576),
    ("server.max-headers", 8, 1000),
    ("server.max-connections", 0, 1_000_000),
    ("proxy.max-response-head-bytes", 1024, 16_777_216),
]
TIMES = ["server.head-timeout", "proxy.pool-timeout"]


def field(settings: Settings, key: str) -> Any:
    group, name = key.split(".")
    return getattr(getattr(settings, group), name.replace("-", "_"))


def test_defaults() -> None:
    s = load_config(environ={})
    assert (s.server.max_head_bytes, s.server.max_headers) == (16384, 100)
    assert (s.server.head_timeout, s.server.max_connections) == (10.0, 0)
    assert (s.proxy.max_response_head_bytes, s.proxy.pool_timeout) == (65536, 5.0)


def test_direct_construction_keeps_the_defaults() -> None:
    proxy = ProxySettings(connect_timeout=1.0)
    assert (proxy.max_response_head_bytes, proxy.pool_timeout) == (65536, 5.0)
    assert ServerSettings().max_head_bytes == 16384


@pytest.mark.parametrize(("key", "lo", "hi"), COUNTS)
def test_counts_take_their_bounds(key: str, lo: int, hi: int) -> None:
    for value in (lo, hi):
        s = load_config(environ={}, overrides={f"waitingroom.{key}": value})
        assert field(s, key) == value and isinstance(field(s, key), int)


@pytest.mark.parametrize(("key", "lo", "hi"), COUNTS)
def test_counts_refuse_past_their_bounds(key: str, lo: int, hi: int) -> None:
    for value in (lo - 1, hi + 1, 2.5, "many"):
        message = error_of(overrides={f"waitingroom.{key}": value})
        assert message == f"waitingroom.{key}: must be an integer in {lo}..{hi}, got {value!r}"


@pytest.mark.parametrize("key", TIMES)
@pytest.mark.parametrize(("raw", "seconds"), [(3, 3.0), ("250ms", 0.25), ("1m", 60.0)])
def test_times_take_durations(key: str, raw: object, seconds: float) -> None:
    assert field(load_config(environ={}, overrides={f"waitingroom.{key}": raw}), key) == seconds


@pytest.mark.parametrize("key", TIMES)
@pytest.mark.parametrize("raw", [0, -1, "0s", float("inf"), "soon"])
def test_times_must_be_positive(key: str, raw: object) -> None:
    message = error_of(overrides={f"waitingroom.{key}": raw})
    assert message.startswith(f"waitingroom.{key}: must be a duration > 0 s")


PROXY_HEAD = "WAITINGROOM_PROXY_MAX_RESPONSE_HEAD_BYTES"


@pytest.mark.parametrize(
    ("name", "value", "key", "expected"),
    [
        ("WAITINGROOM_SERVER_MAX_HEAD_BYTES", "32768", "server.max-head-bytes", 32768),
        ("WAITINGROOM_SERVER_MAX_HEADERS", " 50 ", "server.max-headers", 50),
        ("WAITINGROOM_SERVER_HEAD_TIMEOUT", "500ms", "server.head-timeout", 0.5),
        ("WAITINGROOM_SERVER_MAX_CONNECTIONS", "20000", "server.max-connections", 20000),
        (PROXY_HEAD, "2048", "proxy.max-response-head-bytes", 2048),
        ("WAITINGROOM_PROXY_POOL_TIMEOUT", "2", "proxy.pool-timeout", 2.0),
    ],
)
def test_env_overrides(name: str, value: str, key: str, expected: object) -> None:
    assert field(load_config(environ={name: value}), key) == expected


def test_bad_env_value_names_the_variable() -> None:
    message = error_of(environ={"WAITINGROOM_SERVER_MAX_HEADERS": "7"})
    assert message == (
        "waitingroom.server.max-headers (from WAITINGROOM_SERVER_MAX_HEADERS): "
        "must be an integer in 8..1000, got '7'"
    )


def test_from_the_file_under_the_environment(tmp_path: Path) -> None:
    text = """
waitingroom:
  server: {max-head-bytes: 8192, max-headers: 64, head-timeout: 5s, max-connections: 10}
  proxy: {max-response-head-bytes: 4096, pool-timeout: 1.5}
"""
    s = load(tmp_path, text, WAITINGROOM_SERVER_MAX_CONNECTIONS="11")
    assert (s.server.max_head_bytes, s.server.max_headers, s.server.head_timeout) == (8192, 64, 5.0)
    assert s.server.max_connections == 11
    assert (s.proxy.max_response_head_bytes, s.proxy.pool_timeout) == (4096, 1.5)
