"""What each configurable key accepts: durations, bounds, checks, routes and room overrides."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gatekeeper.config import Settings, load_config
from gatekeeper.config.schema import KEYS, Kind, Leaf, env_var
from gatekeeper.config.settings import BindPass
from tests.config.support import error_of, write


def test_schema_covers_every_settings_field() -> None:
    keys = {k.removeprefix("waitingroom.").replace("-", "_") for k in KEYS}

    def walk(obj: Any, prefix: str) -> None:
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if dataclasses.is_dataclass(value):
                walk(value, f"{prefix}{f.name}.")
            else:
                assert f"{prefix}{f.name}" in keys, f"{prefix}{f.name} has no config key"

    for f in dataclasses.fields(Settings):
        if f.repr:  # secrets (repr=False) have no config key by design
            walk(getattr(Settings(), f.name), f"{f.name}.")


def test_env_names_follow_the_rule_and_are_unique() -> None:
    assert env_var("waitingroom.processing.batch-size") == "WAITINGROOM_PROCESSING_BATCH_SIZE"
    assert env_var("waitingroom.gate.cookie.same-site") == "WAITINGROOM_GATE_COOKIE_SAME_SITE"
    names = [env_var(k) for k in KEYS]
    assert len(set(names)) == len(names)


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [(300, 300.0), (1.5, 1.5), ("250ms", 0.25), ("5s", 5.0), ("2m", 120.0), ("1h", 3600.0),
     ("90", 90.0), (" 1.5 h ", 5400.0)],
)  # fmt: skip
def test_second_durations_accept_units(raw: object, seconds: float) -> None:
    s = load_config(environ={}, overrides={"waitingroom.lifecycle.idle-timeout": raw})
    assert s.lifecycle.idle_timeout == seconds


@pytest.mark.parametrize(
    ("raw", "ms"), [(200, 200), ("200", 200), ("250ms", 250), ("1.5s", 1500), ("1m", 60000)]
)
def test_ms_durations_take_bare_numbers_as_ms(raw: object, ms: int) -> None:
    s = load_config(environ={}, overrides={"waitingroom.processing.rate-ms": raw})
    assert s.processing.rate_ms == ms and isinstance(s.processing.rate_ms, int)


@pytest.mark.parametrize("raw", ["0.5ms", "1d", "-5", True, 12.5, "5 minutes", None])
def test_bad_ms_durations(raw: object) -> None:
    message = error_of(overrides={"waitingroom.processing.rate-ms": raw})
    assert message.startswith("waitingroom.processing.rate-ms: must be a duration in 10..60000")


@given(st.integers(min_value=1, max_value=10**6), st.sampled_from(["ms", "s", "m", "h"]))
def test_duration_units_scale(n: int, unit: str) -> None:
    factor = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    s = load_config(environ={}, overrides={"waitingroom.lifecycle.retention": f"{n}{unit}"})
    assert s.lifecycle.retention == pytest.approx(n * factor)


def test_capacity_message_is_precise(tmp_path: Path) -> None:
    path = write(tmp_path, "waitingroom:\n  processing:\n    capacity: abc\n")
    assert error_of(path=path) == (
        "waitingroom.processing.capacity: must be an integer in 1..10000000, got 'abc'"
    )


INVALID: list[tuple[str, object]] = [
    ("waitingroom.redis.url", "mysql://db"),
    ("waitingroom.redis.url", "redis://host:99999"),
    ("waitingroom.redis.key-prefix", "has space"),
    ("waitingroom.redis.stream", "x" * 65),
    ("waitingroom.redis.pool-size", 0),
    ("waitingroom.redis.connect-timeout-ms", 60001),
    ("waitingroom.redis.socket-timeout-ms", "0ms"),
    ("waitingroom.processing.capacity", 10_000_001),
    ("waitingroom.processing.capacity", 1.0),
    ("waitingroom.processing.capacity", True),
    ("waitingroom.processing.batch-size", [1]),
    ("waitingroom.processing.new-visitors-per-minute", -1),
    ("waitingroom.processing.max-waiting", -1),
    ("waitingroom.gate.template-dir", "/no/such/directory"),
    ("waitingroom.gate.challenge.kind", "captcha"),
    ("waitingroom.gate.challenge.difficulty", 33),
    ("waitingroom.gate.challenge.verify-url", "ftp://verify.example"),
    ("waitingroom.gate.challenge.site-key", '"><script>'),
    ("waitingroom.gate.challenge.script-url", "javascript:alert(1)"),
    ("waitingroom.gate.challenge.widget-class", "a b"),
    ("waitingroom.gate.challenge.timeout", 0),
    ("waitingroom.processing.client-joins-per-minute", "9" * 5000),
    ("waitingroom.processing.client-join-burst", 0),
    ("waitingroom.processing.rate-ms", 9),
    ("waitingroom.lifecycle.waiting-timeout", 0),
    ("waitingroom.lifecycle.claim-window", float("inf")),
    ("waitingroom.lifecycle.idle-timeout", -1),
    ("waitingroom.lifecycle.retention", "forever"),
    ("waitingroom.lifecycle.max-session", -1),
    ("waitingroom.lifecycle.expected-stay", -1),
    ("waitingroom.server.workers", 0),
    ("waitingroom.proxy.websocket-max-message", 100),
    ("waitingroom.gate.return-paths", [" "]),
    ("waitingroom.gate.return-max-body-bytes", 100),
    ("waitingroom.gate.language", "english"),
    ("waitingroom.gate.force-language", "de_DE"),
    ("waitingroom.gate.require-enqueue-token", "maybe"),
    ("waitingroom.polling.min-ms", 99),
    ("waitingroom.polling.max-ms", 600_001),
    ("waitingroom.rooms.default-room", "no/slash"),
    ("waitingroom.rooms.allow-unlisted", "sometimes"),
    ("waitingroom.rooms.allow-unlisted", 1),
    ("waitingroom.rooms.overrides", ["vip"]),
    ("waitingroom.rooms.forget-after", 0),
    ("waitingroom.rooms.max-unlisted", -1),
    ("waitingroom.rooms.max-unlisted", 1_000_001),
    ("waitingroom.api.prefix", "api"),
    ("waitingroom.api.prefix", "/api/"),
    ("waitingroom.api.max-body-bytes", 63),
    ("waitingroom.server.host", ""),
    ("waitingroom.server.port", 65536),
    ("waitingroom.server.graceful-timeout", -1),
    ("waitingroom.server.keep-alive", 0),
    ("waitingroom.server.log-format", "xml"),
    ("waitingroom.server.max-head-bytes", 1023),
    ("waitingroom.server.max-headers", 1001),
    ("waitingroom.server.head-timeout", 0),
    ("waitingroom.server.max-connections", -1),
    ("waitingroom.gate.origin", "ftp://x"),
    ("waitingroom.gate.origin", "https://x.com/path"),
    ("waitingroom.gate.origin", "https://user:pw@x.com"),
    ("waitingroom.gate.origin", "https://"),
    ("waitingroom.gate.protect", [1]),
    ("waitingroom.gate.bypass", {"a": 1}),
    ("waitingroom.gate.bypass-ips", ["10.0.0.1/33"]),
    ("waitingroom.gate.bypass-user-agents", ["(unclosed"]),
    ("waitingroom.gate.routes", "/x"),
    ("waitingroom.gate.done-paths", 5),
    ("waitingroom.gate.static-prefix", "_gk"),
    ("waitingroom.gate.waiting-status", 201),
    ("waitingroom.gate.waiting-template", "/does/not/exist.html"),
    ("waitingroom.gate.failure-policy", "ajar"),
    ("waitingroom.gate.bind-pass", "cookie"),
    ("waitingroom.gate.cookie.name", "bad name"),
    ("waitingroom.gate.cookie.secure", "perhaps"),
    ("waitingroom.gate.cookie.same-site", "Lax!"),
    ("waitingroom.gate.cookie.domain", "bad domain"),
    ("waitingroom.gate.cookie.path", "relative"),
    ("waitingroom.gate.cookie.max-age", 0),
    ("waitingroom.gate.cookie.pass-ttl", 3601),
    ("waitingroom.gate.proof-header", "X Proof"),
    ("waitingroom.proxy.connect-timeout", 0),
    ("waitingroom.proxy.read-timeout", "0s"),
    ("waitingroom.proxy.pool-size", 10_001),
    ("waitingroom.proxy.client", "httpx"),
    ("waitingroom.proxy.host-header", "client"),
    ("waitingroom.proxy.trusted-proxies", ["proxy.local"]),
    ("waitingroom.proxy.max-response-head-bytes", 16_777_217),
    ("waitingroom.proxy.pool-timeout", "0s"),
    ("waitingroom.admin.prefix", "/admin/"),
]


@pytest.mark.parametrize(("key", "value"), INVALID)
def test_every_invalid_value_names_its_key(key: str, value: object) -> None:
    assert error_of(overrides={key: value}).startswith(f"{key}: must be ")


def test_every_key_has_an_invalid_case() -> None:
    assert {key for key, _ in INVALID} == set(KEYS)


def test_waiting_template_must_exist(tmp_path: Path) -> None:
    page = tmp_path / "wait.html"
    page.write_text("<p>wait</p>", encoding="utf-8")
    s = load_config(environ={}, overrides={"waitingroom.gate.waiting-template": str(page)})
    assert s.gate.waiting_template == str(page)


@pytest.mark.parametrize(
    ("routes", "where"),
    [
        ([{"pattern": "/x/**"}], "waitingroom.gate.routes[0]: needs exactly one"),
        ([{"pattern": "/{room}", "room": "a"}], "waitingroom.gate.routes[0]: needs exactly one"),
        ([{"pattern": "x/{room}"}], "waitingroom.gate.routes[0].pattern:"),
        ([{"pattern": "/{room}/{room}"}], "waitingroom.gate.routes[0].pattern:"),
        (
            [{"pattern": "/{room}"}, {"pattern": "/a", "room": "b/c"}],
            "waitingroom.gate.routes[1].room:",
        ),
        ([{"pattern": "/{room}", "rooms": "a"}], "waitingroom.gate.routes[0]: must be a mapping"),
        (["/x"], "waitingroom.gate.routes[0]: must be a mapping"),
    ],
)
def test_bad_routes(routes: object, where: str) -> None:
    assert error_of(overrides={"waitingroom.gate.routes": routes}).startswith(where)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"bad/room": {}}, "waitingroom.rooms.overrides.bad/room: room id must match"),
        ({"vip": {"capacity": 0}}, "waitingroom.rooms.overrides.vip.capacity: must be an integer"),
        ({"vip": {"retention": "1y"}}, "waitingroom.rooms.overrides.vip.retention: must be"),
        ({"vip": {"rate-ms": 5}}, "waitingroom.rooms.overrides.vip.rate-ms: unknown key"),
        ({"vip": 5}, "waitingroom.rooms.overrides.vip: must be a mapping"),
        (
            {"vip": {"bind-pass": "/24"}},
            "waitingroom.rooms.overrides.vip.bind-pass: must be one of 'none', 'ip', 'prefix'",
        ),
        ({"vip": {"bind_pass": "ip"}}, "waitingroom.rooms.overrides.vip.bind_pass: unknown key"),
        ({"vip": {"failure-policy": "open"}}, "waitingroom.rooms.overrides.vip.failure-policy:"),
    ],
)
def test_bad_room_overrides(overrides: object, message: str) -> None:
    assert error_of(overrides={"waitingroom.rooms.overrides": overrides}).startswith(message)


def test_bind_pass_is_set_for_the_gate_and_per_room() -> None:
    rooms = {"vip": {"bind-pass": "ip"}, "open": {"bind-pass": "none"}, "plain": {}}
    s = load_config(
        environ={"WAITINGROOM_GATE_BIND_PASS": "prefix"},
        overrides={"waitingroom.rooms.overrides": rooms},
    )
    assert s.gate.bind_pass is BindPass.PREFIX
    overrides = s.rooms.overrides
    assert overrides["vip"].bind_pass is BindPass.IP
    assert overrides["open"].bind_pass is BindPass.NONE
    assert overrides["plain"].bind_pass is None  # the gate's applies
    assert load_config(environ={}).gate.bind_pass is BindPass.NONE


@pytest.mark.parametrize(
    ("leaf", "expected"),
    [
        (Leaf("x", Kind.INT, 1, 5), "an integer in 1..5"),
        (Leaf("x", Kind.MS, 10), "a duration >= 10 ms"),
        (Leaf("x", Kind.SECS, gt=0), "a duration > 0 s"),
        (Leaf("x", Kind.BOOL), "a boolean (true/false)"),
        (Leaf("x", Kind.STR), "a string"),
        (Leaf("x", Kind.LIST, what="a list of path globs"), "a list of path globs"),
    ],
)
def test_each_kind_words_what_it_expects(leaf: Leaf, expected: str) -> None:
    assert leaf.expected() == expected
