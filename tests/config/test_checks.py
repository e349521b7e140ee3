"""Slips the loader refuses: unknown variables, overlapping prefixes, blank globs, a short
admin token and a reserved proof header."""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Any

import pytest

from gatekeeper.config import Settings, load_config
from gatekeeper.config.checks import CONFIG_VAR, ENV_NAMES
from gatekeeper.config.schema import KEYS, env_var
from gatekeeper.config.values import RESERVED_HEADER_PREFIXES, RESERVED_HEADERS
from gatekeeper.errors import ConfigError
from tests.config.support import error_of, load

REFERENCE = Path(__file__).resolve().parents[2] / "config.yaml"
FILE_ONLY_KEYS = ("waitingroom.gate.routes", "waitingroom.rooms.overrides")


def _default(key: str) -> Any:
    value: Any = Settings()
    for part in key.removeprefix("waitingroom.").split("."):
        value = getattr(value, part.replace("-", "_"))
    return value


def _as_env(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(value)
    return value.value if isinstance(value, StrEnum) else str(value)


@pytest.mark.parametrize(
    ("name", "nearest"),
    [
        ("WAITINGROOM_PROCESSING_CAPACTY", "WAITINGROOM_PROCESSING_CAPACITY"),
        ("WAITINGROOM_PROCESING_BATCH_SIZE", "WAITINGROOM_PROCESSING_BATCH_SIZE"),
        ("WAITINGROOM_REDIS_URI", "WAITINGROOM_REDIS_URL"),
        ("WAITINGROOM_ADMIN_TOKN", "WAITINGROOM_ADMIN_TOKEN"),
        ("WAITINGROOM_GATE_COOKIE_KEY", "WAITINGROOM_GATE_COOKIE_KEYS"),
        ("WAITINGROOM_CONFG", "WAITINGROOM_CONFIG"),
        ("WAITINGROOM_SERVER_MAX_HEAD_BYTE", "WAITINGROOM_SERVER_MAX_HEAD_BYTES"),
        ("waitingroom_processing_capacity", "WAITINGROOM_PROCESSING_CAPACITY"),
    ],
)
def test_a_misspelt_variable_stops_startup_naming_the_nearest(name: str, nearest: str) -> None:
    message = error_of(environ={name: "5", "PATH": "/bin"})
    assert message == f"{name}: unknown environment variable (did you mean {nearest!r}?)"


def test_an_unknown_variable_never_echoes_its_value() -> None:
    message = error_of(environ={"WAITINGROOM_ADMIN_TOKN": "hunter2-hunter2-hunter2"})
    assert "WAITINGROOM_ADMIN_TOKN" in message and "hunter2" not in message


def test_an_unknown_variable_with_nothing_close_gets_no_hint() -> None:
    assert error_of(environ={"WAITINGROOM_QQQQQQQQQQQQQQQQ": "1"}) == (
        "WAITINGROOM_QQQQQQQQQQQQQQQQ: unknown environment variable"
    )


def test_a_bad_variable_is_named_before_a_broken_file(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("waitingroom:\n  processing: {capacity: lots}\n", encoding="utf-8")
    assert error_of(path=path, environ={"WAITINGROOM_PROCESSING_CAPACTY": "5"}).startswith(
        "WAITINGROOM_PROCESSING_CAPACTY: unknown environment variable"
    )


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("WAITINGROOM_GATE_ROUTES", "waitingroom.gate.routes"),
        ("WAITINGROOM_ROOMS_OVERRIDES", "waitingroom.rooms.overrides"),
        ("WAITINGROOM_ROOMS_OVERRIDES_VIP_CAPACITY", "waitingroom.rooms.overrides"),
        ("waitingroom_gate_routes", "waitingroom.gate.routes"),
    ],
)
def test_file_only_keys_refuse_a_variable_and_point_to_the_file(name: str, key: str) -> None:
    assert error_of(environ={name: "x"}) == (
        f"{name}: {key} cannot be set from the environment; set it in the config file"
    )


def test_known_names_are_every_key_the_secrets_and_the_config_path() -> None:
    expected = {env_var(k) for k in KEYS if k not in FILE_ONLY_KEYS}
    expected |= {"WAITINGROOM_GATE_COOKIE_KEYS", "WAITINGROOM_GATE_PROOF_SECRET"}
    expected |= {"WAITINGROOM_GATE_CHALLENGE_SECRET", "WAITINGROOM_ENQUEUE_TOKEN_SECRET"}
    assert ENV_NAMES == expected | {"WAITINGROOM_ADMIN_TOKEN", CONFIG_VAR}


def test_every_known_variable_is_accepted_and_read() -> None:
    env = {env_var(k): _as_env(_default(k)) for k in KEYS if k not in FILE_ONLY_KEYS}
    env |= {
        CONFIG_VAR: str(REFERENCE),
        "WAITINGROOM_GATE_COOKIE_KEYS": "c" * 16,
        "WAITINGROOM_GATE_PROOF_SECRET": "p" * 16,
        "WAITINGROOM_ADMIN_TOKEN": "a" * 16,
    }
    expected = Settings(cookie_keys=("c" * 16,), proof_secret="p" * 16, admin_token="a" * 16)
    assert load_config(environ=env) == expected
    env["WAITINGROOM_SERVER_MAX_CONNECTIONS"] = "7"
    assert load_config(environ=env).server.max_connections == 7


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"api.prefix": "/_gatekeeper/admin"}, "waitingroom.api.prefix: must not equal"),
        ({"api.prefix": "/_gatekeeper/admin/api"}, "waitingroom.api.prefix: must not equal"),
        ({"api.prefix": "/ops", "admin.prefix": "/ops/admin"}, "waitingroom.api.prefix:"),
        ({"api.prefix": "/_gatekeeper"}, "waitingroom.api.prefix: must not equal"),
        ({"api.prefix": "/_gatekeeper/api"}, "waitingroom.api.prefix: must not equal"),
        ({"gate.static-prefix": "/api/waiting-room/assets"}, "waitingroom.api.prefix:"),
        ({"gate.static-prefix": "/api"}, "waitingroom.api.prefix:"),
        ({"admin.prefix": "/_gatekeeper"}, "waitingroom.admin.prefix: must not equal"),
        ({"gate.static-prefix": "/_gatekeeper/admin"}, "waitingroom.admin.prefix:"),
        ({"gate.static-prefix": "/_gatekeeper/admin/assets"}, "waitingroom.admin.prefix:"),
    ],
)
def test_overlapping_prefixes_are_refused(overrides: dict[str, str], message: str) -> None:
    text = error_of(overrides={f"waitingroom.{k}": v for k, v in overrides.items()})
    assert text.startswith(message)
    assert all(repr(v) in text for v in overrides.values())


@pytest.mark.parametrize(
    "overrides",
    [
        {},  # the admin API under the static prefix, as shipped
        {"api.prefix": "/_gatekeeper-api"},  # a shared start, but not at a / boundary
        {"api.prefix": "/api", "admin.prefix": "/api-admin", "gate.static-prefix": "/apis"},
        {"admin.prefix": "/ops/admin", "gate.static-prefix": "/_gk"},
        {"admin.prefix": "/_gatekeeper/a/b", "gate.static-prefix": "/_gatekeeper"},
    ],
)
def test_prefixes_that_only_look_alike_or_nest_admin_under_static_are_allowed(
    overrides: dict[str, str],
) -> None:
    s = load_config(environ={}, overrides={f"waitingroom.{k}": v for k, v in overrides.items()})
    assert s.api.prefix == overrides.get("api.prefix", "/api/waiting-room")


def test_overlapping_prefixes_are_refused_from_the_file_and_environment(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^waitingroom\.api\.prefix: must not equal"):
        load(tmp_path, "waitingroom:\n  api: {prefix: /_gatekeeper/admin}\n")
    message = error_of(environ={"WAITINGROOM_ADMIN_PREFIX": "/api/waiting-room"})
    assert message.startswith("waitingroom.api.prefix: must not equal")


@pytest.mark.parametrize("key", ["gate.protect", "gate.bypass", "gate.done-paths"])
@pytest.mark.parametrize("globs", [[" "], ["/seats/**", "   "], ["\t"], [""]])
def test_blank_globs_are_refused(key: str, globs: list[str]) -> None:
    message = error_of(overrides={f"waitingroom.{key}": globs})
    assert message.startswith(f"waitingroom.{key}: must be a list of non-blank path globs")


def test_a_blank_glob_in_the_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^waitingroom\.gate\.protect: must be a list of non-b"):
        load(tmp_path, 'waitingroom:\n  gate:\n    protect: ["/a", "  "]\n')


@pytest.mark.parametrize("agents", [[""], [" "], ["^Pingdom", ""]])
def test_a_blank_user_agent_regex_that_would_match_everyone_is_refused(
    agents: list[str],
) -> None:
    message = error_of(overrides={"waitingroom.gate.bypass-user-agents": agents})
    assert message.startswith("waitingroom.gate.bypass-user-agents: must be a list of non-blank")


@pytest.mark.parametrize("token", ["x", "abcdefghijklmno"])
def test_a_short_admin_token_is_refused_by_length_without_echoing_it(token: str) -> None:
    message = error_of(environ={"WAITINGROOM_ADMIN_TOKEN": token})
    assert message == (
        f"waitingroom.admin.token (from WAITINGROOM_ADMIN_TOKEN): it has {len(token)} "
        "characters, needs at least 16"
    )
    assert token not in message


@pytest.mark.parametrize(("token", "kept"), [("", ""), ("  ", ""), ("a" * 16, "a" * 16)])
def test_an_empty_or_long_enough_admin_token_is_accepted(token: str, kept: str) -> None:
    assert load_config(environ={"WAITINGROOM_ADMIN_TOKEN": token}).admin_token == kept


@pytest.mark.parametrize(
    "header",
    [
        "Cookie", "cookie", "HOST", "Authorization", "Proxy-Authorization", "Connection",
        "Keep-Alive", "Upgrade", "TE", "Content-Length", "Transfer-Encoding", "Set-Cookie",
        "X-Forwarded-For", "x-forwarded-proto", "X-Forwarded-Anything", "Forwarded", "Via",
        "X-Request-Id", "X-Gatekeeper-Command", "X-Real-IP", "X-Original-URI", "User-Agent",
    ],
)  # fmt: skip
def test_a_reserved_proof_header_is_refused(header: str) -> None:
    message = error_of(overrides={"waitingroom.gate.proof-header": header})
    assert message.startswith("waitingroom.gate.proof-header: must be an HTTP header name that")
    assert repr(header) in message


def test_a_reserved_proof_header_from_the_environment_names_the_variable() -> None:
    message = error_of(environ={"WAITINGROOM_GATE_PROOF_HEADER": "Cookie"})
    assert message.startswith(
        "waitingroom.gate.proof-header (from WAITINGROOM_GATE_PROOF_HEADER): must be"
    )


@pytest.mark.parametrize("header", ["X-Gatekeeper-Proof", "X-Origin-Proof", "Queue-Proof"])
def test_a_header_of_your_own_is_a_fine_proof_header(header: str) -> None:
    s = load_config(environ={}, overrides={"waitingroom.gate.proof-header": header})
    assert s.gate.proof_header == header


def test_config_yaml_lists_exactly_the_reserved_headers() -> None:
    text = REFERENCE.read_text(encoding="utf-8")
    block = re.search(r"# Reserved \(any case\):(.*?)\n(?!\s*#)", text, re.S)
    assert block is not None, "config.yaml lost the reserved proof-header list"
    listed = {name.strip().lower() for name in re.sub(r"\n\s*#", " ", block[1]).split(",")}
    assert listed == RESERVED_HEADERS | {f"{p}*" for p in RESERVED_HEADER_PREFIXES}
