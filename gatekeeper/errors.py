"""The exception tree: every failure gatekeeper raises on purpose is one of these.

GatekeeperError
 ├── ConfigError      a bad or missing configuration value (names the key)
 ├── StoreError       the state store is unreachable, slow or answered nonsense
 └── OriginError      the upstream origin failed
      ├── OriginUnavailable   connect error, refused, reset  → 502
      └── OriginTimeout       no answer in time               → 504
"""

from __future__ import annotations


class GatekeeperError(Exception):
    """Base class of every error gatekeeper raises on purpose."""


class ConfigError(GatekeeperError):
    """A configuration value is missing or invalid; the message names the key."""


class StoreError(GatekeeperError):
    """The state store could not complete a call (unreachable, timed out, bad reply)."""


class OriginError(GatekeeperError):
    """The origin behind the proxy failed."""


class OriginUnavailable(OriginError):
    """The origin refused or dropped the connection."""


class OriginTimeout(OriginError):
    """The origin did not answer within the configured timeout."""
