"""Settings: config.yaml < WAITINGROOM_* environment < CLI overrides, validated and frozen."""

from __future__ import annotations

import difflib
import ipaddress
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

import yaml

from gatekeeper.config.redis_url import CLUSTER_SCHEMES, parse_cluster_url
from gatekeeper.config.settings import HOST_HEADERS, PROXY_CLIENTS
from gatekeeper.config.settings import AdminSettings as AdminSettings
from gatekeeper.config.settings import ApiSettings as ApiSettings
from gatekeeper.config.settings import CookieSettings as CookieSettings
from gatekeeper.config.settings import GateRoute as GateRoute
from gatekeeper.config.settings import GateSettings as GateSettings
from gatekeeper.config.settings import LifecycleSettings as LifecycleSettings
from gatekeeper.config.settings import PollingSettings as PollingSettings
from gatekeeper.config.settings import ProcessingSettings as ProcessingSettings
from gatekeeper.config.settings import ProxySettings as ProxySettings
from gatekeeper.config.settings import RedisSettings as RedisSettings
from gatekeeper.config.settings import RoomOverride as RoomOverride
from gatekeeper.config.settings import RoomsSettings as RoomsSettings
from gatekeeper.config.settings import ServerSettings as ServerSettings
from gatekeeper.config.settings import Settings as Settings
from gatekeeper.errors import ConfigError
from gatekeeper.ids import ROOM_ID
from gatekeeper.store.base import RoomPolicy

_GROUPS: dict[str, Any] = {
    "redis": RedisSettings, "processing": ProcessingSettings, "lifecycle": LifecycleSettings,
    "polling": PollingSettings, "rooms": RoomsSettings, "api": ApiSettings,
    "server": ServerSettings, "gate.cookie": CookieSettings, "gate": GateSettings,
    "proxy": ProxySettings, "admin": AdminSettings,
}  # fmt: skip
_SECRETS = {
    "gate.cookie.keys": "cookie_keys",
    "gate.proof-secret": "proof_secret",
    "admin.token": "admin_token",
}
_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_PREFIX = re.compile(r"(/[^/\s?#]+)+")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_DOMAIN = re.compile(r"(\.?[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*)?")
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)?")
_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}
_BAD = object()
_MIN_SECRET = 16  # characters; the HMAC key floor tokens.py and proof.py enforce too


def env_var(key: str) -> str:
    """The environment variable overriding a dotted key, e.g. WAITINGROOM_REDIS_URL."""
    return "WAITINGROOM_" + re.sub(r"[.-]", "_", key.removeprefix("waitingroom.")).upper()


def _valid(check: Callable[[str], object]) -> Callable[[str], bool]:
    """Wrap a check so that a ValueError (or a bad regex) raised by it counts as failure."""

    def safe(value: str) -> bool:
        try:
            return bool(check(value))
        except (ValueError, re.error):
            return False

    return safe


@_valid
def _redis_url(url: str) -> bool:

    scheme, _, rest = url.partition("://")
    if scheme in CLUSTER_SCHEMES:
        return bool(parse_cluster_url(url).nodes)  # raises ValueError when malformed
    _ = urlsplit(url).port  # raises ValueError on a malformed port
    return url in ("", "memory://") or (scheme in ("redis", "rediss", "unix") and bool(rest))


@_valid
def _origin(url: str) -> bool:
    p = urlsplit(url)
    _ = p.port  # raises ValueError on a malformed port
    bare = not (p.path or p.query or p.fragment or "@" in p.netloc)
    return not url or (p.scheme in ("http", "https") and bool(p.hostname) and bare)


_ip = _valid(lambda v: ipaddress.ip_network(v, strict=False) is not None)
_regex = _valid(lambda v: re.compile(v) is not None)


@dataclass(frozen=True, slots=True)
class _Leaf:
    """One configurable key: path under `waitingroom`, kind, numeric bounds and extra check."""

    path: str
    kind: str  # str | int | ms | secs | bool | list | routes | rooms
    lo: int | None = None
    hi: int | None = None
    gt: int | None = None
    check: Callable[[Any], object] | None = None
    what: str = ""

    @property
    def key(self) -> str:
        return f"waitingroom.{self.path}"

    def expected(self) -> str:
        if self.what:
            return self.what
        noun = {"int": "an integer", "ms": "a duration", "secs": "a duration"}.get(self.kind)
        unit = {"ms": " ms", "secs": " s"}.get(self.kind, "")
        if noun is None:
            return "a boolean (true/false)" if self.kind == "bool" else "a string"
        if self.hi is not None:
            return f"{noun} in {self.lo}..{self.hi}{unit}"
        return f"{noun} > {self.gt}{unit}" if self.gt is not None else f"{noun} >= {self.lo}{unit}"


def _one_of(*options: object) -> dict[str, Any]:
    return {"check": frozenset(options).__contains__, "what": f"one of {str(options)[1:-1]}"}


_ROOM_IS = "a room id ([A-Za-z0-9_.-]{1,64})"
_NAME_IS = "1-64 characters of [A-Za-z0-9_.:-]"
_PREFIX_IS = "a path starting with / and without a trailing /"
_IPS_ARE = "a list of IP addresses or CIDR networks"
_GLOBS_ARE = "a list of path globs"
_SCHEMA: tuple[_Leaf, ...] = (
    _Leaf("redis.url", "str", check=_redis_url,
          what="empty, memory://, a redis://, rediss:// or unix:// URL, "
               "or redis+cluster://host:port[,host:port...] (or rediss+cluster://)"),
    _Leaf("redis.key-prefix", "str", check=_NAME.fullmatch, what=_NAME_IS),
    _Leaf("redis.stream", "str", check=_NAME.fullmatch, what=_NAME_IS),
    _Leaf("redis.pool-size", "int", 1, 10_000),
    _Leaf("redis.connect-timeout-ms", "ms", 1, 60_000),
    _Leaf("redis.socket-timeout-ms", "ms", 1, 60_000),
    _Leaf("processing.capacity", "int", 1, 10_000_000),
    _Leaf("processing.batch-size", "int", 1, 100_000),
    _Leaf("processing.rate-ms", "ms", 10, 60_000),
    _Leaf("processing.new-visitors-per-minute", "int", 0, 100_000_000),
    _Leaf("lifecycle.waiting-timeout", "secs", gt=0),
    _Leaf("lifecycle.claim-window", "secs", gt=0),
    _Leaf("lifecycle.idle-timeout", "secs", gt=0),
    _Leaf("lifecycle.retention", "secs", gt=0),
    _Leaf("polling.min-ms", "ms", 100, 600_000),
    _Leaf("polling.max-ms", "ms", 100, 600_000),
    _Leaf("rooms.default-room", "str", check=ROOM_ID.fullmatch, what=_ROOM_IS),
    _Leaf("rooms.allow-unlisted", "bool"),
    _Leaf("rooms.overrides", "rooms"),
    _Leaf("api.prefix", "str", check=_PREFIX.fullmatch, what=_PREFIX_IS),
    _Leaf("api.max-body-bytes", "int", 64, 1_048_576),
    _Leaf("server.host", "str", check=re.compile(r"\S+").fullmatch, what="a host name or address"),
    _Leaf("server.port", "int", 0, 65_535),
    _Leaf("server.graceful-timeout", "secs", 0),
    _Leaf("server.keep-alive", "secs", 1, 3600),
    _Leaf("server.log-format", "str", **_one_of("text", "json")),
    _Leaf("gate.origin", "str", check=_origin, what="empty or http(s)://host[:port], no path"),
    _Leaf("gate.protect", "list", check=bool, what=_GLOBS_ARE),
    _Leaf("gate.bypass", "list", check=bool, what=_GLOBS_ARE),
    _Leaf("gate.bypass-ips", "list", check=_ip, what=_IPS_ARE),
    _Leaf("gate.bypass-user-agents", "list", check=_regex, what="a list of regular expressions"),
    _Leaf("gate.routes", "routes"),
    _Leaf("gate.done-paths", "list", check=bool, what=_GLOBS_ARE),
    _Leaf("gate.static-prefix", "str", check=_PREFIX.fullmatch, what=_PREFIX_IS),
    _Leaf("gate.waiting-status", "int", **_one_of(200, 202, 429, 503)),
    _Leaf("gate.waiting-template", "str", check=lambda p: not p or os.path.isfile(p),
          what="empty or the path of an existing file"),
    _Leaf("gate.failure-policy", "str", **_one_of("closed", "open")),
    _Leaf("gate.cookie.name", "str", check=_TOKEN.fullmatch, what="a cookie name (RFC 6265 token)"),
    _Leaf("gate.cookie.secure", "bool"),
    _Leaf("gate.cookie.same-site", "str", **_one_of("lax", "strict", "none")),
    _Leaf("gate.cookie.domain", "str", check=_DOMAIN.fullmatch, what="empty or a domain name"),
    _Leaf("gate.cookie.path", "str", check=re.compile(r"/[^\s;]*").fullmatch,
          what="a path starting with /"),
    _Leaf("gate.cookie.max-age", "secs", gt=0),
    _Leaf("gate.cookie.pass-ttl", "secs", 0, 3600),
    _Leaf("gate.proof-header", "str", check=re.compile(r"[A-Za-z0-9-]+").fullmatch,
          what="an HTTP header name"),
    _Leaf("proxy.connect-timeout", "secs", gt=0),
    _Leaf("proxy.read-timeout", "secs", gt=0),
    _Leaf("proxy.pool-size", "int", 1, 10_000),
    _Leaf("proxy.client", "str", **_one_of(*PROXY_CLIENTS)),
    _Leaf("proxy.host-header", "str", **_one_of(*HOST_HEADERS)),
    _Leaf("proxy.trusted-proxies", "list", check=_ip, what=_IPS_ARE),
    _Leaf("admin.prefix", "str", check=_PREFIX.fullmatch, what=_PREFIX_IS),
)  # fmt: skip
KEYS: tuple[str, ...] = tuple(leaf.key for leaf in _SCHEMA)
"""Every configurable dotted key, in config.yaml order (secrets excluded)."""
_PER_ROOM = {  # what rooms.overrides.<room> accepts: room-level processing/lifecycle keys
    leaf.path.partition(".")[2]: leaf
    for leaf in _SCHEMA
    if leaf.path.startswith("lifecycle.")
    or leaf.path
    in ("processing.capacity", "processing.batch-size", "processing.new-visitors-per-minute")
}
_BOOLS = dict.fromkeys(("true", "yes", "on", "1"), True)
_BOOLS |= dict.fromkeys(("false", "no", "off", "0"), False)


def _nest(path: str, value: object) -> dict[str, Any]:
    *parents, last = path.split(".")
    tree: dict[str, Any] = {last: value}
    for part in reversed(parents):
        tree = {part: tree}
    return tree


def _merge(dst: dict[str, Any], src: Mapping[Any, Any]) -> None:
    """Deep-merge src into dst; an empty (null) YAML section keeps what is already there."""
    for raw_key, value in src.items():
        key = str(raw_key)
        if isinstance(value, Mapping):
            if not isinstance(dst.get(key), dict):
                dst[key] = {}
            _merge(dst[key], value)
        elif value is not None or not isinstance(dst.get(key), dict):
            dst[key] = value


def _lookup(tree: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return _BAD
        tree = tree[part]
    return tree


def _hint(key: str, options: Mapping[str, object]) -> str:
    close = difflib.get_close_matches(key, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _parse(kind: str, raw: object) -> Any:
    """The typed value of a YAML scalar or of text from the environment/CLI, or _BAD."""
    if kind in ("ms", "secs"):
        unit = "ms" if kind == "ms" else "s"
        if isinstance(raw, str) and (m := _DURATION.fullmatch(raw.strip())):
            value = float(m[1]) * _MS[m[2] or unit] / _MS[unit]
        elif isinstance(raw, int | float) and not isinstance(raw, bool):
            value = float(raw)
        else:
            return _BAD
        if kind == "secs":
            return value
        return round(value) if math.isfinite(value) and abs(value - round(value)) < 1e-6 else _BAD
    if isinstance(raw, str) and kind != "str":
        text = raw.strip()
        if kind == "list":
            return tuple(item.strip() for item in text.split(",") if item.strip())
        if kind == "int":
            return int(text) if re.fullmatch(r"[+-]?\d+", text) else _BAD
        return _BOOLS.get(text.lower(), _BAD)
    if kind == "list":
        if isinstance(raw, list | tuple) and all(isinstance(item, str) for item in raw):
            return tuple(raw)
        return _BAD
    ok = isinstance(raw, {"str": str, "int": int, "bool": bool}[kind])
    return raw if ok and (kind == "bool" or not isinstance(raw, bool)) else _BAD


def _coerce(leaf: _Leaf, raw: object, label: str) -> Any:
    """Parse and validate one value; `label` names it in the error."""
    if leaf.kind == "routes":
        return _routes(raw, label)
    if leaf.kind == "rooms":
        return _room_overrides(raw, label)
    value = _parse(leaf.kind, raw)
    ok = value is not _BAD
    if ok and leaf.kind in ("int", "ms", "secs"):
        ok = math.isfinite(value) and not (
            (leaf.lo is not None and value < leaf.lo)
            or (leaf.hi is not None and value > leaf.hi)
            or (leaf.gt is not None and value <= leaf.gt)
        )
    if ok and leaf.check is not None:
        ok = all(map(leaf.check, value if isinstance(value, tuple) else (value,)))
    if not ok:
        raise ConfigError(f"{label}: must be {leaf.expected()}, got {raw!r}")
    return value


def _routes(raw: object, label: str) -> tuple[GateRoute, ...]:
    if not isinstance(raw, list | tuple):
        raise ConfigError(f"{label}: must be a list of {{pattern, room}} mappings, got {raw!r}")
    routes = []
    for i, item in enumerate(raw):
        where = f"{label}[{i}]"
        if not isinstance(item, Mapping) or not set(item) <= {"pattern", "room"}:
            raise ConfigError(
                f"{where}: must be a mapping with keys pattern and room, got {item!r}"
            )
        pattern, room = item.get("pattern"), item.get("room")
        if (
            not isinstance(pattern, str)
            or not pattern.startswith("/")
            or pattern.count("{room}") > 1
        ):
            raise ConfigError(f"{where}.pattern: must be a path glob with at most one {{room}}")
        if room is not None and not (isinstance(room, str) and ROOM_ID.fullmatch(room)):
            raise ConfigError(
                f"{where}.room: must be a room id ([A-Za-z0-9_.-]{{1,64}}), got {room!r}"
            )
        if (room is None) == ("{room}" not in pattern):
            raise ConfigError(
                f"{where}: needs exactly one of a {{room}} placeholder or a fixed room"
            )
        routes.append(GateRoute(pattern, room))
    return tuple(routes)


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
        values = {}
        for key, value in (body or {}).items():
            if key not in _PER_ROOM:
                raise ConfigError(f"{where}.{key}: unknown key{_hint(key, _PER_ROOM)}")
            values[key.replace("-", "_")] = _coerce(_PER_ROOM[key], value, f"{where}.{key}")
        rooms[room] = RoomOverride(**values)
    return MappingProxyType(rooms)


class _Loader(yaml.SafeLoader):
    """A SafeLoader that rejects duplicate keys instead of silently keeping the last one."""


def _unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[str] = set()
    for key, _ in node.value:
        if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
            if key.value in seen:
                problem = f"found duplicate key {key.value!r}"
                raise yaml.constructor.ConstructorError(None, None, problem, key.start_mark)
            seen.add(key.value)
    return loader.construct_mapping(node)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def _read(path: str | os.PathLike[str]) -> Any:
    try:
        with open(path, encoding="utf-8") as fh:
            doc = yaml.load(fh, Loader=_Loader)
    except OSError as exc:
        raise ConfigError(f"{os.fspath(path)}: cannot read config file: {exc.strerror}") from exc
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{os.fspath(path)}: invalid YAML: {exc}") from exc
    if not isinstance(doc, dict | None):
        raise ConfigError(
            f"{os.fspath(path)}: must be a mapping with a top-level 'waitingroom' key"
        )
    for key in doc or {}:
        if key != "waitingroom":
            raise ConfigError(
                f"{key}: unknown top-level key in {os.fspath(path)}; use 'waitingroom'"
            )
    section = (doc or {}).get("waitingroom")
    if not isinstance(section, dict | None):
        raise ConfigError(f"waitingroom: must be a mapping, got {section!r}")
    return section


def _check_keys(node: object, shape: dict[str, Any], prefix: str) -> None:
    if node is None:  # an empty section keeps its defaults
        return
    if not isinstance(node, dict):
        raise ConfigError(f"{prefix}: must be a mapping, got {node!r}")
    for key, value in node.items():
        if key not in shape:
            raise ConfigError(f"{prefix}.{key}: unknown key{_hint(str(key), shape)}")
        if isinstance(shape[key], dict):
            _check_keys(value, shape[key], f"{prefix}.{key}")


def _shape() -> dict[str, Any]:
    shape: dict[str, Any] = {}
    for leaf in _SCHEMA:
        *groups, name = leaf.path.split(".")
        node = shape
        for group in groups:
            node = node.setdefault(group, {})
        node[name] = leaf
    return shape


_SHAPE = _shape()


def _check_tree(tree: object) -> None:
    """Reject secrets and unknown keys (with a did-you-mean hint) anywhere in the tree."""
    for secret in _SECRETS:
        if _lookup(tree, secret) is not _BAD:
            raise ConfigError(
                f"waitingroom.{secret}: secrets come from the environment ({env_var(secret)}), "
                "not from the config file or command line"
            )
    _check_keys(tree, _SHAPE, "waitingroom")


def _weak(path: str, what: str, length: int) -> ConfigError:
    return ConfigError(
        f"waitingroom.{path} (from {env_var(path)}): {what} {length} characters, "
        f"needs at least {_MIN_SECRET}"
    )


def _secrets(environ: Mapping[str, str]) -> dict[str, Any]:
    found = {attr: environ.get(env_var(path), "").strip() for path, attr in _SECRETS.items()}
    keys = tuple(key.strip() for key in found["cookie_keys"].split(",") if key.strip())
    for i, key in enumerate(keys, 1):  # errors name position and length, never the secret
        if len(key) < _MIN_SECRET:
            raise _weak("gate.cookie.keys", f"key {i} has", len(key))
    if 0 < len(found["proof_secret"]) < _MIN_SECRET:
        raise _weak("gate.proof-secret", "it has", len(found["proof_secret"]))
    return found | {"cookie_keys": keys}


def load_config(
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
) -> Settings:
    """Load settings: defaults < YAML file < WAITINGROOM_* environment < dotted CLI overrides."""
    environ = os.environ if environ is None else environ
    tree: dict[str, Any] = {}
    if path is not None:
        doc = _read(path)
        _check_tree(doc)  # before env/CLI values could mask a broken file
        _merge(tree, doc or {})
    for leaf in _SCHEMA:
        name = env_var(leaf.path)
        if leaf.kind not in ("routes", "rooms") and name in environ:
            value = _coerce(leaf, environ[name], f"{leaf.key} (from {name})")
            _merge(tree, _nest(leaf.path, value))
    for dotted, value in (overrides or {}).items():
        if not dotted.startswith("waitingroom."):
            raise ConfigError(f"{dotted}: unknown key (keys start with 'waitingroom.')")
        _merge(tree, _nest(dotted.removeprefix("waitingroom."), value))
    _check_tree(tree)
    values: dict[str, dict[str, Any]] = {group: {} for group in _GROUPS}
    for leaf in _SCHEMA:
        raw = _lookup(tree, leaf.path)
        if raw is not _BAD:  # absent keys keep the dataclass default
            group, _, name = leaf.path.rpartition(".")
            values[group][name.replace("-", "_")] = _coerce(leaf, raw, leaf.key)
    built: dict[str, Any] = {}
    for group, cls in _GROUPS.items():  # gate.cookie comes before gate
        parent, _, name = group.rpartition(".")
        (values[parent] if parent else built)[name] = cls(**values[group])
    settings = Settings(**built, **_secrets(environ))
    if settings.polling.min_ms > settings.polling.max_ms:
        raise ConfigError(
            f"waitingroom.polling.min-ms: must be <= waitingroom.polling.max-ms "
            f"({settings.polling.max_ms}), got {settings.polling.min_ms}"
        )
    if settings.gate.cookie.same_site == "none" and not settings.gate.cookie.secure:
        raise ConfigError("waitingroom.gate.cookie.same-site: 'none' requires secure: true")
    return settings


def _ms(override: float | None, default: float) -> int:
    return max(1, round((default if override is None else override) * 1000))


def policy_for(settings: Settings, room: str) -> RoomPolicy:
    """The store policy of a room: processing/lifecycle defaults with the room's override."""
    o = settings.rooms.overrides.get(room, RoomOverride())
    p, lc = settings.processing, settings.lifecycle
    return RoomPolicy(
        capacity=p.capacity if o.capacity is None else o.capacity,
        batch_size=p.batch_size if o.batch_size is None else o.batch_size,
        waiting_timeout_ms=_ms(o.waiting_timeout, lc.waiting_timeout),
        claim_window_ms=_ms(o.claim_window, lc.claim_window),
        idle_timeout_ms=_ms(o.idle_timeout, lc.idle_timeout),
        retention_ms=_ms(o.retention, lc.retention),
        per_minute=(
            p.new_visitors_per_minute
            if o.new_visitors_per_minute is None
            else o.new_visitors_per_minute
        ),
    )


def _num(x: float) -> str:
    return str(int(x)) if x == int(x) else str(x)


def describe(settings: Settings) -> str:
    """A short human summary for `gatekeeper check-config`; never shows secrets or passwords."""
    s, r, lc = settings, settings.redis, settings.lifecycle
    if r.in_memory:
        store = "in-memory (embedded, single process)"
    else:  # scheme, host and path only: the URL may carry a password
        u = urlsplit(r.url)
        where = f"{u.scheme}://{u.netloc.rpartition('@')[2]}{u.path}"
        store = f"redis {where} (key prefix {r.key_prefix!r}, stream {r.stream!r})"
    rooms = []
    for room, o in sorted(s.rooms.overrides.items()):
        values = ((f.name, getattr(o, f.name)) for f in fields(o))
        parts = [
            f"{k} {_num(v)}{'' if isinstance(v, int) else 's'}" for k, v in values if v is not None
        ]
        rooms.append(f"{room} ({', '.join(parts)})")
    cookie = s.gate.cookie
    gate = f"proxying to {s.gate.origin}" if s.gate.origin else "API-only (no origin)"
    if s.gate.origin:
        gate += f", failure policy {s.gate.failure_policy}, cookie {cookie.name!r}"
    lines = [
        f"store:      {store}",
        f"processing: capacity {s.processing.capacity}, batch {s.processing.batch_size} "
        f"every {s.processing.rate_ms} ms",
        f"lifecycle:  waiting timeout {_num(lc.waiting_timeout)}s, claim window "
        f"{_num(lc.claim_window)}s, idle timeout {_num(lc.idle_timeout)}s, "
        f"retention {_num(lc.retention)}s",
        f"polling:    {s.polling.min_ms}..{s.polling.max_ms} ms",
        f"rooms:      default {s.rooms.default_room!r}, "
        f"{'unlisted rooms allowed' if s.rooms.allow_unlisted else 'listed rooms only'}; "
        f"overrides: {'; '.join(rooms) or 'none'}",
        f"api:        {s.api.prefix} on {s.server.host}:{s.server.port}",
        f"gate:       {gate}",
        f"secrets:    {len(s.cookie_keys)} cookie key(s), proof secret "
        f"{'set' if s.proof_secret else 'not set'}, admin token "
        f"{'set' if s.admin_token else 'not set'}",
    ]
    return "\n".join(lines)
