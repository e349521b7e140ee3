"""Binding a visitor's cookie to the client address it was issued to (`gate.bind-pass`).

In a bound room the cookie carries a tag: a keyed hash of the client's address (`ip`: the
address, an IPv6 /64) or network (`prefix`: an IPv4 /24, an IPv6 /48), signed with the rest
of the cookie (`gate.tokens`). A cookie whose tag is not the requesting address's counts as no
cookie, so a copied cookie is of no use from another machine or network. The tags of an
address are computed once and cached: a request in a bound room costs reading its address and
one dict lookup; a request in an unbound room costs nothing here.
"""

from __future__ import annotations

from gatekeeper.asgi import Scope
from gatekeeper.clients import Address, ClientAddresses, client_key, network_key
from gatekeeper.config.settings import BindPass, Settings
from gatekeeper.gate.tokens import CookieCodec

_CACHE_MAX = 16_384
"""Addresses whose tags are remembered at most (the oldest go first)."""
# Module-level: reading an enum member off its class costs a lookup on every request.
_NONE = BindPass.NONE
_IP = BindPass.IP


class Binding:
    """Each room's binding, and the binding tags of a request's client address (cached)."""

    __slots__ = ("_addresses", "_cache", "_codec", "_default", "_direct", "_rooms")

    def __init__(self, settings: Settings, codec: CookieCodec, addresses: ClientAddresses) -> None:
        self._codec = codec
        self._addresses = addresses
        self._default = settings.gate.bind_pass
        self._rooms = settings.rooms.overridden(lambda o: o.bind_pass)
        # Without trusted proxies the client's address is the peer's: its text keys the cache.
        self._direct = not settings.proxy.trusted_proxies
        self._cache: dict[tuple[str | Address | None, BindPass], tuple[str, ...]] = {}

    def tag(self, room: str, scope: Scope) -> str:
        """The tag a cookie issued in `room` to this request carries ("" when not bound)."""
        kind = self._rooms.get(room, self._default)
        return "" if kind is _NONE else self._tags(kind, scope)[0]

    def holds(self, room: str, scope: Scope, tag: str) -> bool:
        """Whether a cookie of `room` carrying `tag` may be used by this request: always in an
        unbound room; in a bound one only when `tag` is the request's address's."""
        kind = self._rooms.get(room, self._default)
        return kind is _NONE or tag in self._tags(kind, scope)

    def _tags(self, kind: BindPass, scope: Scope) -> tuple[str, ...]:
        # A known client costs one dict lookup: parsing its address would cost more than the
        # rest of the hot path, so the peer's text is the key when it is the client's address.
        key: tuple[str | Address | None, BindPass]
        if self._direct:
            try:
                key = (str(scope["client"][0]), kind)
            except (KeyError, TypeError, IndexError):
                key = (None, kind)
        else:
            key = (self._addresses.address(scope), kind)
        found = self._cache.get(key)
        if found is None:
            ip = self._addresses.address(scope)
            # An unknown address (no client in the scope) binds to "": such clients share it.
            binding = "" if ip is None else client_key(ip) if kind is _IP else network_key(ip)
            found = self._codec.tags(binding)
            if len(self._cache) >= _CACHE_MAX:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = found
        return found
