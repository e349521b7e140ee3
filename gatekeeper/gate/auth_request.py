"""The `auth_request` endpoint: the gate's answer for a request nginx (Traefik, Envoy) is
about to proxy, without the request itself passing through gatekeeper."""

from __future__ import annotations

from urllib.parse import unquote

from gatekeeper.asgi import Headers, Scope, Send, header
from gatekeeper.gate.admission import Admission
from gatekeeper.gate.routes import Routes
from gatekeeper.metrics import Metrics
from gatekeeper.verdicts import LET_THROUGH, Verdict


class AuthRequest:
    """200 lets the request through, 401 sends it to the gate (which queues and shows the page).

    A 200 carries Set-Cookie to pass on when the pass was renewed, and X-Accel-Expires so nginx
    may cache the answer until the pass runs out. The original URI comes in X-Original-URI.
    This endpoint never joins, so a visitor gets one session.
    """

    def __init__(self, routes: Routes, admission: Admission, metrics: Metrics) -> None:
        self._routes = routes
        self._admission = admission
        self._metrics = metrics

    async def __call__(self, scope: Scope, send: Send) -> None:
        uri = header(scope, b"x-original-uri") or b"/"
        raw_path = uri.split(b"?", 1)[0]
        original = {
            "type": "http",
            "path": unquote(raw_path.decode("latin-1")),
            "raw_path": raw_path,
            "headers": scope["headers"],
            "client": scope.get("client"),
        }
        room = self._routes.room(original)
        if room is None:
            self._metrics.decision(Verdict.BYPASS)
            return await _answer(send, 200, 0, None)
        d = await self._admission.decide(room, original, join=False)
        self._metrics.decision(Verdict.WAITING if d.verdict is Verdict.ABSENT else d.verdict)
        if d.verdict not in LET_THROUGH:
            return await _answer(send, 401, 0, d.cookie)
        ttl = 0
        if d.cookie is None and d.pass_until_ms:
            ttl = max(0, (d.pass_until_ms - self._admission.clock()) // 1000)
        await _answer(send, 200, ttl, d.cookie)


async def _answer(send: Send, status: int, ttl: int, cookie: tuple[bytes, bytes] | None) -> None:
    # X-Accel-Expires must come before any Cache-Control: nginx reads the headers in order and
    # a `no-store` seen first would make the answer uncacheable whatever follows. An answer
    # that sets a cookie is never cached (ttl 0).
    headers: Headers = [(b"x-accel-expires", str(ttl).encode()), (b"content-length", b"0")]
    if cookie is not None:
        headers.append(cookie)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b""})
