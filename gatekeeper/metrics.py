"""Prometheus metrics of one gatekeeper process (its own registry, served at /metrics)."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from gatekeeper.store.base import GrantReport
from gatekeeper.verdicts import COUNTED, Verdict


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
        # Children per label values, so a join costs no label lookup (one per room and outcome).
        self._joins: dict[tuple[str, bool], Counter] = {}
        self._hot = _PerRequest()
        r.register(self._hot)

    def joined(self, room: str, admitted: bool) -> None:
        """Count one new session (admitted at once or queued)."""
        child = self._joins.get((room, admitted))
        if child is None:
            child = self._joins[(room, admitted)] = self.joins.labels(room, str(admitted).lower())
        child.inc()

    def decision(self, verdict: Verdict) -> None:
        """Count one gate decision (any but ABSENT, which is counted as WAITING)."""
        self._hot.decisions[verdict] += 1

    def response(self, status: int, seconds: float) -> None:
        """Count one forwarded response and its latency."""
        hot = self._hot
        hot.statuses[status] = hot.statuses.get(status, 0) + 1
        cls = status // 100
        i = cls - 1 if 1 <= cls <= 5 else 4
        hot.counts[i][bisect_left(LATENCY_BUCKETS, seconds)] += 1
        hot.sums[i] += seconds

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


LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class _PerRequest(Collector):
    """The per-request metrics, kept as plain numbers and turned into metrics when scraped.

    prometheus_client's own counters take a lock on every increment; these are written by the
    one event loop thread of the process, on the hot path of every admitted request.
    """

    def __init__(self) -> None:
        self.decisions: dict[str, int] = dict.fromkeys(COUNTED, 0)
        self.statuses: dict[int, int] = {}
        # Per status class 1xx..5xx: a count per bucket (the last one is +Inf), and the sum.
        self.counts = [[0] * (len(LATENCY_BUCKETS) + 1) for _ in range(5)]
        self.sums = [0.0] * 5

    def collect(self) -> Iterator[Metric]:
        decisions = CounterMetricFamily(
            "gatekeeper_gate_decisions",
            "Gate decisions (pass, admitted, waiting, held, unavailable, fail_open, ...)",
            labels=["decision"],
        )
        for name, count in self.decisions.items():
            decisions.add_metric([name], count)
        yield decisions
        requests = CounterMetricFamily(
            "gatekeeper_proxy_requests",
            "Responses to forwarded requests, by status code",
            labels=["status"],
        )
        for status, count in sorted(self.statuses.items()):
            requests.add_metric([str(status)], count)
        yield requests
        latency = HistogramMetricFamily(
            "gatekeeper_proxy_request_duration_seconds",
            "Time to answer a forwarded request (until the last body byte)",
            labels=["status_class"],
        )
        bounds = [*(str(float(b)) for b in LATENCY_BUCKETS), "+Inf"]
        for i, counts in enumerate(self.counts):
            cumulative, running = [], 0
            for bound, count in zip(bounds, counts, strict=True):
                running += count
                cumulative.append((bound, running))
            latency.add_metric([f"{i + 1}xx"], cumulative, self.sums[i])
        yield latency
