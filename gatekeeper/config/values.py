"""Checks of single configured values: URLs, addresses, globs, header names."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from urllib.parse import urlsplit

from gatekeeper.config.redis_url import (
    CLUSTER_SCHEMES,
    SENTINEL_SCHEMES,
    parse_cluster_url,
    parse_sentinel_url,
)


def valid(check: Callable[[str], object]) -> Callable[[str], bool]:
    """Wrap a check so that a ValueError (or a bad regex) raised by it counts as failure."""

    def safe(value: str) -> bool:
        try:
            return bool(check(value))
        except (ValueError, re.error):
            return False

    return safe


@valid
def redis_url(url: str) -> bool:
    """Empty, memory://, a redis/rediss/unix URL, a cluster URL or a Sentinel URL."""
    scheme, _, rest = url.partition("://")
    if scheme in CLUSTER_SCHEMES:
        return bool(parse_cluster_url(url).nodes)  # raises ValueError when malformed
    if scheme in SENTINEL_SCHEMES:
        return bool(parse_sentinel_url(url).sentinels)  # raises ValueError when malformed
    _ = urlsplit(url).port  # raises ValueError on a malformed port
    return url in ("", "memory://") or (scheme in ("redis", "rediss", "unix") and bool(rest))


@valid
def origin_url(url: str) -> bool:
    """Empty or http(s)://host[:port] with no path, query or credentials."""
    p = urlsplit(url)
    _ = p.port  # raises ValueError on a malformed port
    bare = not (p.path or p.query or p.fragment or "@" in p.netloc)
    return not url or (p.scheme in ("http", "https") and bool(p.hostname) and bare)


@valid
def http_url(url: str) -> bool:
    """Empty or an http(s) URL that can sit in a quoted attribute."""
    p = urlsplit(url)
    _ = p.port  # raises ValueError on a malformed port
    return not url or (p.scheme in ("http", "https") and bool(p.hostname) and '"' not in url)


CSS_CLASS = re.compile(r"[A-Za-z0-9_-]{1,64}")
LANGUAGE = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})?")
ATTR_TEXT = re.compile(r"[^\x00-\x1f\x7f\"'<>&]{0,256}")
ip_network = valid(lambda v: ipaddress.ip_network(v, strict=False) is not None)
# A blank regex matches every User-Agent, and a blank glob is a slip: both are refused.
regex = valid(lambda v: bool(v.strip()) and re.compile(v) is not None)


def glob(glob: str) -> bool:
    """A path glob that is not blank."""
    return bool(glob.strip())


RESERVED_HEADERS = frozenset(
    "accept accept-encoding accept-language authorization cache-control connection"
    " content-encoding content-length content-type cookie date expect forwarded host if-match"
    " if-modified-since if-none-match if-range if-unmodified-since keep-alive max-forwards"
    " origin pragma proxy-authenticate proxy-authorization proxy-connection range referer"
    " set-cookie te trailer transfer-encoding upgrade user-agent via www-authenticate"
    " x-accel-expires x-gatekeeper-command x-gatekeeper-enqueue x-original-uri x-real-ip"
    " x-request-id x-requested-with".split()
)
"""Header names `gate.proof-header` may not take (lowercase): standard and hop-by-hop headers
the proxy rewrites or the origin relies on, and the ones gatekeeper reads or sets itself."""
RESERVED_HEADER_PREFIXES = ("x-forwarded-",)
"""Header name prefixes `gate.proof-header` may not take: the forwarding claims."""


def proof_header(name: str) -> bool:
    """A header name that no standard, hop-by-hop or gatekeeper header already uses."""
    lower = name.lower()
    return bool(
        re.fullmatch(r"[A-Za-z0-9-]+", name)
        and lower not in RESERVED_HEADERS
        and not lower.startswith(RESERVED_HEADER_PREFIXES)
    )
