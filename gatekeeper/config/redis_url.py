"""Redis URLs the config accepts, parsed without a Redis client (the config validates them)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")

_NODE = re.compile(
    r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^\s\[\]:/@,]+))(?::(?P<port>\d{1,5}))?"
)


@dataclass(frozen=True, slots=True)
class ClusterURL:
    """A parsed `redis+cluster://[user:password@]host:port[,host:port...][/0]` URL."""

    nodes: tuple[tuple[str, int], ...]
    ssl: bool
    username: str | None
    password: str | None


def parse_cluster_url(url: str) -> ClusterURL:
    """Split a cluster URL into its startup nodes; ValueError when it is malformed.

    The port defaults to 6379; the only database a cluster has is 0; no query options.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in CLUSTER_SCHEMES:
        raise ValueError(f"not a cluster URL: {url!r}")
    netloc, _, path = rest.partition("/")
    if path not in ("", "0") or "?" in rest or "#" in rest:
        raise ValueError("a cluster URL has no path (database 0 only), query or fragment")
    userinfo, at, hosts = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    nodes: list[tuple[str, int]] = []
    for part in hosts.split(","):
        m = _NODE.fullmatch(part)
        if m is None:
            raise ValueError(f"bad cluster node {part!r}: want host[:port]")
        port = int(m["port"] or 6379)
        if not 0 < port < 65_536:
            raise ValueError(f"bad port in cluster node {part!r}")
        nodes.append((m["v6"] or m["host"], port))
    return ClusterURL(tuple(nodes), scheme == "rediss+cluster", username, password)
