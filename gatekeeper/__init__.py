"""gatekeeper: a virtual waiting room for Python: exact capacity, fair order, no skipping."""

from __future__ import annotations

from gatekeeper.app import WaitingRoom, create_app
from gatekeeper.config import Settings, load_config
from gatekeeper.config.settings import ProxySettings
from gatekeeper.errors import (
    ConfigError,
    GatekeeperError,
    OriginError,
    OriginTimeout,
    OriginUnavailable,
    StoreError,
)
from gatekeeper.proxy.forwarder import ReverseProxy
from gatekeeper.store import open_store

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "GatekeeperError",
    "OriginError",
    "OriginTimeout",
    "OriginUnavailable",
    "ProxySettings",
    "ReverseProxy",
    "Settings",
    "StoreError",
    "WaitingRoom",
    "__version__",
    "create_app",
    "load_config",
    "open_store",
]
