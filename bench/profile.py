"""Profile P1 with py-spy: the gated proxy and the gate-off proxy under the same wrk load.

    .venv/bin/pip install py-spy && .venv/bin/python -m bench.profile [--seconds 20]

Prints the gated proxy's top frames by own and total time, the gate's own share, and where the
gate's extra CPU per request goes (own time per request, gated minus gate off). The raw
collapsed stacks (for a flame graph) are kept in bench/results/<timestamp>/profile/.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from bench.p12_proxy import GATED_ENV
from bench.procs import LOAD_CPU, ROOT, BenchError, Procs
from bench.servers import admitted_cookie, start_gate_off, start_gated, start_origin, url
from bench.wrk import Target, parse

_LINE = re.compile(r":\d+\)$")
GATE = "Gate.__call__"
PROXY = "ReverseProxy.__call__"


@dataclass(frozen=True, slots=True)
class Profile:
    """Samples per frame (own = leaf, total = anywhere on the stack) and requests served."""

    own: Counter[str]
    total: Counter[str]
    gate_own: Counter[str]
    samples: int
    requests: float
    rate: int

    def us_per_request(self, samples: int) -> float:
        """CPU µs per request that `samples` stand for."""
        return samples / self.rate / self.requests * 1e6 if self.requests else 0.0


def load(raw: str, requests: float, rate: int) -> Profile:
    """Fold py-spy's collapsed stacks (line numbers dropped)."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    gate_own: Counter[str] = Counter()
    samples = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        samples += n
        frames = [_LINE.sub(")", f) for f in stack.split(";")]
        own[frames[-1]] += n
        for f in set(frames):
            total[f] += n
        if GATE in stack and PROXY not in stack:
            gate_own[frames[-1]] += n
    return Profile(own, total, gate_own, samples, requests, rate)


def report(gated: Profile, off: Profile, top: int = 20) -> str:
    """The gated proxy's top frames, the gate's own share, and the per-request difference."""
    if not gated.samples:
        return "no samples"
    n = gated.samples
    out = [f"gated proxy: {n} samples, {gated.us_per_request(n):.0f} µs CPU per request; "
           f"gate off: {off.us_per_request(off.samples):.0f} µs", "",
           f"top {top} by own time (gated):"]  # fmt: skip
    out += [f"  {c / n:6.1%}  {f}" for f, c in gated.own.most_common(top)]
    out += ["", f"top {top} by total time (gated; wrappers present in every sample left out):"]
    ranked = [(f, c) for f, c in gated.total.most_common() if c < 0.99 * n]
    out += [f"  {c / n:6.1%}  {f}" for f, c in ranked[:top]]
    share = sum(gated.gate_own.values())
    out += ["", f"the gate's own work (under {GATE}, outside {PROXY}): {share / n:.1%}, "
            f"{gated.us_per_request(share):.0f} µs per request"]  # fmt: skip
    out += [f"  {c / n:6.1%}  {f}" for f, c in gated.gate_own.most_common(top)]
    diff = {
        f: gated.us_per_request(gated.own[f]) - off.us_per_request(off.own[f])
        for f in set(gated.own) | set(off.own)
    }
    out += ["", f"own µs per request, gated minus gate off (top {top}):"]
    out += [f"  {d:+6.1f}  {f}" for f, d in sorted(diff.items(), key=lambda x: -x[1])[:top]]
    return "\n".join(out)


def profile(
    procs: Procs, name: str, target: Target, seconds: int, rate: int, spy: str, out: Path
) -> Profile:
    """py-spy on `name` while wrk drives `target` a little longer than the recording."""
    wrk = ["taskset", "-c", str(LOAD_CPU), "wrk", "-t1", "-c64", f"-d{seconds + 2}s",
           "--latency", *[x for h in target.headers for x in ("-H", h)], target.url]  # fmt: skip
    load_gen = subprocess.Popen(wrk, stdout=subprocess.PIPE, text=True)
    try:
        raw = out / f"{name}.collapsed.txt"
        record = ["taskset", "-c", str(LOAD_CPU), spy, "record", "--pid", str(procs.pid(name)),
                  "--duration", str(seconds), "--rate", str(rate), "--format", "raw",
                  "--output", str(raw)]  # fmt: skip
        done = subprocess.run(record, capture_output=True, timeout=seconds + 60)
        stdout, _ = load_gen.communicate(timeout=60)
    finally:
        if load_gen.poll() is None:
            load_gen.kill()
            load_gen.wait()
    if done.returncode != 0 or not raw.exists():
        raise BenchError(f"py-spy failed: {done.stderr.decode(errors='replace')}")
    (out / f"{name}.wrk.txt").write_text(stdout)
    return load(raw.read_text(), parse(stdout).rps * seconds, rate)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=20, help="profiling time per target")
    parser.add_argument("--rate", type=int, default=200, help="samples per second")
    args = parser.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        raise SystemExit("py-spy is not installed: .venv/bin/pip install py-spy")
    out = ROOT / "bench" / "results" / datetime.now().strftime("%Y%m%d-%H%M%S") / "profile"
    out.mkdir(parents=True, exist_ok=True)
    with Procs(out / "logs") as procs:
        origin = start_origin(procs)
        gated = start_gated(procs, origin, GATED_ENV)
        off = start_gate_off(procs, origin)
        header = (f"Cookie: {admitted_cookie(gated)}",)
        on = profile(procs, "gated", Target("gated", url(gated), header), args.seconds,
                     args.rate, spy, out)  # fmt: skip
        bare = profile(procs, "gate-off", Target("gate-off", url(off), header), args.seconds,
                       args.rate, spy, out)  # fmt: skip
    text = report(on, bare)
    (out / "profile.txt").write_text(text + "\n")
    print(f"P1 hot path: admitted visitor (fixed cookie), wrk -t1 -c64; raw stacks in {out}\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
