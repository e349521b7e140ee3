"""Fixtures of the gate tests: a harness and two visitors."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.gate.harness import Harness


@pytest.fixture
def h() -> Harness:
    return Harness()


@pytest.fixture
async def alice(h: Harness) -> AsyncIterator[httpx.AsyncClient]:
    async with h.client() as c:
        yield c


@pytest.fixture
async def bob(h: Harness) -> AsyncIterator[httpx.AsyncClient]:
    async with h.client() as c:
        yield c
