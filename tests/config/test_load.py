"""Tests for configuration loading: defaults, file, environment, overrides, validation."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from gatekeeper.cli import describe
from gatekeeper.config import Settings, load_config
from gatekeeper.config.schema import KEYS, env_var
from gatekeeper.config.settings import GateRoute, RoomOverride
from tests.config.support import ROOMS, error_of, load, write

REFERENCE = Path(__file__).resolve().parents[2] / "config.yaml"
KEY_A = "a" * 16 + "-old"
KEY_B = "b" * 16 + "-new"


def lookup(tree: Any, key: str) -> Any:
    for part in key.split("."):
        assert isinstance(tree, dict) and part in tree, f"{key} missing from config.yaml"
        tree = tree[part]
    return tree


def test_defaults_need_no_file() -> None:
    s = load_config(environ={})
    assert s == Settings()
    assert (s.processing.capacity, s.processing.batch_size, s.processing.rate_ms) == (100, 10, 200)
    assert s.redis.url == "" and s.redis.in_memory and s.redis.stream == "joins"
    assert s.lifecycle.waiting_timeout == 300.0 and s.lifecycle.retention == 3600.0
    assert s.gate.cookie.same_site == "lax" and s.gate.protect == ("/**",)
    assert "*.woff2" in s.gate.bypass and s.proxy.host_header == "origin"
    assert s.rooms.overrides == {} and s.cookie_keys == () and s.admin_token == ""


def test_reference_config_loads_to_exactly_the_defaults() -> None:
    assert load_config(REFERENCE, environ={}) == Settings()


def test_reference_config_documents_every_key_with_a_comment() -> None:
    tree = yaml.safe_load(REFERENCE.read_text(encoding="utf-8"))
    for key in KEYS:
        lookup(tree, key)
    for line in REFERENCE.read_text(encoding="utf-8").splitlines():
        if re.match(r"\s*[a-z-]+:", line):
            assert " # " in line, f"undocumented line in config.yaml: {line!r}"


def test_settings_are_frozen() -> None:
    s = load_config(environ={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.processing.capacity = 5  # type: ignore[misc]


def test_seed_keys_from_file(tmp_path: Path) -> None:
    s = load(
        tmp_path,
        """
waitingroom:
  redis: {stream: signups}
  processing:
    capacity: 7
    batch-size: 3
    rate-ms: 50
""",
    )
    assert (s.processing.capacity, s.processing.batch_size, s.processing.rate_ms) == (7, 3, 50)
    assert s.redis.stream == "signups"
    assert s.redis.key_prefix == "waiting-room"  # untouched keys keep their defaults


@pytest.mark.parametrize("text", ["", "waitingroom:\n", "waitingroom:\n  redis:\n  gate:\n"])
def test_empty_file_and_sections_keep_defaults(tmp_path: Path, text: str) -> None:
    assert load(tmp_path, text) == Settings()


def test_lists_routes_and_nested_sections(tmp_path: Path) -> None:
    s = load(
        tmp_path,
        """
waitingroom:
  gate:
    origin: https://shop.example.com:8443
    bypass-ips: [10.0.0.0/8, "::1"]
    bypass-user-agents: ["^Pingdom", "UptimeRobot/\\\\d"]
    routes:
      - pattern: "/events/{room}/**"
      - {pattern: "/checkout/**", room: checkout}
    cookie: {secure: false, same-site: strict, max-age: 1h}
""",
    )
    assert s.gate.origin == "https://shop.example.com:8443"
    assert s.gate.bypass_ips == ("10.0.0.0/8", "::1")
    assert s.gate.routes == (GateRoute("/events/{room}/**"), GateRoute("/checkout/**", "checkout"))
    assert s.gate.cookie.secure is False and s.gate.cookie.max_age == 3600.0


@pytest.mark.parametrize(
    ("name", "value", "get", "expected"),
    [
        ("WAITINGROOM_PROCESSING_CAPACITY", "50", lambda s: s.processing.capacity, 50),
        ("WAITINGROOM_PROCESSING_BATCH_SIZE", " 5 ", lambda s: s.processing.batch_size, 5),
        ("WAITINGROOM_PROCESSING_RATE_MS", "1s", lambda s: s.processing.rate_ms, 1000),
        ("WAITINGROOM_REDIS_URL", "redis://r:6379/1", lambda s: s.redis.url, "redis://r:6379/1"),
        ("WAITINGROOM_REDIS_STREAM", "q", lambda s: s.redis.stream, "q"),
        ("WAITINGROOM_GATE_COOKIE_SECURE", "false", lambda s: s.gate.cookie.secure, False),
        ("WAITINGROOM_ROOMS_ALLOW_UNLISTED", "No", lambda s: s.rooms.allow_unlisted, False),
        ("WAITINGROOM_LIFECYCLE_CLAIM_WINDOW", "2m", lambda s: s.lifecycle.claim_window, 120.0),
        ("WAITINGROOM_GATE_PROTECT", "/a/**, /b", lambda s: s.gate.protect, ("/a/**", "/b")),
        ("WAITINGROOM_GATE_BYPASS", "", lambda s: s.gate.bypass, ()),
        ("WAITINGROOM_SERVER_PORT", "0", lambda s: s.server.port, 0),
    ],
)
def test_env_overrides(name: str, value: str, get: Any, expected: object) -> None:
    assert get(load_config(environ={name: value})) == expected


@pytest.mark.parametrize(
    ("name", "value", "key"),
    [
        ("WAITINGROOM_PROCESSING_CAPACITY", "abc", "waitingroom.processing.capacity"),
        ("WAITINGROOM_PROCESSING_BATCH_SIZE", "0", "waitingroom.processing.batch-size"),
        ("WAITINGROOM_GATE_COOKIE_SECURE", "maybe", "waitingroom.gate.cookie.secure"),
        ("WAITINGROOM_LIFECYCLE_RETENTION", "soon", "waitingroom.lifecycle.retention"),
        ("WAITINGROOM_GATE_BYPASS_IPS", "10.0.0.0/8,1.2.3.400", "waitingroom.gate.bypass-ips"),
        ("WAITINGROOM_REDIS_URL", "http://nope", "waitingroom.redis.url"),
    ],
)
def test_bad_env_value_names_variable_and_key(name: str, value: str, key: str) -> None:
    message = error_of(environ={name: value})
    assert name in message and key in message and repr(value) in message


def test_env_is_parsed_even_when_a_later_override_wins() -> None:
    env = {"WAITINGROOM_PROCESSING_CAPACITY": "abc"}
    overrides = {"waitingroom.processing.capacity": 5}
    assert "WAITINGROOM_PROCESSING_CAPACITY" in error_of(environ=env, overrides=overrides)


def test_unknown_and_file_only_env_vars_stop_startup() -> None:
    # These were once ignored; a misspelt or file-only variable is now refused, naming it.
    assert error_of(environ={"WAITINGROOM_NOPE": "x", "PATH": "/bin"}).startswith(
        "WAITINGROOM_NOPE: unknown environment variable"
    )
    assert error_of(environ={"WAITINGROOM_GATE_ROUTES": "x"}).startswith(
        "WAITINGROOM_GATE_ROUTES: waitingroom.gate.routes cannot be set from the environment"
    )


def test_variables_outside_the_prefix_are_ignored() -> None:
    env = {"PATH": "/bin", "WAITINGROOMS_X": "x", "X_WAITINGROOM_NOPE": "x", "WAITINGROOM": "x"}
    assert load_config(environ=env) == Settings()


def test_precedence_defaults_file_env_overrides(tmp_path: Path) -> None:
    path = write(
        tmp_path, "waitingroom:\n  processing: {capacity: 2, batch-size: 2, rate-ms: 20}\n"
    )
    env = {"WAITINGROOM_PROCESSING_BATCH_SIZE": "3", "WAITINGROOM_PROCESSING_RATE_MS": "30"}
    s = load_config(path, environ=env, overrides={"waitingroom.processing.rate-ms": "40"})
    assert (s.processing.capacity, s.processing.batch_size, s.processing.rate_ms) == (2, 3, 40)
    assert (
        s.processing
        == load_config(
            path, environ=env, overrides={"waitingroom.processing": {"rate-ms": 40}}
        ).processing
    )


def test_overrides_take_cli_strings_and_native_values() -> None:
    s = load_config(
        environ={},
        overrides={
            "waitingroom.redis.url": "rediss://cache:6380",
            "waitingroom.server.port": 9000,
            "waitingroom.rooms.overrides.vip.capacity": "3",
        },
    )
    assert s.redis.url == "rediss://cache:6380" and not s.redis.in_memory
    assert s.server.port == 9000 and s.rooms.overrides["vip"].capacity == 3


def test_env_uses_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WAITINGROOM_PROCESSING_CAPACITY", "42")
    assert load_config().processing.capacity == 42


def test_cross_field_checks() -> None:
    message = error_of(overrides={"waitingroom.polling.min-ms": "30s"})
    assert message.startswith("waitingroom.polling.min-ms: must be <= waitingroom.polling.max-ms")
    message = error_of(
        overrides={
            "waitingroom.gate.cookie.same-site": "none",
            "waitingroom.gate.cookie.secure": "no",
        }
    )
    assert message.startswith("waitingroom.gate.cookie.same-site: 'none' requires secure")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("waitingroom:\n  processing:\n    batchsize: 5\n",
         "waitingroom.processing.batchsize: unknown key (did you mean 'batch-size'?)"),
        ("waitingroom:\n  redis:\n    urll: x\n", "waitingroom.redis.urll: unknown key"),
        ("waitingroom:\n  gate:\n    cookie:\n      secur: true\n",
         "waitingroom.gate.cookie.secur: unknown key"),
        ("waitingroom:\n  queue: {}\n", "waitingroom.queue: unknown key"),
        ("waitingroom:\n  processing: 5\n", "waitingroom.processing: must be a mapping"),
        ("waitingroom: 5\n", "waitingroom: must be a mapping"),
        ("waiting-room:\n  processing: {}\n", "waiting-room: unknown top-level key"),
        ("waitingroom:\n  rooms:\n    overrides:\n      vip: {capacty: 5}\n",
         "waitingroom.rooms.overrides.vip.capacty: unknown key (did you mean 'capacity'?)"),
    ],
)  # fmt: skip
def test_unknown_keys_are_rejected(tmp_path: Path, text: str, message: str) -> None:
    assert error_of(path=write(tmp_path, text)).startswith(message)


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("waitingroom.processing.capaciti", "waitingroom.processing.capaciti: unknown key"),
        ("processing.capacity", "processing.capacity: unknown key"),
        ("waitingroom.nope.x", "waitingroom.nope: unknown key"),
        ("waitingroom.processing.capacity.x", "waitingroom.processing.capacity: must be"),
    ],
)
def test_unknown_override_keys_are_rejected(key: str, message: str) -> None:
    assert error_of(overrides={key: 1}).startswith(message)


def test_secrets_come_from_the_environment_and_stay_out_of_repr() -> None:
    env = {
        "WAITINGROOM_GATE_COOKIE_KEYS": f" {KEY_A}, {KEY_B} ",
        "WAITINGROOM_GATE_PROOF_SECRET": "proof-secret-0123456789",
        "WAITINGROOM_ADMIN_TOKEN": "admin-token-xyz-0123",  # tokens need 16 characters now
    }
    s = load_config(environ=env)
    assert s.cookie_keys == (KEY_A, KEY_B)
    assert s.proof_secret == "proof-secret-0123456789" and s.admin_token == "admin-token-xyz-0123"
    for text in (repr(s), str(s), describe(s)):
        assert KEY_A not in text and "proof-secret" not in text and "admin-token" not in text


@pytest.mark.parametrize(
    "key",
    ["waitingroom.gate.cookie.keys", "waitingroom.gate.proof-secret", "waitingroom.admin.token"],
)
def test_secrets_in_file_or_overrides_are_rejected(tmp_path: Path, key: str) -> None:
    *parents, leaf = key.split(".")
    text = "".join(f"{'  ' * i}{p}:\n" for i, p in enumerate(parents))
    text += f"{'  ' * len(parents)}{leaf}: {KEY_A}\n"
    for message in (error_of(path=write(tmp_path, text)), error_of(overrides={key: KEY_A})):
        assert message.startswith(f"{key}: secrets come from the environment ({env_var(key)})")
        assert KEY_A not in message


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"WAITINGROOM_GATE_COOKIE_KEYS": f"{KEY_A},short-secret"}, "waitingroom.gate.cookie.keys"),
        ({"WAITINGROOM_GATE_PROOF_SECRET": "short-secret"}, "waitingroom.gate.proof-secret"),
    ],
)
def test_short_secrets_are_rejected_without_echoing_them(env: dict[str, str], key: str) -> None:
    message = error_of(environ=env)
    assert message.startswith(key) and "at least 16" in message
    assert "short-secret" not in message


def test_invalid_yaml_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "waitingroom:\n  processing: [unclosed\n")
    message = error_of(path=path)
    assert str(path) in message and "invalid YAML" in message and "line" in message


def test_duplicate_yaml_keys_are_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, "waitingroom:\n  processing:\n    capacity: 1\n    capacity: 2\n")
    message = error_of(path=path)
    assert str(path) in message and "duplicate key 'capacity'" in message


def test_missing_or_unreadable_file_names_the_path(tmp_path: Path) -> None:
    assert str(tmp_path / "nope.yaml") in error_of(path=tmp_path / "nope.yaml")
    assert str(tmp_path) in error_of(path=tmp_path)
    (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe\x00")
    assert "invalid YAML" in error_of(path=tmp_path / "bin.yaml")


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n"])
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    assert error_of(path=path).startswith(f"{path}: must be a mapping")


def test_room_overrides(tmp_path: Path) -> None:
    s = load(tmp_path, ROOMS)
    assert set(s.rooms.overrides) == {"black-friday", "2024", "quiet"}
    assert s.rooms.overrides["quiet"] == RoomOverride() and not s.rooms.allow_unlisted


def test_room_overrides_are_read_only(tmp_path: Path) -> None:
    s = load(tmp_path, ROOMS)
    with pytest.raises(TypeError):
        s.rooms.overrides["new"] = RoomOverride()  # type: ignore[index]
