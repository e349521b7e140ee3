"""wrk runs (1 thread, 64 connections, pinned to the load CPU) and side-by-side alternation."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import statistics
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.procs import LOAD_CPU, BenchError

THREADS = 1
CONNECTIONS = 64
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


@dataclass(frozen=True, slots=True)
class Target:
    """One thing to drive: a URL, extra headers, an optional wrk Lua script, and optionally
    how to read the CPU seconds its server process has used (for CPU per request)."""

    name: str
    url: str
    headers: tuple[str, ...] = ()
    script: Path | None = None
    cpu: Callable[[], dict[str, float]] | None = None


@dataclass(frozen=True, slots=True)
class Result:
    """What one wrk run reported."""

    rps: float
    requests: int
    p50_ms: float
    p99_ms: float
    non2xx: int
    socket_errors: int

    @property
    def clean(self) -> bool:
        """True when every response was 2xx/3xx and no socket error happened."""
        return self.non2xx == 0 and self.socket_errors == 0


@dataclass(slots=True)
class Series:
    """Every run of one target, in the order measured."""

    target: Target
    runs: list[Result] = field(default_factory=list)
    cpu_s: dict[str, float] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        """Median requests/s."""
        return statistics.median(r.rps for r in self.runs)

    @property
    def requests(self) -> int:
        """Requests completed over all measured runs."""
        return sum(r.requests for r in self.runs)

    @property
    def cpu_us(self) -> float:
        """Server CPU µs per request over the measured runs, all its processes (0: untracked)."""
        return sum(self.cpu_us_of(name) for name in self.cpu_s)

    def cpu_us_of(self, process: str) -> float:
        """CPU µs per request of one of the target's server processes."""
        return self.cpu_s.get(process, 0.0) / self.requests * 1e6 if self.requests else 0.0

    def as_dict(self) -> dict[str, object]:
        """The raw numbers, for series.json."""
        return {
            "url": self.target.url,
            "median_rps": self.rps,
            "runs": [asdict(r) for r in self.runs],
            "cpu_us_per_request": {p: self.cpu_us_of(p) for p in self.cpu_s},
        }


def parse(out: str) -> Result:
    """Parse wrk's report (run with --latency)."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    if rps is None or total is None:
        raise BenchError(f"unexpected wrk output:\n{out}")
    latency = {
        m[0]: float(m[1]) * _UNITS[m[2]] for m in re.findall(r"(\d+)%\s+([\d.]+)(us|ms|s|m)\b", out)
    }
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return Result(
        rps=float(rps.group(1)),
        requests=int(total.group(1)),
        p50_ms=latency.get("50", 0.0),
        p99_ms=latency.get("99", 0.0),
        non2xx=int(non2xx.group(1)) if non2xx else 0,
        socket_errors=sum(int(x) for x in sock.groups()) if sock else 0,
    )


def run(target: Target, seconds: float, save: Path | None = None) -> Result:
    """One wrk run against `target`; the raw report is saved to `save` when given."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise BenchError("wrk is not installed (make system-deps)")
    cmd = ["taskset", "-c", str(LOAD_CPU), wrk, f"-t{THREADS}", f"-c{CONNECTIONS}",
           f"-d{max(1, round(seconds))}s", "--timeout", "10s", "--latency"]  # fmt: skip
    for h in target.headers:
        cmd += ["-H", h]
    if target.script is not None:
        cmd += ["-s", str(target.script)]
    cmd.append(target.url)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    if done.returncode != 0:
        raise BenchError(f"wrk failed ({done.returncode}): {done.stderr}\n{done.stdout}")
    if save is not None:
        save.parent.mkdir(parents=True, exist_ok=True)
        save.write_text(shlex.join(cmd) + "\n\n" + done.stdout)
    return parse(done.stdout)


def alternate(
    targets: list[Target],
    *,
    seconds: float,
    rounds: int,
    warmup: float,
    save_dir: Path,
) -> dict[str, Series]:
    """Measure targets side by side, A B C C B A per round, so that drift cancels out.

    Each target first gets a short unrecorded warm-up run. Any non-2xx response or socket
    error fails the scenario: a ratio over broken answers would be meaningless. The raw
    numbers go to `save_dir/series.json`.
    """
    for t in targets:
        run(t, warmup, save_dir / f"warmup-{t.name}.txt")
    series = {t.name: Series(t) for t in targets}
    order = targets + targets[::-1]
    for r in range(rounds):
        for i, t in enumerate(order):
            cpu_before = t.cpu() if t.cpu else {}
            result = run(t, seconds, save_dir / f"{t.name}-r{r}-{i}.txt")
            if t.cpu:
                used = series[t.name].cpu_s
                for process, seconds_now in t.cpu().items():
                    used[process] = used.get(process, 0.0) + seconds_now - cpu_before[process]
            if not result.clean:
                raise BenchError(
                    f"{t.name}: {result.non2xx} non-2xx responses, "
                    f"{result.socket_errors} socket errors (see {save_dir})"
                )
            series[t.name].runs.append(result)
    raw = {name: s.as_dict() for name, s in series.items()}
    (save_dir / "series.json").write_text(json.dumps(raw, indent=2))
    return series
