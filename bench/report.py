"""The run's context, result rows, the summary table, and docs/performance.md."""

from __future__ import annotations

import os
import platform
import re
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.procs import ROOT, BenchError
from bench.servers import nginx_binary

DOC = ROOT / "docs" / "performance.md"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


@dataclass(frozen=True, slots=True)
class Context:
    """Settings of one run, shared by every scenario."""

    out: Path
    quick: bool
    seconds: float
    rounds: int
    warmup: float

    def dir(self, name: str) -> Path:
        """A scenario's own directory under the run's results."""
        path = self.out / name
        path.mkdir(parents=True, exist_ok=True)
        return path


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the summary: what was measured, the figure, its target, pass or miss."""

    scenario: str
    what: str
    measured: str
    target: str = ""
    ok: bool | None = None
    value: float | None = None
    error: bool = False

    def as_dict(self) -> dict[str, object]:
        """For results.json."""
        return asdict(self)


def ratio_row(scenario: str, what: str, a: float, b: float, floor: float | None) -> Row:
    """A ratio a/b of two req/s medians, against a floor when there is one."""
    value = a / b if b else 0.0
    measured = f"**{value:.2f}** ({a:,.0f} / {b:,.0f} req/s)"
    if floor is None:
        return Row(scenario, what, measured, "—", None, value)
    return Row(scenario, what, measured, f"≥ {floor:.2f}", value >= floor, value)


def error_row(scenario: str, exc: BaseException) -> Row:
    """A scenario that could not be measured."""
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return Row(scenario, "not measured", f"error: {message}", "", None, error=True)


def table(rows: list[Row]) -> str:
    """The summary as a Markdown table (readable as plain text too)."""
    lines = ["| | measured side by side | result | target | |", "|---|---|---|---|---|"]
    for r in rows:
        mark = "**ERROR**" if r.error else "" if r.ok is None else "pass" if r.ok else "**MISS**"
        lines.append(f"| {r.scenario} | {r.what} | {r.measured} | {r.target} | {mark} |")
    return "\n".join(lines)


def _cmd(*args: str) -> str:
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=10)
    except OSError:
        return "not found"
    return (done.stdout + done.stderr).strip().splitlines()[0] if done.stdout + done.stderr else ""


def machine() -> dict[str, str]:
    """What the numbers were measured on."""
    cpu = "unknown"
    try:
        found = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
        cpu = found.group(1).strip() if found else cpu
    except OSError:
        pass
    redis_version = re.search(r"v=(\S+)", _cmd("redis-server", "--version"))
    try:
        nginx = _cmd(nginx_binary(), "-v").replace("nginx version: ", "")
    except BenchError:
        nginx = "not found"
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "nginx": nginx,
        "redis": redis_version.group(1) if redis_version else "unknown",
        "wrk": _cmd("wrk", "--version").split(" [")[0],
        "load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def summary(rows: list[Row], info: dict[str, str], command: str, when: str, out: Path) -> str:
    """The generated part of docs/performance.md."""
    facts = "\n".join(f"- {k}: {v}" for k, v in info.items())
    try:
        where = out.relative_to(ROOT)
    except ValueError:
        where = out
    return (
        f"{BEGIN}\n"
        f"### Last run: {when}\n\n"
        f"Command: `{command}` — raw numbers, wrk reports, logs and the P6 plot in `{where}/`\n"
        f"(git-ignored).\n\n{facts}\n\n{table(rows)}\n{END}"
    )


def write_doc(section: str) -> None:
    """Replace the generated section of docs/performance.md (create the file if needed)."""
    text = DOC.read_text() if DOC.exists() else f"# Performance\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        text = text.rstrip() + f"\n\n{BEGIN}\n{END}\n"
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    DOC.write_text(head + section + tail)
