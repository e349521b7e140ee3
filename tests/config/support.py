"""Config texts and loading shortcuts shared by the configuration, room and CLI tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gatekeeper.config import Settings, load_config
from gatekeeper.errors import ConfigError

ROOMS = """
waitingroom:
  processing: {capacity: 50, batch-size: 5}
  lifecycle: {waiting-timeout: 2m, claim-window: 30, idle-timeout: 1m, retention: 1h}
  rooms:
    allow-unlisted: false
    overrides:
      black-friday: {capacity: 500, batch-size: 50, waiting-timeout: 10m, retention: 250ms}
      2024: {}
      quiet:
"""
"""Three room overrides (one full, two empty) over non-default processing and lifecycle."""


def write(tmp_path: Path, text: str) -> Path:
    """Write `text` as tmp_path/config.yaml."""
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def load(tmp_path: Path, text: str, **env: str) -> Settings:
    """Load `text` as a config file with only `env` as the environment."""
    return load_config(write(tmp_path, text), environ=env)


def error_of(**kwargs: Any) -> str:
    """The ConfigError message load_config(**kwargs) raises (with an empty environment)."""
    kwargs.setdefault("environ", {})
    with pytest.raises(ConfigError) as info:
        load_config(**kwargs)
    return str(info.value)
