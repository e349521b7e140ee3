"""Checks across keys and sources: the environment's variable names, and keys that must agree."""

from __future__ import annotations

from collections.abc import Mapping

from gatekeeper.config.schema import SCHEMA, SECRETS, Kind, env_var, hint
from gatekeeper.config.settings import SameSite, Settings
from gatekeeper.errors import ConfigError

ENV_PREFIX = "WAITINGROOM_"
CONFIG_VAR = "WAITINGROOM_CONFIG"
"""The config file the `gatekeeper` command reads: a known variable, though not a key."""
FILE_ONLY = frozenset({Kind.ROUTES, Kind.ROOMS})
"""Kinds of key no environment variable can hold."""
_FILE_ONLY_VARS = {env_var(leaf.path): leaf.key for leaf in SCHEMA if leaf.kind in FILE_ONLY}
ENV_NAMES = frozenset(
    {env_var(leaf.path) for leaf in SCHEMA if leaf.kind not in FILE_ONLY}
    | {env_var(path) for path in SECRETS}
    | {CONFIG_VAR}
)
"""Every WAITINGROOM_* variable gatekeeper reads; any other one is a slip and stops startup."""


def check_env_names(environ: Mapping[str, str]) -> None:
    """Refuse a WAITINGROOM_* variable that no key reads, naming the nearest valid one."""
    for name in sorted(environ):
        upper = name.upper()  # a lowercase slip is ignored by the lookup just the same
        if not upper.startswith(ENV_PREFIX) or name in ENV_NAMES:
            continue
        for var, key in _FILE_ONLY_VARS.items():
            if upper == var or upper.startswith(var + "_"):
                raise ConfigError(
                    f"{name}: {key} cannot be set from the environment; set it in the config file"
                )
        raise ConfigError(
            f"{name}: unknown environment variable{hint(upper, ENV_NAMES, ENV_PREFIX)}"
        )


def _nested(outer: str, inner: str) -> bool:
    """True when `inner` equals `outer` or lies under it at a `/` boundary."""
    return inner == outer or inner.startswith(outer + "/")


def _check_prefixes(settings: Settings) -> None:
    # The endpoints try the API first, then the admin API, then the static prefix: a path two
    # of them claim goes to the first, so the others would lose it. The admin API under the
    # static prefix is the default and works (it is tried first); the reverse would not.
    api, admin, static = settings.api.prefix, settings.admin.prefix, settings.gate.static_prefix
    for key, other in (("admin.prefix", admin), ("gate.static-prefix", static)):
        if _nested(api, other) or _nested(other, api):
            raise ConfigError(
                f"waitingroom.api.prefix: must not equal, contain or lie under "
                f"waitingroom.{key} ({other!r}), got {api!r}"
            )
    if _nested(admin, static):
        raise ConfigError(
            f"waitingroom.admin.prefix: must not equal or contain waitingroom.gate.static-prefix "
            f"({static!r}); it may lie under it, got {admin!r}"
        )


def check_settings(settings: Settings) -> None:
    """Refuse settings whose keys are each valid but do not fit together."""
    if settings.polling.min_ms > settings.polling.max_ms:
        raise ConfigError(
            f"waitingroom.polling.min-ms: must be <= waitingroom.polling.max-ms "
            f"({settings.polling.max_ms}), got {settings.polling.min_ms}"
        )
    if settings.gate.cookie.same_site is SameSite.NONE and not settings.gate.cookie.secure:
        raise ConfigError("waitingroom.gate.cookie.same-site: 'none' requires secure: true")
    _check_prefixes(settings)
    _check_invitations(settings)


def _check_invitations(settings: Settings) -> None:
    # A room that needs enqueue tokens with no key to check them would refuse everyone.
    if settings.enqueue_token_keys:
        return
    rooms = settings.rooms.overrides
    wanting = [r for r, o in rooms.items() if o.require_enqueue_token]
    if settings.gate.require_enqueue_token or wanting:
        where = "waitingroom.gate.require-enqueue-token"
        if wanting:
            where = f"waitingroom.rooms.overrides.{wanting[0]}.require-enqueue-token"
        raise ConfigError(f"{where}: needs WAITINGROOM_ENQUEUE_TOKEN_SECRET (the site's keys)")
