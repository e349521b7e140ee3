"""AiohttpUpstream: the origin client over an aiohttp session (`proxy.client: aiohttp`)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
from yarl import URL

from gatekeeper.asgi import Headers
from gatekeeper.config.settings import ProxySettings
from gatekeeper.errors import OriginTimeout, OriginUnavailable
from gatekeeper.proxy.upstream import UpstreamResponse

# aiohttp adds these unless told not to; the proxy forwards only what the client sent.
_SKIP_AUTO_HEADERS = frozenset({"User-Agent", "Accept", "Accept-Encoding", "Content-Type"})


class _AiohttpResponse:
    """An aiohttp response seen through `UpstreamResponse`; iterating it yields the body."""

    __slots__ = ("_response", "_content", "status", "headers")

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self._content = response.content
        self.status = response.status
        self.headers: Headers = list(response.raw_headers)

    def body(self) -> AsyncIterator[bytes]:
        return self

    @property
    def ended(self) -> bool:
        return self._content.is_eof()

    def __aiter__(self) -> _AiohttpResponse:
        return self

    async def __anext__(self) -> bytes:
        try:
            chunk = await self._content.readany()
        except TimeoutError as exc:
            raise OriginTimeout("the origin stopped sending the response body") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise OriginUnavailable(f"the origin dropped the response body: {exc!r}") from exc
        if not chunk:
            raise StopAsyncIteration
        return chunk

    async def aclose(self) -> None:
        if self._content.is_eof():
            self._response.release()
        else:
            # A half-read response leaves the connection unusable: close it, don't pool it.
            self._response.close()


class AiohttpUpstream:
    """`Upstream` over one aiohttp session: no cookie jar, no redirects, no added headers."""

    def __init__(self, origin: str, settings: ProxySettings) -> None:
        self._origin = origin.rstrip("/")
        self._settings = settings
        self._session: aiohttp.ClientSession | None = None

    @property
    def is_open(self) -> bool:
        """Whether the connection pool currently exists."""
        return self._session is not None

    async def open(self) -> None:
        """Create the pool now rather than on the first request (needs the running loop)."""
        self._connect()

    def _connect(self) -> aiohttp.ClientSession:
        if self._session is None:
            s = self._settings
            self._session = aiohttp.ClientSession(
                # Idle upstream connections are closed before common servers' 5 s keep-alive
                # (uvicorn, nginx defaults) so a request is never sent on a closing socket.
                connector=aiohttp.TCPConnector(
                    limit=s.pool_size, limit_per_host=0, keepalive_timeout=4.0
                ),
                # One visitor's cookies must never reach another visitor.
                cookie_jar=aiohttp.DummyCookieJar(),
                # aiohttp has one bound for waiting for a pooled connection and opening one
                # (`connect`): the larger of `proxy.pool-timeout` and `proxy.connect-timeout`;
                # `sock_connect` still bounds the opening alone.
                timeout=aiohttp.ClientTimeout(
                    total=None,
                    connect=max(s.pool_timeout, s.connect_timeout),
                    sock_connect=s.connect_timeout,
                    sock_read=s.read_timeout,
                ),
                # aiohttp bounds a response head per line (`proxy.max-response-head-bytes`
                # each) and by header count, not in total as the built-in client does.
                max_line_size=s.max_response_head_bytes,
                max_field_size=s.max_response_head_bytes,
                auto_decompress=False,
                skip_auto_headers=_SKIP_AUTO_HEADERS,
                trust_env=False,
            )
        return self._session

    async def send(
        self,
        method: str,
        target: str,
        headers: Headers,
        body: AsyncIterator[bytes] | None,
        content_length: int | None,
    ) -> UpstreamResponse:
        """Send one request and return once the response head has arrived."""
        session = self._session or self._connect()
        fields = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in headers]
        if content_length is not None:
            fields.append(("Content-Length", str(content_length)))
        try:
            response = await session.request(
                method,
                URL(self._origin + target, encoded=True),
                headers=fields,
                data=body,
                allow_redirects=False,
            )
        except TimeoutError as exc:
            raise OriginTimeout(f"the origin did not answer {method} in time") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise OriginUnavailable(f"the origin is unreachable: {exc!r}") from exc
        return _AiohttpResponse(response)

    async def aclose(self) -> None:
        """Close the pool; a later request opens a new one."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()
