"""gatekeeper's own endpoints under their prefixes: the JSON API, the operator API, health
checks, metrics and the waiting page's assets."""

from __future__ import annotations

from gatekeeper.asgi import Receive, Scope, Send, send_error
from gatekeeper.config.settings import Settings
from gatekeeper.web.admin import AdminAPI
from gatekeeper.web.api import WaitingRoomAPI
from gatekeeper.web.health import Health
from gatekeeper.web.templates import static_file

_ASSETS = "/static/"


class Endpoints:
    """Serves gatekeeper's own paths; everything else is the site's.

    Health and metrics live under the static prefix (`/_gatekeeper/healthz`). With `root`
    (API-only mode, where no site owns the root) they are also at `/healthz`, `/readyz` and
    `/metrics`; without it (in front of a site) every other path under the static prefix is an
    asset of the waiting page or a 404.
    """

    def __init__(
        self, api: WaitingRoomAPI, admin: AdminAPI, health: Health, settings: Settings, root: bool
    ) -> None:
        self._api = api
        self._admin = admin
        self._health = health
        self._root = root
        self.own = settings.gate.static_prefix.rstrip("/")
        self.prefixes = (api.prefix, admin.prefix, self.own + "/")
        """Path prefixes of gatekeeper's own endpoints (API, admin, health, assets)."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """Serve the request when its path is one of ours; False otherwise."""
        path: str = scope["path"]
        if not self._root and not path.startswith(self.prefixes):
            return False  # the common case, one C-level check: a request for the site
        if self._api.handles(path):
            await self._api(scope, receive, send)
            return True
        if self._admin.handles(path):
            await self._admin(scope, receive, send)
            return True
        if path.startswith(self.own + "/"):
            path = path[len(self.own) :]
        elif not self._root:
            return False
        if await self._health(path, send):
            return True
        if self._root:
            return False
        await _asset(send, path)
        return True


async def _asset(send: Send, path: str) -> None:
    found = static_file(path[len(_ASSETS) :]) if path.startswith(_ASSETS) else None
    if found is None:
        return await send_error(send, 404, "not_found", "no such endpoint")
    content, content_type = found
    # Links carry a content hash (?v=…), so the files may be cached for long.
    headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(content)).encode()),
        (b"cache-control", b"public, max-age=86400"),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": content})
