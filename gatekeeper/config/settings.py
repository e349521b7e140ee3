"""The settings tree: frozen dataclasses that `config.load_config` fills and validates."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import TypeVar

from gatekeeper.errors import ConfigError
from gatekeeper.ids import DEFAULT_ROOM

T = TypeVar("T")


class LogFormat(StrEnum):
    """How the process writes its log lines (`server.log-format`)."""

    TEXT = "text"
    JSON = "json"


class SameSite(StrEnum):
    """The cookie's SameSite attribute (`gate.cookie.same-site`)."""

    LAX = "lax"
    STRICT = "strict"
    NONE = "none"


class FailurePolicy(StrEnum):
    """What the gate does when the store fails (`gate.failure-policy`)."""

    CLOSED = "closed"
    """Admitted visitors go on until their pass runs out; newcomers get a 503."""
    OPEN = "open"
    """Everyone is let through unchecked."""


class BindPass(StrEnum):
    """What a visitor's cookie is bound to (`gate.bind-pass`, per room in `rooms.overrides`)."""

    NONE = "none"
    """Nothing: the cookie works from anywhere."""
    IP = "ip"
    """The client address it was issued to (IPv4: the address; IPv6: its /64)."""
    PREFIX = "prefix"
    """The client's network (IPv4: its /24; IPv6: its /48)."""


class ProxyClient(StrEnum):
    """The proxy's origin client (`proxy.client`)."""

    BUILTIN = "builtin"
    """The built-in pooled HTTP/1.1 client (asyncio and httptools)."""
    AIOHTTP = "aiohttp"


class HostHeader(StrEnum):
    """The Host header the proxy sends (`proxy.host-header`)."""

    ORIGIN = "origin"
    """The origin's host."""
    PRESERVE = "preserve"
    """The client's Host, unchanged."""


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
    max_waiting: int = 0
    """Most sessions waiting in a room; joins beyond get "queue full" (0 = no cap)."""
    client_joins_per_minute: int = 60
    """Joins one client address (IPv6: its /64) may make per minute in a room (0 = no limit)."""
    client_join_burst: int = 60
    """Joins one client address may make at once before the per-minute limit applies."""


@dataclass(frozen=True, slots=True)
class LifecycleSettings:
    """Default session timeouts, in seconds."""

    waiting_timeout: float = 300.0
    claim_window: float = 60.0
    idle_timeout: float = 300.0
    retention: float = 3600.0
    max_session: float = 0.0
    """An admitted visitor's session ends this long after its grant, however busy (0: never)."""
    expected_stay: float = 0.0
    """How long an admitted visitor is expected to stay, for wait estimates before the room's
    first grants (0: idle_timeout)."""


@dataclass(frozen=True, slots=True)
class PollingSettings:
    """Bounds of the poll interval suggested to clients, in milliseconds."""

    min_ms: int = 1000
    max_ms: int = 20000


@dataclass(frozen=True, slots=True)
class EventSettings:
    """A room's scheduled on-sale; instants in epoch milliseconds (see config/events.py).

    Before `prequeue_opens_at` the room works as without the event; from it until `starts_at`
    everyone who arrives joins the pre-queue and nobody is admitted; at `starts_at` the
    pre-queue is put at the front of the line (in drawn order with `shuffle`, else in arrival
    order) and later arrivals queue behind it; from `ends_at` the room is closed."""

    prequeue_opens_at: int
    starts_at: int
    ends_at: int | None = None
    shuffle: bool = True


@dataclass(frozen=True, slots=True)
class RoomOverride:
    """Per-room replacements of processing/lifecycle defaults and of the gate keys rooms may
    set (`schema.ROOM_GATE_KEYS`); None keeps the default."""

    capacity: int | None = None
    batch_size: int | None = None
    new_visitors_per_minute: int | None = None
    max_waiting: int | None = None
    client_joins_per_minute: int | None = None
    client_join_burst: int | None = None
    waiting_timeout: float | None = None
    claim_window: float | None = None
    idle_timeout: float | None = None
    retention: float | None = None
    max_session: float | None = None
    expected_stay: float | None = None
    challenge: ChallengeKind | None = None
    bind_pass: BindPass | None = None
    language: str | None = None
    force_language: str | None = None
    require_enqueue_token: bool | None = None
    event: EventSettings | None = None
    """The room's scheduled on-sale (`rooms.overrides.<room>.event`)."""


def _no_overrides() -> Mapping[str, RoomOverride]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class RoomsSettings:
    """Which rooms exist and their overrides."""

    default_room: str = DEFAULT_ROOM
    allow_unlisted: bool = True
    overrides: Mapping[str, RoomOverride] = field(default_factory=_no_overrides)
    forget_after: float = 600.0
    """Seconds after its last join an empty room is dropped from the store's room list."""
    max_unlisted: int = 1000
    """Most unlisted rooms in the room list; a new one beyond is refused (0: none at all)."""

    def overridden(self, pick: Callable[[RoomOverride], T | None]) -> dict[str, T]:
        """The rooms that set one override (`pick` reads it), each with its value."""
        return {room: v for room, o in self.overrides.items() if (v := pick(o)) is not None}


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
    log_format: LogFormat = LogFormat.TEXT
    max_head_bytes: int = 16384
    """Largest request line plus headers; a larger head is answered 431."""
    max_headers: int = 100
    """Most request header lines; more are answered 431."""
    head_timeout: float = 10.0
    """Seconds a request head may take to arrive."""
    max_connections: int = 0
    """Most open client connections; past it new requests are answered 503. 0: what the
    open-file limit leaves after the origin and Redis pools (see `gatekeeper.server`)."""
    workers: int = 1
    """Processes serving the one port (more than one needs Redis: rooms are shared there)."""


@dataclass(frozen=True, slots=True)
class CookieSettings:
    """The gate's session cookie; durations in seconds."""

    name: str = "gk_session"
    secure: bool = True
    same_site: SameSite = SameSite.LAX
    domain: str = ""
    path: str = "/"
    max_age: float = 86400.0
    pass_ttl: float = 5.0


class ChallengeKind(StrEnum):
    """What a visitor's browser must do before a join that waits counts (`gate.challenge.kind`)."""

    NONE = "none"
    PROOF_OF_WORK = "proof-of-work"
    """The waiting page finds a nonce whose SHA-256 with the session id has `difficulty`
    leading zero bits (JavaScript, a fraction of a second at the default)."""
    VERIFIER = "verifier"
    """A Turnstile/hCaptcha-style widget; its token is checked at `verify-url` (siteverify)."""


@dataclass(frozen=True, slots=True)
class ChallengeSettings:
    """The challenge before a join counts in a busy room (per room: `rooms.overrides`)."""

    kind: ChallengeKind = ChallengeKind.NONE
    difficulty: int = 16
    """Proof of work: leading zero bits (each one doubles the browser's average work)."""
    verify_url: str = ""
    """Verifier: the siteverify endpoint (POST secret, response, remoteip → {"success"})."""
    site_key: str = ""
    script_url: str = "https://challenges.cloudflare.com/turnstile/v0/api.js"
    widget_class: str = "cf-turnstile"
    """Verifier: the class of the element the widget script fills (h-captcha for hCaptcha)."""
    timeout: float = 5.0
    """Verifier: seconds to wait for siteverify; no answer counts as not passed."""


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
    template_dir: str = ""
    """A directory whose waiting.html, notice.html, closed.html, unavailable.html replace the
    packaged pages ("" = the packaged ones)."""
    failure_policy: FailurePolicy = FailurePolicy.CLOSED
    bind_pass: BindPass = BindPass.NONE
    """What a visitor's cookie is bound to; a cookie presented from elsewhere counts as none."""
    cookie: CookieSettings = field(default_factory=CookieSettings)
    proof_header: str = "X-Gatekeeper-Proof"
    challenge: ChallengeSettings = field(default_factory=ChallengeSettings)
    return_paths: tuple[str, ...] = ()
    """Path globs a visitor may come back to by a cross-site POST (a payment provider's
    return); without the cookie, the gate bounces it once through a same-site form."""
    return_max_body_bytes: int = 65536
    """Largest form body a return-path bounce carries over; a larger one is not bounced."""
    language: str = "en"
    """The pages' language when the browser's Accept-Language names none we speak."""
    force_language: str = ""
    """When set, the pages' language whatever the browser asks for."""
    require_enqueue_token: bool = False
    """A join needs an enqueue token minted by the site (gatekeeper/enqueue.py)."""


@dataclass(frozen=True, slots=True)
class ProxySettings:
    """How the proxy talks to the origin; timeouts in seconds."""

    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    pool_size: int = 100
    client: ProxyClient = ProxyClient.BUILTIN
    host_header: HostHeader = HostHeader.ORIGIN
    trusted_proxies: tuple[str, ...] = ()
    max_response_head_bytes: int = 65536
    """Largest origin status line plus headers; a larger one is answered 502."""
    pool_timeout: float = 5.0
    """Seconds to wait for a pooled origin connection; past it the answer is 504."""
    websocket_max_message: int = 1 << 20
    """Bytes of the largest WebSocket message either side may send through the gate; a larger
    one closes the socket with 1009."""

    def __post_init__(self) -> None:
        # The config loader checks these too (naming the key); this guards direct construction
        # and turns plain strings into the enum members.
        try:
            object.__setattr__(self, "host_header", HostHeader(self.host_header))
        except ValueError:
            raise ConfigError(
                f"proxy.host-header must be origin or preserve: {self.host_header!r}"
            ) from None
        try:
            object.__setattr__(self, "client", ProxyClient(self.client))
        except ValueError:
            raise ConfigError(f"proxy.client must be builtin or aiohttp: {self.client!r}") from None


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
    challenge_secret: str = field(default="", repr=False)
    enqueue_token_keys: tuple[str, ...] = field(default=(), repr=False)
    """Secrets enqueue tokens are signed with: the first mints, any verifies (rotation)."""
