"""The settings tree: frozen dataclasses that `config.load_config` fills and validates."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from gatekeeper.errors import ConfigError
from gatekeeper.ids import DEFAULT_ROOM


@dataclass(frozen=True, slots=True)
class RedisSettings:
    """The state store; an empty or memory:// url selects the embedded in-memory store."""

    url: str = ""
    key_prefix: str = "waiting-room"
    stream: str = "joins"
    pool_size: int = 64
    connect_timeout_ms: int = 500
    socket_timeout_ms: int = 500

    @property
    def in_memory(self) -> bool:
        """True when no Redis is configured."""
        return self.url in ("", "memory://")


@dataclass(frozen=True, slots=True)
class ProcessingSettings:
    """Default room capacity and how fast waiters are admitted."""

    capacity: int = 100
    batch_size: int = 10
    rate_ms: int = 200
    new_visitors_per_minute: int = 0


@dataclass(frozen=True, slots=True)
class LifecycleSettings:
    """Default session timeouts, in seconds."""

    waiting_timeout: float = 300.0
    claim_window: float = 60.0
    idle_timeout: float = 300.0
    retention: float = 3600.0


@dataclass(frozen=True, slots=True)
class PollingSettings:
    """Bounds of the poll interval suggested to clients, in milliseconds."""

    min_ms: int = 1000
    max_ms: int = 20000


@dataclass(frozen=True, slots=True)
class RoomOverride:
    """Per-room replacements of processing/lifecycle defaults; None keeps the default."""

    capacity: int | None = None
    batch_size: int | None = None
    new_visitors_per_minute: int | None = None
    waiting_timeout: float | None = None
    claim_window: float | None = None
    idle_timeout: float | None = None
    retention: float | None = None


def _no_overrides() -> Mapping[str, RoomOverride]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class RoomsSettings:
    """Which rooms exist and their overrides."""

    default_room: str = DEFAULT_ROOM
    allow_unlisted: bool = True
    overrides: Mapping[str, RoomOverride] = field(default_factory=_no_overrides)


@dataclass(frozen=True, slots=True)
class ApiSettings:
    """The JSON API."""

    prefix: str = "/api/waiting-room"
    max_body_bytes: int = 8192


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """The HTTP listener."""

    host: str = "127.0.0.1"
    port: int = 8080
    graceful_timeout: float = 10.0
    keep_alive: float = 30.0
    log_format: str = "text"


@dataclass(frozen=True, slots=True)
class CookieSettings:
    """The gate's session cookie; durations in seconds."""

    name: str = "gk_session"
    secure: bool = True
    same_site: str = "lax"
    domain: str = ""
    path: str = "/"
    max_age: float = 86400.0
    pass_ttl: float = 5.0


@dataclass(frozen=True, slots=True)
class GateRoute:
    """A path pattern mapped to a room: via a `{room}` placeholder or a fixed room."""

    pattern: str
    room: str | None = None


_BYPASS: tuple[str, ...] = (
    "/favicon.ico",
    "/robots.txt",
    "*.css",
    "*.js",
    "*.png",
    "*.jpg",
    "*.jpeg",
    "*.gif",
)
_BYPASS += ("*.svg", "*.ico", "*.woff", "*.woff2", "*.map")


@dataclass(frozen=True, slots=True)
class GateSettings:
    """The reverse-proxy gate in front of an origin (API-only when origin is empty)."""

    origin: str = ""
    protect: tuple[str, ...] = ("/**",)
    bypass: tuple[str, ...] = _BYPASS
    bypass_ips: tuple[str, ...] = ()
    bypass_user_agents: tuple[str, ...] = ()
    routes: tuple[GateRoute, ...] = ()
    done_paths: tuple[str, ...] = ()
    static_prefix: str = "/_gatekeeper"
    waiting_status: int = 200
    waiting_template: str = ""
    failure_policy: str = "closed"
    cookie: CookieSettings = field(default_factory=CookieSettings)
    proof_header: str = "X-Gatekeeper-Proof"


PROXY_CLIENTS = ("builtin", "aiohttp")
"""The origin clients `proxy.client` selects: the built-in HTTP/1.1 client or aiohttp."""
HOST_HEADERS = ("origin", "preserve")
"""What `proxy.host-header` sends: the origin's host, or the client's Host unchanged."""


@dataclass(frozen=True, slots=True)
class ProxySettings:
    """How the proxy talks to the origin; timeouts in seconds."""

    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    pool_size: int = 100
    client: str = "builtin"
    host_header: str = "origin"
    trusted_proxies: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # The config loader checks these too (naming the key); this guards direct construction.
        if self.host_header not in HOST_HEADERS:
            raise ConfigError(f"proxy.host-header must be origin or preserve: {self.host_header!r}")
        if self.client not in PROXY_CLIENTS:
            raise ConfigError(f"proxy.client must be builtin or aiohttp: {self.client!r}")


@dataclass(frozen=True, slots=True)
class AdminSettings:
    """The admin endpoints."""

    prefix: str = "/_gatekeeper/admin"


@dataclass(frozen=True, slots=True)
class Settings:
    """The whole validated configuration; secrets come from the environment only."""

    redis: RedisSettings = field(default_factory=RedisSettings)
    processing: ProcessingSettings = field(default_factory=ProcessingSettings)
    lifecycle: LifecycleSettings = field(default_factory=LifecycleSettings)
    polling: PollingSettings = field(default_factory=PollingSettings)
    rooms: RoomsSettings = field(default_factory=RoomsSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    server: ServerSettings = field(default_factory=ServerSettings)
    gate: GateSettings = field(default_factory=GateSettings)
    proxy: ProxySettings = field(default_factory=ProxySettings)
    admin: AdminSettings = field(default_factory=AdminSettings)
    cookie_keys: tuple[str, ...] = field(default=(), repr=False)
    proof_secret: str = field(default="", repr=False)
    admin_token: str = field(default="", repr=False)
