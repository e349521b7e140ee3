"""Configuration: `load_config` turns config.yaml, the environment and flags into `Settings`."""

from __future__ import annotations

from gatekeeper.config.load import load_config
from gatekeeper.config.settings import Settings

__all__ = ["Settings", "load_config"]
