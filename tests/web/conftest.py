"""Fixtures of the web tests: a renderer of the packaged pages."""

from __future__ import annotations

import pytest

from gatekeeper.web.pages import PageRenderer


@pytest.fixture(scope="module")
def renderer() -> PageRenderer:
    return PageRenderer()
