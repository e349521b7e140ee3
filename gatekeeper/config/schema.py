"""The configurable keys: what each accepts, and parsing and validating one value."""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Any

import gatekeeper.config.values as values
from gatekeeper.config.events import parse_event
from gatekeeper.config.settings import (
    BindPass,
    ChallengeKind,
    FailurePolicy,
    GateRoute,
    HostHeader,
    LogFormat,
    ProxyClient,
    RoomOverride,
    SameSite,
)
from gatekeeper.errors import ConfigError
from gatekeeper.ids import ROOM_ID

_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_PREFIX = re.compile(r"(/[^/\s?#]+)+")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_DOMAIN = re.compile(r"(\.?[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*)?")
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)?")
_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}
_BAD = object()


class Kind(StrEnum):
    """What a key holds: a scalar, a list, or one of the two structured sections."""

    STR = "str"
    INT = "int"
    MS = "ms"
    """A duration in whole milliseconds."""
    SECS = "secs"
    """A duration in (fractional) seconds."""
    BOOL = "bool"
    LIST = "list"
    ROUTES = "routes"
    ROOMS = "rooms"


_NUMBERS = frozenset({Kind.INT, Kind.MS, Kind.SECS})
_DURATIONS = {Kind.MS: "ms", Kind.SECS: "s"}
_SCALARS: dict[Kind, type] = {Kind.STR: str, Kind.INT: int, Kind.BOOL: bool}


def env_var(key: str) -> str:
    """The environment variable overriding a dotted key, e.g. WAITINGROOM_REDIS_URL."""
    return "WAITINGROOM_" + re.sub(r"[.-]", "_", key.removeprefix("waitingroom.")).upper()


def hint(key: str, options: Collection[str], prefix: str = "") -> str:
    """A did-you-mean suffix naming the closest of `options` to a mistyped key, or "".

    A `prefix` shared by the key and every option is left out of the likeness."""
    short = sorted(option.removeprefix(prefix) for option in options)
    close = difflib.get_close_matches(key.removeprefix(prefix), short, n=1)
    return f" (did you mean {prefix + close[0]!r}?)" if close else ""


@dataclass(frozen=True, slots=True)
class Leaf:
    """One configurable key: path under `waitingroom`, kind, numeric bounds and extra check."""

    path: str
    kind: Kind
    lo: int | None = None
    hi: int | None = None
    gt: int | None = None
    check: Callable[[Any], object] | None = None
    what: str = ""
    choices: type[StrEnum] | None = None
    """For a closed set: the enum whose member the value becomes."""

    @property
    def key(self) -> str:
        """The full dotted key, e.g. waitingroom.redis.url."""
        return f"waitingroom.{self.path}"

    def expected(self) -> str:
        """What the key accepts, as the error message words it."""
        if self.what:
            return self.what
        if self.kind not in _NUMBERS:
            return "a boolean (true/false)" if self.kind is Kind.BOOL else "a string"
        noun = "an integer" if self.kind is Kind.INT else "a duration"
        unit = f" {_DURATIONS[self.kind]}" if self.kind in _DURATIONS else ""
        if self.hi is not None:
            return f"{noun} in {self.lo}..{self.hi}{unit}"
        return f"{noun} > {self.gt}{unit}" if self.gt is not None else f"{noun} >= {self.lo}{unit}"


def _one_of(*options: object) -> dict[str, Any]:
    return {"check": frozenset(options).__contains__, "what": f"one of {str(options)[1:-1]}"}


def _member_of(choices: type[StrEnum]) -> dict[str, Any]:
    return {**_one_of(*(member.value for member in choices)), "choices": choices}


_ROOM_IS = "a room id ([A-Za-z0-9_.-]{1,64})"
_NAME_IS = "1-64 characters of [A-Za-z0-9_.:-]"
_PREFIX_IS = "a path starting with / and without a trailing /"
_URL_IS = "empty or an http(s) URL"
_IPS_ARE = "a list of IP addresses or CIDR networks"
_GLOBS_ARE = "a list of non-blank path globs"
SCHEMA: tuple[Leaf, ...] = (
    Leaf("redis.url", Kind.STR, check=values.redis_url,
         what="empty, memory://, a redis://, rediss:// or unix:// URL, "
              "or redis+cluster://host:port[,host:port...] (or rediss+cluster://), "
              "or redis+sentinel://host:port[,host:port...]/service[/db]"),
    Leaf("redis.key-prefix", Kind.STR, check=_NAME.fullmatch, what=_NAME_IS),
    Leaf("redis.stream", Kind.STR, check=_NAME.fullmatch, what=_NAME_IS),
    Leaf("redis.pool-size", Kind.INT, 1, 10_000),
    Leaf("redis.connect-timeout-ms", Kind.MS, 1, 60_000),
    Leaf("redis.socket-timeout-ms", Kind.MS, 1, 60_000),
    Leaf("processing.capacity", Kind.INT, 1, 10_000_000),
    Leaf("processing.batch-size", Kind.INT, 1, 100_000),
    Leaf("processing.rate-ms", Kind.MS, 10, 60_000),
    Leaf("processing.new-visitors-per-minute", Kind.INT, 0, 100_000_000),
    Leaf("processing.max-waiting", Kind.INT, 0, 100_000_000),
    Leaf("processing.client-joins-per-minute", Kind.INT, 0, 1_000_000),
    Leaf("processing.client-join-burst", Kind.INT, 1, 1_000_000),
    Leaf("lifecycle.waiting-timeout", Kind.SECS, gt=0),
    Leaf("lifecycle.claim-window", Kind.SECS, gt=0),
    Leaf("lifecycle.idle-timeout", Kind.SECS, gt=0),
    Leaf("lifecycle.retention", Kind.SECS, gt=0),
    Leaf("lifecycle.max-session", Kind.SECS, 0),
    Leaf("lifecycle.expected-stay", Kind.SECS, 0),
    Leaf("polling.min-ms", Kind.MS, 100, 600_000),
    Leaf("polling.max-ms", Kind.MS, 100, 600_000),
    Leaf("rooms.default-room", Kind.STR, check=ROOM_ID.fullmatch, what=_ROOM_IS),
    Leaf("rooms.allow-unlisted", Kind.BOOL),
    Leaf("rooms.overrides", Kind.ROOMS),
    Leaf("rooms.forget-after", Kind.SECS, gt=0),
    Leaf("rooms.max-unlisted", Kind.INT, 0, 1_000_000),
    Leaf("api.prefix", Kind.STR, check=_PREFIX.fullmatch, what=_PREFIX_IS),
    Leaf("api.max-body-bytes", Kind.INT, 64, 1_048_576),
    Leaf("server.host", Kind.STR, check=re.compile(r"\S+").fullmatch,
         what="a host name or address"),
    Leaf("server.port", Kind.INT, 0, 65_535),
    Leaf("server.graceful-timeout", Kind.SECS, 0),
    Leaf("server.keep-alive", Kind.SECS, 1, 3600),
    Leaf("server.log-format", Kind.STR, **_member_of(LogFormat)),
    Leaf("server.max-head-bytes", Kind.INT, 1024, 1_048_576),
    Leaf("server.max-headers", Kind.INT, 8, 1000),
    Leaf("server.head-timeout", Kind.SECS, gt=0),
    Leaf("server.max-connections", Kind.INT, 0, 1_000_000),
    Leaf("server.workers", Kind.INT, 1, 256),
    Leaf("gate.origin", Kind.STR, check=values.origin_url,
         what="empty or http(s)://host[:port], no path"),
    Leaf("gate.protect", Kind.LIST, check=values.glob, what=_GLOBS_ARE),
    Leaf("gate.bypass", Kind.LIST, check=values.glob, what=_GLOBS_ARE),
    Leaf("gate.bypass-ips", Kind.LIST, check=values.ip_network, what=_IPS_ARE),
    Leaf("gate.bypass-user-agents", Kind.LIST, check=values.regex,
         what="a list of non-blank regular expressions"),
    Leaf("gate.routes", Kind.ROUTES),
    Leaf("gate.done-paths", Kind.LIST, check=values.glob, what=_GLOBS_ARE),
    Leaf("gate.static-prefix", Kind.STR, check=_PREFIX.fullmatch, what=_PREFIX_IS),
    Leaf("gate.waiting-status", Kind.INT, **_one_of(200, 202, 429, 503)),
    Leaf("gate.waiting-template", Kind.STR, check=lambda p: not p or os.path.isfile(p),
         what="empty or the path of an existing file"),
    Leaf("gate.template-dir", Kind.STR, check=lambda p: not p or os.path.isdir(p),
         what="empty or the path of an existing directory"),
    Leaf("gate.failure-policy", Kind.STR, **_member_of(FailurePolicy)),
    Leaf("gate.bind-pass", Kind.STR, **_member_of(BindPass)),
    Leaf("gate.cookie.name", Kind.STR, check=_TOKEN.fullmatch,
         what="a cookie name (RFC 6265 token)"),
    Leaf("gate.cookie.secure", Kind.BOOL),
    Leaf("gate.cookie.same-site", Kind.STR, **_member_of(SameSite)),
    Leaf("gate.cookie.domain", Kind.STR, check=_DOMAIN.fullmatch, what="empty or a domain name"),
    Leaf("gate.cookie.path", Kind.STR, check=re.compile(r"/[^\s;]*").fullmatch,
         what="a path starting with /"),
    Leaf("gate.cookie.max-age", Kind.SECS, gt=0),
    Leaf("gate.cookie.pass-ttl", Kind.SECS, 0, 3600),
    Leaf("gate.proof-header", Kind.STR, check=values.proof_header,
         what="an HTTP header name that is not a standard, hop-by-hop, X-Forwarded-* or "
              "gatekeeper header (the list is in config.yaml)"),
    Leaf("gate.challenge.kind", Kind.STR, **_member_of(ChallengeKind)),
    Leaf("gate.challenge.difficulty", Kind.INT, 1, 32),
    Leaf("gate.challenge.verify-url", Kind.STR, check=values.http_url, what=_URL_IS),
    Leaf("gate.challenge.site-key", Kind.STR, check=values.ATTR_TEXT.fullmatch,
         what="printable ASCII without quotes or angle brackets"),
    Leaf("gate.challenge.script-url", Kind.STR, check=values.http_url, what=_URL_IS),
    Leaf("gate.challenge.widget-class", Kind.STR, check=values.CSS_CLASS.fullmatch,
         what="a CSS class name"),
    Leaf("gate.challenge.timeout", Kind.SECS, gt=0),
    Leaf("gate.return-paths", Kind.LIST, check=values.glob, what=_GLOBS_ARE),
    Leaf("gate.return-max-body-bytes", Kind.INT, 1024, 1_048_576),
    Leaf("gate.language", Kind.STR, check=values.LANGUAGE.fullmatch,
         what="a language tag such as en, pt-BR or zh-CN"),
    Leaf("gate.force-language", Kind.STR, check=lambda v: not v or values.LANGUAGE.fullmatch(v),
         what="empty or a language tag such as en, pt-BR or zh-CN"),
    Leaf("gate.require-enqueue-token", Kind.BOOL),
    Leaf("proxy.connect-timeout", Kind.SECS, gt=0),
    Leaf("proxy.read-timeout", Kind.SECS, gt=0),
    Leaf("proxy.pool-size", Kind.INT, 1, 10_000),
    Leaf("proxy.client", Kind.STR, **_member_of(ProxyClient)),
    Leaf("proxy.host-header", Kind.STR, **_member_of(HostHeader)),
    Leaf("proxy.trusted-proxies", Kind.LIST, check=values.ip_network, what=_IPS_ARE),
    Leaf("proxy.max-response-head-bytes", Kind.INT, 1024, 16_777_216),
    Leaf("proxy.pool-timeout", Kind.SECS, gt=0),
    Leaf("proxy.websocket-max-message", Kind.INT, 1024, 67_108_864),
    Leaf("admin.prefix", Kind.STR, check=_PREFIX.fullmatch, what=_PREFIX_IS),
)  # fmt: skip
"""The table of configurable keys; load_config reads each from file, environment and CLI."""
KEYS: tuple[str, ...] = tuple(leaf.key for leaf in SCHEMA)
"""Every configurable dotted key, in config.yaml order (secrets excluded)."""
SECRETS = {
    "gate.cookie.keys": "cookie_keys",
    "gate.proof-secret": "proof_secret",
    "admin.token": "admin_token",
    "gate.challenge.secret": "challenge_secret",
    "enqueue-token-secret": "enqueue_token_keys",
}
"""The secrets (path under `waitingroom` to `Settings` field): from the environment only."""
ROOM_GATE_KEYS = {
    "bind-pass": "gate.bind-pass",
    "challenge": "gate.challenge.kind",
    "language": "gate.language",
    "force-language": "gate.force-language",
    "require-enqueue-token": "gate.require-enqueue-token",
}
"""The gate keys a room may override too: their name under rooms.overrides.<room> (and, with
`-` as `_`, the `RoomOverride` field) to the key's path."""
_PER_ROOM = {  # what rooms.overrides.<room> accepts: room-level processing/lifecycle keys...
    leaf.path.partition(".")[2]: leaf
    for leaf in SCHEMA
    if leaf.path.startswith("lifecycle.")
    or (leaf.path.startswith("processing.") and leaf.path != "processing.rate-ms")
}
_BY_PATH = {leaf.path: leaf for leaf in SCHEMA}
_PER_ROOM |= {name: _BY_PATH[path] for name, path in ROOM_GATE_KEYS.items()}  # ... and these
_BOOLS = dict.fromkeys(("true", "yes", "on", "1"), True)
_BOOLS |= dict.fromkeys(("false", "no", "off", "0"), False)


def _duration(kind: Kind, raw: object) -> Any:
    """A duration in the kind's unit (a bare number is in that unit already), or _BAD."""
    unit = _DURATIONS[kind]
    if isinstance(raw, str) and (m := _DURATION.fullmatch(raw.strip())):
        value = float(m[1]) * _MS[m[2] or unit] / _MS[unit]
    elif isinstance(raw, int | float) and not isinstance(raw, bool):
        value = float(raw)
    else:
        return _BAD
    if kind is Kind.SECS:
        return value
    return round(value) if math.isfinite(value) and abs(value - round(value)) < 1e-6 else _BAD


def _parse(kind: Kind, raw: object) -> Any:
    """The typed value of a YAML scalar or of text from the environment/CLI, or _BAD."""
    if kind in _DURATIONS:
        return _duration(kind, raw)
    if isinstance(raw, str) and kind is not Kind.STR:
        text = raw.strip()
        if kind is Kind.LIST:
            return tuple(item.strip() for item in text.split(",") if item.strip())
        if kind is Kind.INT:
            return int(text) if re.fullmatch(r"[+-]?\d{1,18}", text) else _BAD  # no 5,000 digits
        return _BOOLS.get(text.lower(), _BAD)
    if kind is Kind.LIST:
        if isinstance(raw, list | tuple) and all(isinstance(item, str) for item in raw):
            return tuple(raw)
        return _BAD
    ok = isinstance(raw, _SCALARS[kind])
    return raw if ok and (kind is Kind.BOOL or not isinstance(raw, bool)) else _BAD


def coerce(leaf: Leaf, raw: object, label: str) -> Any:
    """Parse and validate one value; `label` names it in the error."""
    if leaf.kind is Kind.ROUTES:
        return _routes(raw, label)
    if leaf.kind is Kind.ROOMS:
        return _room_overrides(raw, label)
    value = _parse(leaf.kind, raw)
    ok = value is not _BAD
    if ok and leaf.kind in _NUMBERS:
        ok = math.isfinite(value) and not (
            (leaf.lo is not None and value < leaf.lo)
            or (leaf.hi is not None and value > leaf.hi)
            or (leaf.gt is not None and value <= leaf.gt)
        )
    if ok and leaf.check is not None:
        ok = all(map(leaf.check, value if isinstance(value, tuple) else (value,)))
    if not ok:
        raise ConfigError(f"{label}: must be {leaf.expected()}, got {raw!r}")
    return value if leaf.choices is None else leaf.choices(value)


def _route(item: object, where: str) -> GateRoute:
    if not isinstance(item, Mapping) or not set(item) <= {"pattern", "room"}:
        raise ConfigError(f"{where}: must be a mapping with keys pattern and room, got {item!r}")
    pattern, room = item.get("pattern"), item.get("room")
    if not isinstance(pattern, str) or not pattern.startswith("/") or pattern.count("{room}") > 1:
        raise ConfigError(f"{where}.pattern: must be a path glob with at most one {{room}}")
    if room is not None and not (isinstance(room, str) and ROOM_ID.fullmatch(room)):
        raise ConfigError(f"{where}.room: must be a room id ([A-Za-z0-9_.-]{{1,64}}), got {room!r}")
    if (room is None) == ("{room}" not in pattern):
        raise ConfigError(f"{where}: needs exactly one of a {{room}} placeholder or a fixed room")
    return GateRoute(pattern, room)


def _routes(raw: object, label: str) -> tuple[GateRoute, ...]:
    if not isinstance(raw, list | tuple):
        raise ConfigError(f"{label}: must be a list of {{pattern, room}} mappings, got {raw!r}")
    return tuple(_route(item, f"{label}[{i}]") for i, item in enumerate(raw))


def _room_overrides(raw: object, label: str) -> Mapping[str, RoomOverride]:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{label}: must be a mapping of room id to settings, got {raw!r}")
    rooms = {}
    for room, body in raw.items():
        where = f"{label}.{room}"
        if not ROOM_ID.fullmatch(room):
            raise ConfigError(f"{where}: room id must match [A-Za-z0-9_.-]{{1,64}}")
        if not isinstance(body, Mapping | None):
            raise ConfigError(f"{where}: must be a mapping, got {body!r}")
        values: dict[str, Any] = {}
        for key, value in (body or {}).items():
            if key == "event":
                values["event"] = parse_event(value, f"{where}.event")
                continue
            if key not in _PER_ROOM:
                raise ConfigError(f"{where}.{key}: unknown key{hint(key, _PER_ROOM)}")
            values[key.replace("-", "_")] = coerce(_PER_ROOM[key], value, f"{where}.{key}")
        rooms[room] = RoomOverride(**values)
    return MappingProxyType(rooms)
