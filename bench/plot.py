"""P6's plot: waiting, active and admitted visitors over time, and what the server went through."""

from __future__ import annotations

import math
from pathlib import Path


def p99_by_second(pages: list[list[float]]) -> tuple[list[float], list[float]]:
    """Waiting-page p99 latency (ms) in each one-second bucket of arrival time."""
    buckets: dict[int, list[float]] = {}
    for t, ms in pages:
        buckets.setdefault(int(t), []).append(ms)
    xs = sorted(buckets)
    ys = []
    for x in xs:
        values = sorted(buckets[x])
        ys.append(values[max(0, math.ceil(0.99 * len(values)) - 1)])
    return [x + 0.5 for x in xs], ys


def plot_crowd(
    timeline: list[list[float]], pages: list[list[float]], capacity: int, title: str, path: Path
) -> bool:
    """Draw the sampled timeline to `path`; False when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    t = [row[0] for row in timeline]
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(10, 8), dpi=110, sharex=True, gridspec_kw={"height_ratios": [3, 2]}
    )
    top.plot(t, [row[1] for row in timeline], label="waiting (server)", color="tab:orange")
    top.plot(t, [row[3] for row in timeline], label="admitted so far (clients)", color="tab:green")
    top.set_ylabel("visitors")
    right = top.twinx()
    right.plot(t, [row[2] for row in timeline], label="active (server)", color="tab:blue")
    right.axhline(capacity, color="tab:red", linestyle="--", linewidth=1, label="capacity")
    right.set_ylabel("active visitors")
    right.set_ylim(0, capacity * 1.25)
    lines, labels = top.get_legend_handles_labels()
    more, more_labels = right.get_legend_handles_labels()
    top.legend(lines + more, labels + more_labels, loc="lower right", ncol=2, fontsize="small")
    top.set_title(title)
    top.grid(alpha=0.3)
    bottom.plot(t, [100 * row[5] for row in timeline], color="tab:purple", label="gatekeeper CPU")
    bottom.set_ylabel("gatekeeper CPU, % of a core")
    bottom.set_ylim(0, 110)
    bottom.set_xlabel("seconds since the first arrival")
    bottom.grid(alpha=0.3)
    latency = bottom.twinx()
    xs, ys = p99_by_second(pages)
    latency.plot(xs, ys, color="tab:brown", marker=".", label="waiting page p99 (by arrival s)")
    latency.set_ylabel("waiting page p99, ms")
    latency.set_ylim(bottom=0)
    lines, labels = bottom.get_legend_handles_labels()
    more, more_labels = latency.get_legend_handles_labels()
    bottom.legend(lines + more, labels + more_labels, loc="upper right", fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True
