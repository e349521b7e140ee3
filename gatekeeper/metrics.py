"""Prometheus metrics of one gatekeeper process (its own registry, served at /metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from gatekeeper.store.base import GrantReport


class Metrics:
    """Every metric gatekeeper exports; one instance per process (or per test)."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.waiting = Gauge(
            "gatekeeper_room_waiting", "Visitors waiting in the room", ["room"], registry=r
        )
        self.active = Gauge(
            "gatekeeper_room_active", "Visitors active in the room", ["room"], registry=r
        )
        self.capacity = Gauge(
            "gatekeeper_room_capacity", "Configured or live capacity of the room", ["room"],
            registry=r,
        )  # fmt: skip
        self.joins = Counter(
            "gatekeeper_joins_total", "Sessions created", ["room", "admitted"], registry=r
        )
        self.grants = Counter(
            "gatekeeper_grants_total", "Waiters admitted by the grant loop", ["room"], registry=r
        )
        self.leaves = Counter(
            "gatekeeper_leaves_total",
            "Places released on purpose, by trigger (api, done_path, origin_command, revoke)",
            ["room", "reason"],
            registry=r,
        )
        self.expirations = Counter(
            "gatekeeper_expirations_total",
            "Sessions expired by the grant loop (active_lease: idle or unclaimed; waiting_timeout)",
            ["room", "reason"],
            registry=r,
        )
        self.store_errors = Counter(
            "gatekeeper_store_errors_total", "Failed store calls", ["operation"], registry=r
        )
        self.decisions = Counter(
            "gatekeeper_gate_decisions_total",
            "Gate decisions (pass, admitted, waiting, held, unavailable, fail_open, ...)",
            ["decision"],
            registry=r,
        )
        self.requests = Counter(
            "gatekeeper_proxy_requests_total",
            "Responses to forwarded requests, by status code",
            ["status"],
            registry=r,
        )
        self.latency = Histogram(
            "gatekeeper_proxy_request_duration_seconds",
            "Time to answer a forwarded request (until the last body byte)",
            ["status_class"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self._decision = {d: self.decisions.labels(d) for d in _DECISIONS}
        self._latency = {c: self.latency.labels(c) for c in ("1xx", "2xx", "3xx", "4xx", "5xx")}
        self._status: dict[int, Counter] = {}

    def decision(self, name: str) -> None:
        """Count one gate decision (pre-bound children keep the hot path cheap)."""
        self._decision[name].inc()

    def response(self, status: int, seconds: float) -> None:
        """Count one forwarded response and its latency."""
        child = self._status.get(status)
        if child is None:
            child = self._status[status] = self.requests.labels(str(status))
        child.inc()
        self._latency.get(f"{status // 100}xx", self._latency["5xx"]).observe(seconds)

    def grant_report(self, room: str, report: GrantReport, capacity: int) -> None:
        """Record one grant step's figures."""
        self.waiting.labels(room).set(report.waiting)
        self.active.labels(room).set(report.active)
        self.capacity.labels(room).set(capacity)
        if report.granted:
            self.grants.labels(room).inc(len(report.granted))
        if report.expired_active:
            self.expirations.labels(room, "active_lease").inc(report.expired_active)
        if report.expired_waiting:
            self.expirations.labels(room, "waiting_timeout").inc(report.expired_waiting)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


_DECISIONS = (
    "pass",
    "admitted",
    "waiting",
    "held",
    "unavailable",
    "fail_open",
    "passthrough",
    "bypass",
)
