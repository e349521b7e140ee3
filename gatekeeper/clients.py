"""Who a request comes from: its address (through trusted proxies) and the key limits count by."""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable

from gatekeeper.asgi import Scope
from gatekeeper.errors import ConfigError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

_XFF = b"x-forwarded-for"
# X-Forwarded-For entries read from the right at most: each trusted hop adds one, so a longer
# list is the client's own invention and reading it all would only cost time.
_MAX_HOPS = 16
# IPv6 clients are told apart by their /64: one subscriber line is given a /64 (or more), so
# counting single addresses would hand everyone 2^64 fresh identities.
_V6_PREFIX = 64
# A network: what one access provider's customers share when their address changes a little
# (a NAT pool's /24, an IPv6 site's /48).
_V4_NETWORK = 24
_V6_NETWORK = 48


@functools.lru_cache(maxsize=4096)
def parse_address(text: str) -> Address | None:
    """An IP address (an IPv4-mapped IPv6 one as IPv4), or None when `text` is not one."""
    try:
        ip = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def trust_checker(cidrs: tuple[str, ...]) -> Callable[[str], bool]:
    """A cached test of whether an address lies in one of the networks `cidrs`."""
    try:
        networks = tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)
    except ValueError as exc:
        raise ConfigError(f"proxy.trusted-proxies: {exc}") from exc
    if not networks:
        return lambda host: False

    @functools.lru_cache(maxsize=4096)
    def is_trusted(host: str) -> bool:
        ip = parse_address(host)
        return ip is not None and any(ip in network for network in networks)

    return is_trusted


@functools.lru_cache(maxsize=4096)
def client_key(ip: Address) -> str:
    """The key per-client limits count by: an IPv4 address, or the /64 of an IPv6 one."""
    if isinstance(ip, ipaddress.IPv4Address):
        return str(ip)
    return str(ipaddress.IPv6Network((ip, _V6_PREFIX), strict=False))


def network_key(ip: Address) -> str:
    """The network an address lies in: the /24 of an IPv4 address, the /48 of an IPv6 one."""
    bits = _V4_NETWORK if isinstance(ip, ipaddress.IPv4Address) else _V6_NETWORK
    return str(ipaddress.ip_network((ip, bits), strict=False))


class ClientAddresses:
    """The address a request comes from, the one every per-client rule reads (bypass IPs,
    join limits).

    It is the socket peer; when the peer is one of `proxy.trusted-proxies`, the right-most
    X-Forwarded-For entry that is not a trusted proxy (entries further left are the client's
    own claims). An entry that is not an address ends the walk at the hop that wrote it.
    """

    def __init__(self, trusted_proxies: tuple[str, ...]) -> None:
        self._trusted = trust_checker(trusted_proxies)
        self._any_trusted = bool(trusted_proxies)

    def address(self, scope: Scope) -> Address | None:
        """The client's address, or None when the server gave none."""
        client = scope.get("client")
        if not client:
            return None
        try:
            peer = parse_address(str(client[0]))
        except (TypeError, IndexError):
            return None
        if peer is None or not self._any_trusted or not self._trusted(str(peer)):
            return peer
        found = peer
        for hop in reversed(self._forwarded(scope)):
            ip = parse_address(hop)
            if ip is None:
                break
            found = ip
            if not self._trusted(str(ip)):
                break
        return found

    def key(self, scope: Scope) -> str:
        """The client's key (see `client_key`), or "" when its address is unknown."""
        ip = self.address(scope)
        return "" if ip is None else client_key(ip)

    @staticmethod
    def _forwarded(scope: Scope) -> list[str]:
        hops: list[str] = []
        for name, value in scope.get("headers") or ():
            if name == _XFF:
                hops += bytes(value).decode("latin-1").split(",")[-_MAX_HOPS:]
        return hops[-_MAX_HOPS:]
