"""Black-box: a real `gatekeeper run` process served over HTTP, and `check-config`."""

from __future__ import annotations

import asyncio
import importlib.metadata
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import gatekeeper
from gatekeeper.cli import describe, main, version
from gatekeeper.config import load_config
from tests.config.support import ROOMS, load
from tests.conftest import unique_prefix
from tests.processes import gatekeeper_command, gatekeeper_process

PREFIX = "/api/waiting-room"
CAPACITY = 3


@pytest.fixture
def service(redis_url: str, tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes], Path]]:
    log = tmp_path / "gatekeeper.log"
    env = {
        "WAITINGROOM_PROCESSING_CAPACITY": str(CAPACITY),
        "WAITINGROOM_PROCESSING_RATE_MS": "50",
        "WAITINGROOM_REDIS_KEY_PREFIX": unique_prefix(),
    }
    with gatekeeper_process(["--redis-url", redis_url], env, log) as (base, proc):
        yield base, proc, log


async def wait_for(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


@pytest.mark.redis
async def test_many_joins_fill_exactly_capacity_and_leaving_lets_the_next_in(
    service: tuple[str, subprocess.Popen[bytes], Path],
) -> None:
    base, proc, log = service
    async with httpx.AsyncClient(base_url=base, timeout=5) as client:
        joins = await asyncio.gather(
            *(client.post(f"{PREFIX}/sessions", json={"eventId": "E1"}) for _ in range(40))
        )
        assert {r.status_code for r in joins} == {202}
        ids = [r.json()["sessionId"] for r in joins]

        async def poll_all() -> dict[str, dict[str, object]]:
            replies = await asyncio.gather(*(client.get(f"{PREFIX}/sessions/{s}") for s in ids))
            return {s: r.json() for s, r in zip(ids, replies, strict=True)}

        statuses = await poll_all()
        active = [s for s, b in statuses.items() if b["status"] == "ACTIVE"]
        waiting = sorted(
            (b["position"], s) for s, b in statuses.items() if b["status"] == "WAITING"
        )
        assert len(active) == CAPACITY
        assert len(waiting) == 40 - CAPACITY
        assert [p for p, _ in waiting] == list(range(40 - CAPACITY))

        leaver = active[0]
        assert (await client.post(f"{PREFIX}/sessions/{leaver}:leave")).status_code == 204
        next_in_line = waiting[0][1]

        async def next_admitted() -> bool:
            r = await client.get(f"{PREFIX}/sessions/{next_in_line}")
            return bool(r.json()["status"] == "ACTIVE")

        await wait_for(next_admitted)
        final = await poll_all()
        counts = {st: sum(b["status"] == st for b in final.values()) for st in ("ACTIVE", "LEFT")}
        assert counts == {"ACTIVE": CAPACITY, "LEFT": 1}
        assert final[waiting[1][1]]["position"] == 0

    proc.send_signal(signal.SIGTERM)
    # uvicorn re-raises the signal after its graceful shutdown, so -SIGTERM is a clean exit.
    assert proc.wait(timeout=15) in (0, -signal.SIGTERM)
    assert "grant loop stopped" in log.read_text()


def test_check_config_accepts_the_shipped_config_and_names_a_bad_key(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parent.parent
    ok = subprocess.run(
        [*gatekeeper_command(), "check-config", "--config", str(root / "config.yaml")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert ok.returncode == 0, ok.stderr
    assert "capacity" in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("waitingroom:\n  processing:\n    capacity: lots\n")
    failed = subprocess.run(
        [*gatekeeper_command(), "check-config", "--config", str(bad)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert failed.returncode == 2
    assert "waitingroom.processing.capacity" in failed.stderr


def test_describe_summarises_without_secrets(tmp_path: Path) -> None:
    s = load(
        tmp_path,
        ROOMS + "  redis: {url: 'redis://:hunter2hunter2@cache:6379/0'}\n"
        "  gate: {origin: 'https://shop.example.com'}\n",
        WAITINGROOM_ADMIN_TOKEN="admin-token-0123456789",
    )
    text = describe(s)
    assert "redis://cache:6379/0" in text and "hunter2" not in text
    assert "capacity 50" in text and "batch 5 every 200 ms" in text
    assert "black-friday (capacity 500, batch_size 50" in text and "listed rooms only" in text
    assert "proxying to https://shop.example.com" in text
    assert "admin token set" in text and "admin-token" not in text


def test_describe_defaults() -> None:
    text = describe(load_config(environ={}))
    assert "in-memory" in text and "API-only" in text and "overrides: none" in text


def test_a_misspelt_variable_stops_the_command_with_a_hint(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WAITINGROOM_PROCESSING_CAPACTY", "5")
    assert main(["check-config"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gatekeeper: config error: WAITINGROOM_PROCESSING_CAPACTY: unknown")
    assert "(did you mean 'WAITINGROOM_PROCESSING_CAPACITY'?)" in err


def test_the_config_path_variable_is_known(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = Path(__file__).resolve().parent.parent
    monkeypatch.setenv("WAITINGROOM_CONFIG", str(root / "config.yaml"))
    assert main(["check-config"]) == 0
    assert "capacity 100" in capsys.readouterr().out


def test_a_short_admin_token_stops_the_command_without_showing_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WAITINGROOM_ADMIN_TOKEN", "tiny-token")
    assert main(["check-config"]) == 2
    err = capsys.readouterr().err
    assert "WAITINGROOM_ADMIN_TOKEN" in err and "10 characters" in err
    assert "tiny-token" not in err


def test_more_than_one_worker_needs_redis(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "--workers", "2"]) == 2  # refused before anything is bound
    err = capsys.readouterr().err
    assert "waitingroom.server.workers is 2" in err and "waitingroom.redis.url" in err
    monkeypatch.setenv("WAITINGROOM_SERVER_WORKERS", "3")
    assert main(["check-config"]) == 2
    assert "server.workers is 3" in capsys.readouterr().err
    monkeypatch.setenv("WAITINGROOM_REDIS_URL", "redis://cache:6379/0")
    assert main(["check-config"]) == 0
    assert "on 127.0.0.1:8080, 3 workers" in capsys.readouterr().out


def test_run_help_documents_workers(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--workers N processes serving the one port (server.workers" in help_text


def test_version_prints_the_installed_distributions_version(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"gatekeeper {version()}\n"
    dists = importlib.metadata.packages_distributions().get("gatekeeper", [])
    if dists:  # installed (editable or not): the metadata's version, whatever the dist's name
        assert version() in {importlib.metadata.version(name) for name in dists}


def test_version_falls_back_to_the_package_without_metadata(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(importlib.metadata, "packages_distributions", lambda: {})
    assert version() == gatekeeper.__version__
