"""Helpers for the browser tests: the demo as a subprocess, headless Chromium and page records."""

from __future__ import annotations

import asyncio
import html
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from gatekeeper.asgi import ASGIApp, Receive, Scope, Send, read_body
from gatekeeper.gate.proof import verify_proof
from tests.redis_server import free_port

try:
    from playwright.async_api import Browser, Page, Response, async_playwright
    from playwright.async_api import Error as PlaywrightError
except ImportError as exc:  # pragma: no cover - only without the test extras
    PLAYWRIGHT_IMPORT_ERROR: ImportError | None = exc
else:
    PLAYWRIGHT_IMPORT_ERROR = None

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_FLAGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
HOW_TO_GET_CHROMIUM = (
    "Browser tests drive the system Chromium through Playwright and cannot run without it.\n"
    "Install Chromium with `apt-get install chromium` (or `make system-deps`), install the test "
    "extras with `pip install -e '.[test]'`, or point CHROMIUM_PATH at a Chromium binary. "
    "(`playwright install` is not needed: the tests use the system browser.)"
)
DEMO_START_TIMEOUT_S = 30.0
AXE_SCRIPT = ROOT / "tests" / "js" / "node_modules" / "axe-core" / "axe.min.js"
HOW_TO_GET_AXE = (
    "The accessibility checks inject axe-core, pinned in tests/js/package-lock.json: run "
    "`make tests/js/node_modules/axe-core/axe.min.js` (or `cd tests/js && npm ci`)."
)
WAITING_MARK = 'id="gk-room"'
SITE_MARK = 'id="site-title"'


def chromium_path() -> str | None:
    """The Chromium binary to drive: $CHROMIUM_PATH, else chromium on PATH, else Debian's."""
    configured = os.environ.get("CHROMIUM_PATH")
    if configured:
        return configured if os.access(configured, os.X_OK) else None
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    default = "/usr/bin/chromium"
    return default if os.access(default, os.X_OK) else None


@asynccontextmanager
async def launch_chromium() -> AsyncIterator[Browser]:
    """Headless system Chromium; fails the test (never skips) when it cannot start."""
    if PLAYWRIGHT_IMPORT_ERROR is not None:
        pytest.fail(f"{HOW_TO_GET_CHROMIUM}\n\n{PLAYWRIGHT_IMPORT_ERROR}", pytrace=False)
    executable = chromium_path()
    if executable is None:
        pytest.fail(f"{HOW_TO_GET_CHROMIUM}\n\nNo Chromium binary found.", pytrace=False)
    try:
        playwright = await async_playwright().start()
    except Exception as exc:
        pytest.fail(f"{HOW_TO_GET_CHROMIUM}\n\nPlaywright did not start: {exc}", pytrace=False)
    try:
        browser = await playwright.chromium.launch(
            executable_path=executable, args=list(CHROMIUM_FLAGS), headless=True, timeout=60_000
        )
    except Exception as exc:
        await playwright.stop()
        pytest.fail(f"{HOW_TO_GET_CHROMIUM}\n\n{executable} did not launch: {exc}", pytrace=False)
    try:
        yield browser
    finally:
        try:
            await browser.close()
        finally:
            await playwright.stop()


@dataclass(frozen=True, slots=True)
class Demo:
    """A running `python -m examples.demo`: the gate at `url`, the site behind it."""

    url: str
    origin_url: str
    log: Path

    def log_tail(self, lines: int = 40) -> str:
        """The end of the demo's output, for failure messages."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


@contextmanager
def run_demo(
    workdir: Path, capacity: int, settings: dict[str, str] | None = None
) -> Iterator[Demo]:
    """Start the demo on free ports, wait until the gate is healthy, stop it afterwards.

    `settings` are WAITINGROOM_* environment variables for the demo's gate."""
    port, origin_port = free_port(), free_port()
    while origin_port == port:
        origin_port = free_port()
    log = workdir / "demo.log"
    # Hermetic: no WAITINGROOM_* from the caller's shell (a REDIS_URL, another capacity…).
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAITINGROOM_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(settings or {})
    command = [sys.executable, "-m", "examples.demo", "--port", str(port)]
    command += ["--origin-port", str(origin_port), "--capacity", str(capacity)]
    with log.open("wb") as log_file:
        proc = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        try:
            demo = Demo(f"http://localhost:{port}", f"http://127.0.0.1:{origin_port}", log)
            _wait_healthy(proc, demo)
            yield demo
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
            proc.wait()


def _wait_healthy(proc: subprocess.Popen[bytes], demo: Demo) -> None:
    deadline = time.monotonic() + DEMO_START_TIMEOUT_S
    with httpx.Client(timeout=2) as client:
        while True:
            try:
                if client.get(f"{demo.url}/_gatekeeper/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if proc.poll() is not None:
                pytest.fail(f"the demo exited with {proc.returncode}:\n{demo.log_tail()}")
            if time.monotonic() > deadline:
                pytest.fail(f"the demo was not healthy in {DEMO_START_TIMEOUT_S:.0f} s:\n"
                            f"{demo.log_tail()}")  # fmt: skip
            time.sleep(0.1)


@dataclass(slots=True)
class Landing:
    """One document the browser loaded in a page's main frame."""

    at: float  # time.monotonic() when the response headers arrived
    url: str
    status: int
    kind: str  # "waiting" (the gate's page), "site" (the origin), "redirect" or "unknown"


@dataclass
class PageRecord:  # no slots: Playwright stores a wrapper on the owner of a bound handler
    """Every main-frame document and status poll of one page, in order of arrival."""

    page: Page
    landings: list[Landing] = field(default_factory=list)
    polls: int = 0
    refused_polls: int = 0  # answered 4xx: a session the store does not know, among others
    _pending: set[asyncio.Task[None]] = field(default_factory=set)

    @classmethod
    def attach(cls, page: Page) -> PageRecord:
        """Start recording `page`; attach before its first navigation."""
        record = cls(page)
        page.on("response", record._on_response)
        return record

    def _on_response(self, response: Response) -> None:
        request = response.request
        if request.resource_type in ("fetch", "xhr") and "/sessions/" in request.url:
            self.polls += 1
            if 400 <= response.status < 500:
                self.refused_polls += 1
            return
        if request.resource_type != "document" or response.frame != self.page.main_frame:
            return
        task = asyncio.ensure_future(self._classify(time.monotonic(), response))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _classify(self, at: float, response: Response) -> None:
        kind = "unknown"
        if 300 <= response.status < 400:
            kind = "redirect"
        else:
            try:
                body = await response.text()
            except PlaywrightError:
                body = ""
            if WAITING_MARK in body:
                kind = "waiting"
            elif SITE_MARK in body:
                kind = "site"
        self.landings.append(Landing(at, response.url, response.status, kind))

    async def settled(self) -> list[Landing]:
        """All landings so far, oldest first, once their bodies have been read."""
        while self._pending:
            await asyncio.gather(*list(self._pending))
        return sorted(self.landings, key=lambda landing: landing.at)

    def count(self, kind: str) -> int:
        """How many documents of this kind have been classified so far."""
        return sum(landing.kind == kind for landing in self.landings)

    async def wait_for(
        self, condition: Callable[[PageRecord], bool], what: str, timeout_s: float = 15.0
    ) -> None:
        """Wait until `condition(self)` holds, failing the test after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while not condition(self):
            if time.monotonic() > deadline:
                pytest.fail(f"no {what} within {timeout_s:.0f} s:\n{self.describe()}")
            await asyncio.sleep(0.05)

    def describe(self) -> str:
        """The landings as text, for failure messages."""
        landings = sorted(self.landings, key=lambda landing: landing.at)
        start = landings[0].at if landings else 0.0
        lines = [
            f"  +{landing.at - start:6.2f} s  {landing.kind:8} {landing.status} {landing.url}"
            for landing in landings
        ]
        return "\n".join([*lines, f"  ({self.polls} status polls)"])


@contextmanager
def serve_in_thread(
    app: ASGIApp, start_timeout_s: float = 10.0, lifespan: str = "on"
) -> Iterator[str]:
    """`app` under uvicorn on a free port of 127.0.0.1, in a thread with its own event loop and
    the ASGI lifespan (a WaitingRoom starts its store and grant loop; "off" for a plain app);
    yields the base URL."""
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan=lifespan
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail(f"uvicorn did not start on port {port}")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


async def axe_violations(
    page: Page, impacts: tuple[str, ...] = ("serious", "critical")
) -> list[str]:
    """axe-core's violations of these impacts on the page as it is now, one line each (rule,
    impact, the first offending elements); fails the test when axe-core is not installed."""
    if not AXE_SCRIPT.is_file():
        pytest.fail(f"{HOW_TO_GET_AXE}\n\nNot found: {AXE_SCRIPT}", pytrace=False)
    await page.add_script_tag(path=str(AXE_SCRIPT))
    results = await page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at "
        + "; ".join(str(node["target"]) for node in v["nodes"][:3])
        for v in results["violations"]
        if v.get("impact") in impacts
    ]


PROOF = "p" * 32
"""The proof secret the browser tests' gatekeepers share with their `Shop`."""


class Shop:
    """The origin: answers every page with its title and what it received, and records it."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(scope, receive, 1 << 20)
        headers = {k.decode(): v.decode("latin-1") for k, v in scope["headers"]}
        seen = {
            "method": scope["method"],
            "path": scope["path"],
            "query": scope["query_string"].decode(),
            "body": body.decode(),
            "headers": headers,
        }
        self.seen.append(seen)
        echo = html.escape(json.dumps(seen))
        page = f'<!doctype html><h1 id="site-title">Shop</h1><pre id="echo">{echo}</pre>'
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/html; charset=utf-8")],
            }
        )
        await send({"type": "http.response.body", "body": page.encode()})

    def session(self, seen: dict[str, Any]) -> str | None:
        proof = seen["headers"]["x-gatekeeper-proof"]
        return verify_proof(PROOF.encode(), proof, now_s=int(time.time()))
