"""Settings: config.yaml < WAITINGROOM_* environment < CLI overrides, validated and frozen."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import yaml

from gatekeeper.config.checks import FILE_ONLY, check_env_names, check_settings
from gatekeeper.config.schema import SCHEMA, SECRETS, coerce, env_var, hint
from gatekeeper.config.settings import (
    AdminSettings,
    ApiSettings,
    ChallengeSettings,
    CookieSettings,
    GateSettings,
    LifecycleSettings,
    PollingSettings,
    ProcessingSettings,
    ProxySettings,
    RedisSettings,
    RoomsSettings,
    ServerSettings,
    Settings,
)
from gatekeeper.errors import ConfigError

_GROUPS: dict[str, Any] = {
    "redis": RedisSettings, "processing": ProcessingSettings, "lifecycle": LifecycleSettings,
    "polling": PollingSettings, "rooms": RoomsSettings, "api": ApiSettings,
    "server": ServerSettings, "gate.cookie": CookieSettings,
    "gate.challenge": ChallengeSettings, "gate": GateSettings,
    "proxy": ProxySettings, "admin": AdminSettings,
}  # fmt: skip
_MIN_SECRET = 16  # characters; the HMAC key floor tokens.py and proof.py enforce too
_ABSENT = object()


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
            return _ABSENT
        tree = tree[part]
    return tree


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
    name = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as fh:
            doc = yaml.load(fh, Loader=_Loader)
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read config file: {exc.strerror}") from exc
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{name}: invalid YAML: {exc}") from exc
    if not isinstance(doc, dict | None):
        raise ConfigError(f"{name}: must be a mapping with a top-level 'waitingroom' key")
    for key in doc or {}:
        if key != "waitingroom":
            raise ConfigError(f"{key}: unknown top-level key in {name}; use 'waitingroom'")
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
            raise ConfigError(f"{prefix}.{key}: unknown key{hint(str(key), shape)}")
        if isinstance(shape[key], dict):
            _check_keys(value, shape[key], f"{prefix}.{key}")


def _shape() -> dict[str, Any]:
    shape: dict[str, Any] = {}
    for leaf in SCHEMA:
        *groups, name = leaf.path.split(".")
        node = shape
        for group in groups:
            node = node.setdefault(group, {})
        node[name] = leaf
    return shape


_SHAPE = _shape()


def _check_tree(tree: object) -> None:
    """Reject secrets and unknown keys (with a did-you-mean hint) anywhere in the tree."""
    for secret in SECRETS:
        if _lookup(tree, secret) is not _ABSENT:
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
    found: dict[str, Any] = {
        attr: environ.get(env_var(path), "").strip() for path, attr in SECRETS.items()
    }
    lists = {"cookie_keys": "gate.cookie.keys", "enqueue_token_keys": "enqueue-token-secret"}
    for attr, path in lists.items():
        keys = tuple(key.strip() for key in found[attr].split(",") if key.strip())
        for i, key in enumerate(keys, 1):  # errors name position and length, never the secret
            if len(key) < _MIN_SECRET:
                raise _weak(path, f"key {i} has", len(key))
        found[attr] = keys
    if 0 < len(found["proof_secret"]) < _MIN_SECRET:
        raise _weak("gate.proof-secret", "it has", len(found["proof_secret"]))
    if 0 < len(found["admin_token"]) < _MIN_SECRET:  # empty leaves the admin API off
        raise _weak("admin.token", "it has", len(found["admin_token"]))
    return found


def _tree(
    path: str | os.PathLike[str] | None,
    environ: Mapping[str, str],
    overrides: Mapping[str, object],
) -> dict[str, Any]:
    """The raw settings tree, each source merged over the one before it."""
    tree: dict[str, Any] = {}
    if path is not None:
        doc = _read(path)
        _check_tree(doc)  # before env/CLI values could mask a broken file
        _merge(tree, doc or {})
    for leaf in SCHEMA:
        name = env_var(leaf.path)
        if leaf.kind not in FILE_ONLY and name in environ:
            value = coerce(leaf, environ[name], f"{leaf.key} (from {name})")
            _merge(tree, _nest(leaf.path, value))
    for dotted, value in overrides.items():
        if not dotted.startswith("waitingroom."):
            raise ConfigError(f"{dotted}: unknown key (keys start with 'waitingroom.')")
        _merge(tree, _nest(dotted.removeprefix("waitingroom."), value))
    _check_tree(tree)
    return tree


def _build(tree: dict[str, Any], environ: Mapping[str, str]) -> Settings:
    values: dict[str, dict[str, Any]] = {group: {} for group in _GROUPS}
    for leaf in SCHEMA:
        raw = _lookup(tree, leaf.path)
        if raw is not _ABSENT:  # absent keys keep the dataclass default
            group, _, name = leaf.path.rpartition(".")
            values[group][name.replace("-", "_")] = coerce(leaf, raw, leaf.key)
    built: dict[str, Any] = {}
    for group, cls in _GROUPS.items():  # gate.cookie comes before gate
        parent, _, name = group.rpartition(".")
        (values[parent] if parent else built)[name] = cls(**values[group])
    return Settings(**built, **_secrets(environ))


def load_config(
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
) -> Settings:
    """Load settings: defaults < YAML file < WAITINGROOM_* environment < dotted CLI overrides."""
    environ = os.environ if environ is None else environ
    check_env_names(environ)  # first: a misspelt variable explains whatever follows
    settings = _build(_tree(path, environ, overrides or {}), environ)
    check_settings(settings)
    return settings
