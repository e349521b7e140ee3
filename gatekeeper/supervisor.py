"""`server.workers` > 1: one port, forked workers, restarts and a graceful drain."""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from secrets import token_urlsafe
from typing import NoReturn

from gatekeeper.config.settings import Settings
from gatekeeper.errors import ConfigError

log = logging.getLogger("gatekeeper.supervisor")

Worker = Callable[[socket.socket], None]
"""What a worker runs: serve on its listening socket until told to stop."""

STARTUP_FAILURE = 3
"""uvicorn's exit code for a server that could not start: a restart would fail the same way."""
_SIGNALS = {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT}
# A worker that dies this soon after its start is in a crash loop: pause before the next one.
_QUICK_DEATH_S = 1.0
_RESTART_PAUSE_S = 1.0
# Beyond `server.graceful-timeout`: time for the lifespan's shutdown before SIGKILL.
_STOP_MARGIN_S = 5.0
_PR_SET_PDEATHSIG = 1


def check_workers(settings: Settings) -> None:
    """Refuse more than one worker on the embedded store: each would hold rooms of its own."""
    workers = settings.server.workers
    if workers > 1 and settings.redis.in_memory:
        raise ConfigError(
            f"waitingroom.server.workers is {workers}, but waitingroom.redis.url names no Redis: "
            "the embedded store lives inside one process, so each worker would have rooms, "
            "capacity and queue of its own; set redis.url to a Redis the workers share, or "
            "server.workers to 1"
        )


def share_cookie_key(settings: Settings) -> Settings:
    """`settings` with one cookie key for every worker when none is configured (each worker
    would otherwise draw its own, and a visitor would lose their place moving between them)."""
    if settings.cookie_keys:
        return settings
    if settings.gate.origin:
        logging.getLogger("gatekeeper.gate").warning(
            "WAITINGROOM_GATE_COOKIE_KEYS is not set: using a random key (shared by the "
            "workers), so cookies do not survive a restart and replicas cannot share visitors"
        )
    return replace(settings, cookie_keys=(token_urlsafe(32),))


def reserve(host: str, port: int) -> socket.socket:
    """The port, bound once by the supervisor (so port 0 names one port for every worker) and
    never listened on: each worker listens on a socket of its own beside it (`bind_beside`).

    With one shared listening socket, whichever worker wakes first accepts a whole burst of
    connections (uvloop accepts until the queue is empty), so a flash crowd could land on one
    worker; with a socket per worker (SO_REUSEPORT) the kernel spreads connections over them.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        # Only now: bound without it, the port is refused when anything holds it already
        # (another gatekeeper's workers too), instead of silently sharing its connections.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    except OSError:
        sock.close()
        raise
    return sock


def bind_beside(reserved: socket.socket) -> socket.socket:
    """A worker's socket on the reserved address (only processes of the same user can join a
    SO_REUSEPORT group). It is not listening yet: uvicorn listens once the app has started,
    so no connection waits in the queue of a worker that cannot answer it yet."""
    sock = socket.socket(reserved.family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(reserved.getsockname())
    except OSError:
        sock.close()
        raise
    return sock


@dataclass(slots=True)
class _Slot:
    """One worker place: the process in it now, when it started, when to start the next."""

    index: int
    pid: int = 0
    started: float = 0.0
    restart_at: float | None = None


class Supervisor:
    """Forks `count` workers on the port `sock` reserves, replaces any that dies, drains them
    all on SIGTERM or SIGINT (a second SIGINT forces them), and returns the exit code: 0 after
    a clean drain."""

    def __init__(self, sock: socket.socket, count: int, worker: Worker, grace: float) -> None:
        self.sock = sock
        self.worker = worker
        self.slots = [_Slot(i + 1) for i in range(count)]
        self.stop_timeout = grace + _STOP_MARGIN_S
        self.draining = False
        self.deadline = 0.0
        self.code = 0

    def run(self) -> int:
        """Supervise until every worker has stopped after a stop signal."""
        # Signals wait in the kernel until sigtimedwait takes them: none is lost while forking,
        # and nothing runs inside a signal handler.
        signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        host, port = self.sock.getsockname()[:2]
        log.info(
            "supervisor (pid %d) serving %s port %d with %d workers",
            os.getpid(),
            host,
            port,
            len(self.slots),
        )
        try:
            for slot in self.slots:
                self._start(slot)
            while not self.draining or any(s.pid for s in self.slots):
                info = signal.sigtimedwait(_SIGNALS, self._timeout())
                if info is not None and info.si_signo != signal.SIGCHLD:
                    self._stop_signal(info.si_signo)
                self._reap()
                self._restart_due()
                if self.draining and time.monotonic() > self.deadline:
                    self._kill_the_rest()
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
            self.sock.close()
        log.info("supervisor stopped, exit code %d", self.code)
        return self.code

    def _timeout(self) -> float:
        now = time.monotonic()
        due = [s.restart_at for s in self.slots if s.restart_at is not None]
        if self.draining:
            due.append(self.deadline)
        return max(0.01, min([now + 1.0, *due]) - now)

    def _start(self, slot: _Slot) -> None:
        slot.restart_at = None
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            self._child(parent)
        slot.pid, slot.started = pid, time.monotonic()
        log.info("worker %d started (pid %d)", slot.index, pid)

    def _child(self, parent: int) -> NoReturn:
        """The worker's side of the fork: serve, then leave without running the parent's code."""
        code = 1
        try:
            _die_with(parent)
            for sig in _SIGNALS:
                signal.signal(sig, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
            own = bind_beside(self.sock)
            self.sock.close()
            self.worker(own)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            log.exception("worker failed")
        finally:
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

    def _stop_signal(self, signo: int) -> None:
        if self.draining:
            if signo == signal.SIGINT:  # a second Ctrl-C: uvicorn stops waiting for requests
                log.warning("SIGINT again: forcing the workers to stop")
                self._signal_all(signal.SIGINT)
            return
        log.info("%s: draining the workers", signal.Signals(signo).name)
        self._drain()

    def _drain(self) -> None:
        self.draining = True
        self.deadline = time.monotonic() + self.stop_timeout
        for slot in self.slots:
            slot.restart_at = None
        self._signal_all(signal.SIGTERM)

    def _signal_all(self, signo: int) -> None:
        for slot in self.slots:
            if slot.pid:
                try:
                    os.kill(slot.pid, signo)
                except ProcessLookupError:
                    pass  # exited; reaped on the next round

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            slot = next((s for s in self.slots if s.pid == pid), None)
            if slot is not None:
                slot.pid = 0
                self._exited(slot, pid, os.waitstatus_to_exitcode(status))

    def _exited(self, slot: _Slot, pid: int, code: int) -> None:
        how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with {code}"
        if self.draining:
            # uvicorn re-raises the stop signal after its graceful shutdown.
            clean = code in (0, -signal.SIGTERM, -signal.SIGINT)
            if clean:
                log.info("worker %d (pid %d) stopped", slot.index, pid)
            else:
                log.error("worker %d (pid %d) %s while stopping", slot.index, pid, how)
            self.code = self.code or (0 if clean else 1)
            return
        if code == STARTUP_FAILURE:
            log.error("worker %d (pid %d) could not start: stopping", slot.index, pid)
            self.code = 1
            self._drain()
            return
        log.warning("worker %d (pid %d) %s: starting a new one", slot.index, pid, how)
        if time.monotonic() - slot.started < _QUICK_DEATH_S:
            slot.restart_at = time.monotonic() + _RESTART_PAUSE_S
        else:
            self._start(slot)

    def _restart_due(self) -> None:
        now = time.monotonic()
        for slot in self.slots:
            if slot.restart_at is not None and slot.restart_at <= now and not self.draining:
                self._start(slot)

    def _kill_the_rest(self) -> None:
        for slot in self.slots:
            if slot.pid:
                log.error("worker %d (pid %d) still running: SIGKILL", slot.index, slot.pid)
        self._signal_all(signal.SIGKILL)
        self.code = 1
        self.deadline = float("inf")


def _die_with(parent: int) -> None:
    """Have the kernel send SIGTERM (a drain) to this worker if the supervisor dies (Linux)."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        except (OSError, AttributeError):
            return
    if os.getppid() != parent:  # the supervisor died before prctl took effect
        os._exit(0)
