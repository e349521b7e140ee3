"""Instructions per request under callgrind: the same count whatever else the machine does."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def instructions(module: str, args: list[str]) -> int:
    """Instructions callgrind counts for a whole run of `python -m module *args`."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable,
               "-m", module, *args]  # fmt: skip
        subprocess.run(cmd, check=True, capture_output=True)
        totals = [line for line in out.read_text().splitlines() if line.startswith("totals:")]
        return int(totals[0].split()[1])


def per_request(module: str, args: list[str], requests: int) -> float:
    """Instructions per request of `python -m module *args --requests N`, from two runs of
    different lengths so that start-up cancels out."""
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    short, long = requests // 5, requests
    counts = [instructions(module, [*args, "--requests", str(n)]) for n in (short, long)]
    return (counts[1] - counts[0]) / (long - short)
