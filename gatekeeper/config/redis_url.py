"""Redis URLs the config accepts, parsed without a Redis client (the config validates them)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote

CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")

SENTINEL_PORT = 26379
"""The port of a Sentinel listed without one."""

# Query options of a Sentinel URL: the Sentinels' own credentials, and TLS as for rediss://.
SENTINEL_AUTH_OPTIONS = ("sentinel_username", "sentinel_password")
TLS_OPTIONS = ("ssl_cert_reqs", "ssl_ca_certs", "ssl_check_hostname")
_CERT_REQS = ("none", "optional", "required")
_BOOLS = ("1", "0", "yes", "no", "true", "false", "y", "n", "on", "off")

_NODE = re.compile(
    r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^\s\[\]:/@,]+))(?::(?P<port>\d{1,5}))?"
)
_SERVICE = re.compile(r"[^\s/?#]+")


@dataclass(frozen=True, slots=True)
class ClusterURL:
    """A parsed `redis+cluster://[user:password@]host:port[,host:port...][/0]` URL."""

    nodes: tuple[tuple[str, int], ...]
    ssl: bool
    username: str | None
    password: str | None


@dataclass(frozen=True, slots=True)
class SentinelURL:
    """A parsed `redis+sentinel://[user:password@]host[:port][,...]/service[/db][?...]` URL.

    `username`/`password` are the data nodes' (primary and replicas); the Sentinels' own come
    from the `sentinel_username`/`sentinel_password` query options. TLS (`rediss+sentinel`)
    applies to both, with the `ssl_*` options in `tls`.
    """

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int
    ssl: bool
    username: str | None
    password: str | None
    sentinel_username: str | None = None
    sentinel_password: str | None = None
    tls: tuple[tuple[str, str], ...] = ()


def _userinfo(netloc: str) -> tuple[str | None, str | None, str]:
    """Username, password and the host list of a URL's netloc."""
    userinfo, at, hosts = netloc.rpartition("@")
    if not at:
        return None, None, hosts
    user, colon, secret = userinfo.partition(":")
    return unquote(user) or None, unquote(secret) if colon else None, hosts


def _nodes(hosts: str, default_port: int, what: str) -> tuple[tuple[str, int], ...]:
    """`host[:port],...` as (host, port) pairs; ValueError when one is malformed."""
    nodes: list[tuple[str, int]] = []
    for part in hosts.split(","):
        m = _NODE.fullmatch(part)
        if m is None:
            raise ValueError(f"bad {what} {part!r}: want host[:port]")
        port = int(m["port"] or default_port)
        if not 0 < port < 65_536:
            raise ValueError(f"bad port in {what} {part!r}")
        nodes.append((m["v6"] or m["host"], port))
    return tuple(nodes)


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
    username, password, hosts = _userinfo(netloc)
    nodes = _nodes(hosts, 6379, "cluster node")
    return ClusterURL(nodes, scheme == "rediss+cluster", username, password)


def _sentinel_query(query: str, ssl: bool) -> dict[str, str]:
    """The query options of a Sentinel URL, checked; ValueError on unknown or bad ones."""
    options: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)):
        if name in options:
            raise ValueError(f"{name} given twice")
        if name in TLS_OPTIONS and not ssl:
            raise ValueError(f"{name} needs rediss+sentinel://")
        if name not in SENTINEL_AUTH_OPTIONS + TLS_OPTIONS:
            known = ", ".join(SENTINEL_AUTH_OPTIONS + TLS_OPTIONS)
            raise ValueError(f"unknown option {name!r} in a Sentinel URL (known: {known})")
        options[name] = value
    if options.get("ssl_cert_reqs", "required").lower() not in _CERT_REQS:
        raise ValueError(f"ssl_cert_reqs: want one of {', '.join(_CERT_REQS)}")
    if options.get("ssl_check_hostname", "true").lower() not in _BOOLS:
        raise ValueError("ssl_check_hostname: want true or false")
    return options


def parse_sentinel_url(url: str) -> SentinelURL:
    """Split a Sentinel URL into its Sentinels, service name and options; ValueError when it
    is malformed.

    A Sentinel's port defaults to 26379; the database (after the service name) to 0.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in SENTINEL_SCHEMES:
        raise ValueError(f"not a Sentinel URL: {url!r}")
    if "#" in rest:
        raise ValueError("a Sentinel URL has no fragment")
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    service, _, db = path.partition("/")
    if _SERVICE.fullmatch(service) is None:
        raise ValueError("a Sentinel URL names its service: redis+sentinel://host:port/mymaster")
    if db and (not db.isdigit() or not db.isascii()):
        raise ValueError(f"bad database {db!r} after the service name: want a number")
    ssl = scheme == "rediss+sentinel"
    options = _sentinel_query(query, ssl)
    username, password, hosts = _userinfo(netloc)
    return SentinelURL(
        sentinels=_nodes(hosts, SENTINEL_PORT, "Sentinel"),
        service=unquote(service),
        db=int(db or 0),
        ssl=ssl,
        username=username,
        password=password,
        sentinel_username=options.get("sentinel_username") or None,
        sentinel_password=options.get("sentinel_password") or None,
        tls=tuple((k, v) for k, v in options.items() if k in TLS_OPTIONS),
    )
