"""`gatekeeper run` as a real process for tests: started, waited for until ready, killed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.redis_server import free_port


def gatekeeper_command() -> list[str]:
    script = Path(sys.executable).with_name("gatekeeper")
    if script.exists():
        return [str(script)]
    found = shutil.which("gatekeeper")
    return [found] if found else [sys.executable, "-m", "gatekeeper"]


@contextmanager
def gatekeeper_process(
    args: Sequence[str], env: Mapping[str, str], log: Path, ready: str = "/readyz"
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`gatekeeper run --port <free> *args` with `env` over ours; yields its base URL and process
    once `ready` answers 200 (stderr goes to `log`)."""
    port = free_port()
    command = [*gatekeeper_command(), "run", "--port", str(port), *args]
    with log.open("wb") as log_file:  # the child keeps its own copy
        proc = subprocess.Popen(
            command, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=log_file
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(proc, base + ready, log, "gatekeeper run")
        yield base, proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def wait_until_ready(proc: subprocess.Popen[bytes], url: str, log: Path, what: str) -> None:
    """Until `url` answers 200; the test fails with `log` when `proc` exits or 20 s pass."""
    deadline = time.monotonic() + 20
    while True:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"{what} did not come up:\n{log.read_text()}")
        time.sleep(0.05)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it is still there after 10 s."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
