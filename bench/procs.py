"""Child processes of a run: pinned to a CPU, awaited until ready, and always stopped."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO

ROOT = Path(__file__).resolve().parent.parent
SERVER_CPU = 0
LOAD_CPU = 1


class BenchError(RuntimeError):
    """A scenario could not be measured (a server did not start, a check failed, ...)."""


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_ready(url: str) -> Callable[[], bool]:
    """A readiness check: true once `url` answers with any HTTP status."""

    def check() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False

    return check


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid`, from /proc (Linux)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue  # gone meanwhile
            # The command name in parentheses may hold spaces: fields start after the last ')'.
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment without the caller's WAITINGROOM_* settings, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAITINGROOM_")}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra or {})
    return env


class Procs:
    """The processes one scenario started; `with Procs(...)` stops them all on the way out.

    Each child runs in its own session (so a Ctrl-C reaches only the benchmark, which then
    stops its children in order) and writes its output to `<logdir>/<name>.log`.
    """

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self._procs: dict[str, tuple[subprocess.Popen[bytes], IO[bytes]]] = {}

    def __enter__(self) -> Procs:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_all()

    def start(
        self,
        name: str,
        cmd: list[str],
        *,
        cpu: int = SERVER_CPU,
        env: dict[str, str] | None = None,
        ready: Callable[[], bool] | None = None,
        timeout: float = 30.0,
    ) -> subprocess.Popen[bytes]:
        """Start `cmd` pinned to `cpu`; with `ready`, wait until it returns true."""
        if name in self._procs:
            raise BenchError(f"{name} is already running")
        self.logdir.mkdir(parents=True, exist_ok=True)
        log = (self.logdir / f"{name}.log").open("wb")
        proc = subprocess.Popen(
            ["taskset", "-c", str(cpu), *cmd],
            cwd=ROOT,
            env=child_env(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._procs[name] = (proc, log)
        if ready is None:
            return proc
        deadline = time.monotonic() + timeout
        while not ready():
            if proc.poll() is not None:
                raise BenchError(f"{name} exited with {proc.returncode}:\n{self.tail(name)}")
            if time.monotonic() > deadline:
                raise BenchError(f"{name} not ready within {timeout:.0f}s:\n{self.tail(name)}")
            time.sleep(0.05)
        return proc

    def run(self, name: str, cmd: list[str], *, cpu: int = LOAD_CPU, timeout: float) -> None:
        """Run `cmd` to completion (stopped if it overruns `timeout`); raise on failure."""
        proc = self.start(name, cmd, cpu=cpu)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop(name)
            raise BenchError(f"{name} overran {timeout:.0f}s:\n{self.tail(name)}") from None
        if code != 0:
            raise BenchError(f"{name} failed with {code}:\n{self.tail(name)}")

    def pid(self, name: str) -> int:
        """The process id of a running child (taskset execs the command in place)."""
        return self._procs[name][0].pid

    def cpu_seconds(self, name: str) -> float:
        """CPU time (user + system) a running child has used so far."""
        stat = Path(f"/proc/{self.pid(name)}/stat").read_text()
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def cpu_reader(self, *names: str) -> Callable[[], dict[str, float]]:
        """A callable returning the CPU seconds each named child has used so far."""
        return lambda: {n: self.cpu_seconds(n) for n in names}

    def tail(self, name: str, lines: int = 20) -> str:
        """The last lines of a child's log."""
        path = self.logdir / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, name: str) -> None:
        """SIGTERM the child's process group (nginx: master and workers), SIGKILL after 10 s."""
        entry = self._procs.pop(name, None)
        if entry is None:
            return
        proc, log = entry
        try:
            if proc.poll() is None:
                _signal_group(proc, signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    _signal_group(proc, signal.SIGKILL)
                    proc.wait()
        finally:
            log.close()

    def stop_all(self) -> None:
        """Stop every child, newest first; a Ctrl-C while stopping does not skip the rest."""
        while self._procs:
            name = next(reversed(self._procs))
            try:
                self.stop(name)
            except KeyboardInterrupt:
                continue


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    # The child leads its own session, so its process group id is its pid.
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
