"""The origin-client protocol (`Upstream`); its settings are `ProxySettings` in config.settings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from gatekeeper.asgi import Headers


class UpstreamResponse(Protocol):
    """An origin response whose head has arrived and whose body is still on the wire."""

    status: int
    headers: Headers

    def body(self) -> AsyncIterator[bytes]:
        """Yield the body chunk by chunk as it arrives."""
        ...

    @property
    def ended(self) -> bool:
        """Whether the chunks yielded so far are the whole body (False when unsure)."""
        ...

    async def aclose(self) -> None:
        """Free the pooled connection, closing it when the body was not fully read."""
        ...


class Upstream(Protocol):
    """A connection pool to one origin; `ProxySettings.client` picks the implementation."""

    async def send(
        self,
        method: str,
        target: str,
        headers: Headers,
        body: AsyncIterator[bytes] | None,
        content_length: int | None,
    ) -> UpstreamResponse:
        """Send one request; `target` is the raw path and query, forwarded byte-exactly."""
        ...

    async def aclose(self) -> None:
        """Close every pooled connection."""
        ...
