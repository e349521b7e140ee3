"""Health checks and metrics: `/healthz` (alive), `/readyz` (store reachable), `/metrics`."""

from __future__ import annotations

from gatekeeper.asgi import Send, send_bytes, send_error
from gatekeeper.errors import StoreError
from gatekeeper.metrics import Metrics
from gatekeeper.store.base import Queue

_TEXT = b"text/plain; charset=utf-8"
PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class Health:
    """Answers the health and metrics paths (relative to where they are mounted)."""

    def __init__(self, store: Queue, metrics: Metrics) -> None:
        self._store = store
        self._metrics = metrics

    async def __call__(self, path: str, send: Send) -> bool:
        """Answer `path` when it is one of PATHS; False otherwise."""
        if path == "/healthz":
            await send_bytes(send, 200, b"ok\n", _TEXT)
        elif path == "/readyz":
            try:
                await self._store.ping()
            except StoreError as exc:
                await send_error(send, 503, "store_unavailable", str(exc))
            else:
                await send_bytes(send, 200, b"ready\n", _TEXT)
        elif path == "/metrics":
            body, content_type = self._metrics.render()
            await send_bytes(send, 200, body, content_type.encode())
        else:
            return False
        return True
