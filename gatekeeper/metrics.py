"""Prometheus metrics of one gatekeeper process (its own registry, served at /metrics)."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Collection, Iterator
from typing import Generic, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from gatekeeper.store.base import EndReason, GrantReport, Ticket
from gatekeeper.verdicts import COUNTED, Verdict

OTHER_ROOMS = "~other"
"""The room label shared by the unlisted rooms beyond ROOM_LABELS (not a valid room id)."""

ROOM_LABELS = 100
"""Unlisted rooms with a label of their own; configured rooms always have one. About 1 KB of
/metrics per room (a dozen series): 100 keep a scrape near 100 KB, whatever rooms.max-unlisted."""

M = TypeVar("M", bound=MetricWrapperBase)


class PerRoom(Generic[M]):
    """A metric whose first label is the room, named through `Metrics.room_label` (bounded).

    Children are kept per label values (a hot-path increment costs no label lookup), and all of
    a room label's series can be removed when its room is forgotten.
    """

    def __init__(self, metric: M, label: Callable[[str], str]) -> None:
        self.metric: M = metric
        self._label = label
        self._children: dict[str, dict[tuple[str, ...], M]] = {}

    def labels(self, room: str, *rest: str) -> M:
        """The child of `room` (or of the label it shares) and the other label values."""
        value = self._label(room)
        children = self._children.setdefault(value, {})
        child = children.get(rest)
        if child is None:
            child = children[rest] = self.metric.labels(value, *rest)
        return child

    def remove(self, value: str) -> None:
        """Drop every series of one room label."""
        for rest in self._children.pop(value, {}):
            self.metric.remove(value, *rest)


class Metrics:
    """Every metric gatekeeper exports; one instance per process (or per test).

    Per-room series are bounded: configured rooms each get their own `room` label, other rooms
    up to `room_labels`, and the rest share `OTHER_ROOMS` (their gauges summed). A room that
    leaves the store's room list loses its series (`retain`, `forget_room`).
    """

    def __init__(self, room_labels: int = ROOM_LABELS) -> None:
        r = self.registry = CollectorRegistry()
        label = self.room_label
        self.waiting = PerRoom(
            Gauge("gatekeeper_room_waiting", "Visitors waiting in the room", ["room"], registry=r),
            label,
        )
        self.active = PerRoom(
            Gauge("gatekeeper_room_active", "Visitors active in the room", ["room"], registry=r),
            label,
        )
        self.capacity = PerRoom(
            Gauge(
                "gatekeeper_room_capacity",
                "Configured or live capacity of the room",
                ["room"],
                registry=r,
            ),
            label,
        )
        self.joins = PerRoom(
            Counter("gatekeeper_joins_total", "Sessions created", ["room", "admitted"], registry=r),
            label,
        )
        self.grants = PerRoom(
            Counter(
                "gatekeeper_grants_total",
                "Waiters admitted by the grant loop",
                ["room"],
                registry=r,
            ),
            label,
        )
        self.leaves = PerRoom(
            Counter(
                "gatekeeper_leaves_total",
                "Places released on purpose, by trigger (api, done_path, origin_command, revoke)",
                ["room", "reason"],
                registry=r,
            ),
            label,
        )
        self.expirations = PerRoom(Counter(
            "gatekeeper_expirations_total",
            "Sessions expired by the grant loop (active_lease: idle or unclaimed; "
            "waiting_timeout; closed)",
            ["room", "reason"],
            registry=r,
        ), label)  # fmt: skip
        self.ended = PerRoom(Counter(
            "gatekeeper_sessions_ended_total",
            "Sessions this process saw end, by reason: ended by its grant steps or polls, or "
            "left or revoked through it (a repeated leave of one session counts again)",
            ["room", "reason"],
            registry=r,
        ), label)  # fmt: skip
        self.store_errors = Counter(
            "gatekeeper_store_errors_total", "Failed store calls", ["operation"], registry=r
        )
        self._limit = room_labels
        self._configured: frozenset[str] = frozenset()
        self._labels: dict[str, str] = {}
        self._own = 0
        # Rooms labelled since the last `retain` (they may join the store's list only now).
        self._fresh: set[str] = set()
        # Gauge figures (waiting, active, capacity) of each room under OTHER_ROOMS, and sums.
        self._other: dict[str, tuple[int, int, int]] = {}
        self._sums = [0, 0, 0]
        self._hot = _PerRequest()
        r.register(self._hot)

    def set_configured(self, rooms: Collection[str]) -> None:
        """The configured rooms: each always has its own label."""
        self._configured = frozenset(rooms)

    def room_label(self, room: str) -> str:
        """The `room` label of a room: its own, or OTHER_ROOMS beyond the bound."""
        found = self._labels.get(room)
        if found is None:
            if room == OTHER_ROOMS:  # the shared label itself (no room id has a '~')
                return room
            found = room
            if room not in self._configured:
                if self._own < self._limit:
                    self._own += 1
                else:
                    found = OTHER_ROOMS
            self._labels[room] = found
            self._fresh.add(room)
        return found

    def retain(self, rooms: Collection[str]) -> None:
        """Drop the series of rooms not in `rooms` (the grant loop's work list, each tick)."""
        for room in [r for r in self._labels if r not in rooms and r not in self._fresh]:
            self.forget_room(room)
        self._fresh.clear()

    def forget_room(self, room: str) -> None:
        """Drop a forgotten room's series (a configured room keeps them)."""
        if room in self._configured:
            return
        label = self._labels.pop(room, None)
        if label is None:
            return
        if label == OTHER_ROOMS:
            self._set_other(room, None)
            return
        self._own -= 1
        for metric in (self.waiting, self.active, self.capacity):
            metric.remove(label)
        for counter in (self.joins, self.grants, self.leaves, self.expirations, self.ended):
            counter.remove(label)

    def _set_other(self, room: str, figures: tuple[int, int, int] | None) -> None:
        old = self._other.pop(room, (0, 0, 0))
        new = (0, 0, 0) if figures is None else figures
        if figures is not None:
            self._other[room] = figures
        for i, gauge in enumerate((self.waiting, self.active, self.capacity)):
            self._sums[i] += new[i] - old[i]
            gauge.labels(OTHER_ROOMS).set(self._sums[i])

    def joined(self, room: str, admitted: bool) -> None:
        """Count one new session (admitted at once or queued)."""
        self.joins.labels(room, "true" if admitted else "false").inc()

    def session_ended(self, room: str, reason: EndReason) -> None:
        """Count one session ended through this process (a leave or a revoke)."""
        self.ended.labels(room, reason.value).inc()

    def polled(self, ticket: Ticket) -> None:
        """Count the end of a session when this poll ended it (`Ticket.ended`)."""
        if ticket.ended and ticket.reason is not None:
            self.ended.labels(ticket.room, ticket.reason.value).inc()

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
        if self.room_label(room) == OTHER_ROOMS:
            self._set_other(room, (report.waiting, report.active, capacity))
        else:
            self.waiting.labels(room).set(report.waiting)
            self.active.labels(room).set(report.active)
            self.capacity.labels(room).set(capacity)
        if report.granted:
            self.grants.labels(room).inc(len(report.granted))
        if report.expired_active:
            self.expirations.labels(room, "active_lease").inc(report.expired_active)
        if report.expired_waiting > report.closed:
            silent = report.expired_waiting - report.closed
            self.expirations.labels(room, "waiting_timeout").inc(silent)
        if report.closed:
            self.expirations.labels(room, "closed").inc(report.closed)
        for reason, count in report.ended().items():
            self.ended.labels(room, reason.value).inc(count)

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
