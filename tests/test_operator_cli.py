"""The operator commands against a real `gatekeeper run`: tables, --json, one-line errors."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from gatekeeper.cli import main
from tests.processes import gatekeeper_command, gatekeeper_process
from tests.redis_server import free_port

TOKEN = "operator-cli-test-token-0123456789abcdef"
API = "/api/waiting-room"
Run = tuple[int, str, str]
Gk = Callable[..., Run]


def _env() -> dict[str, str]:
    # The embedded store whatever the caller's shell says: each test names its own room.
    return {k: v for k, v in os.environ.items() if not k.startswith("WAITINGROOM_")}


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("operator") / "gatekeeper.log"
    env = {
        "WAITINGROOM_ADMIN_TOKEN": TOKEN,
        "WAITINGROOM_PROCESSING_CAPACITY": "1",
        "WAITINGROOM_PROCESSING_RATE_MS": "50",
    }
    with gatekeeper_process([], env, log) as (url, _):
        yield url


@pytest.fixture
def gk(base: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Gk:
    """`gk("room", "E1", ...)`: the command run in-process against `base`; (status, out, err)."""
    monkeypatch.setenv("WAITINGROOM_ADMIN_TOKEN", TOKEN)
    monkeypatch.delenv("GATEKEEPER_URL", raising=False)

    def run(*args: str) -> Run:
        capsys.readouterr()
        status = main([*args, "--url", base])
        captured = capsys.readouterr()
        return status, captured.out, captured.err

    return run


def join(base: str, room: str) -> str:
    reply = httpx.post(f"{base}{API}/sessions", json={"eventId": room}, timeout=5)
    assert reply.status_code == 202
    return str(reply.json()["sessionId"])


def field(text: str, label: str) -> str:
    """The value on a `label:  value` line of the room view."""
    found = re.search(rf"^{label}:\s+(.*)$", text, flags=re.MULTILINE)
    assert found, f"no {label!r} line in:\n{text}"
    return found.group(1)


def test_rooms_prints_a_table_and_the_json_answer(gk: Gk, base: str) -> None:
    join(base, "tables")
    join(base, "tables")
    status, out, err = gk("rooms")
    assert status == 0 and err == ""
    header, *rows = out.splitlines()
    assert header.split()[:4] == ["ROOM", "MODE", "WAITING", "ACTIVE"]
    row = next(r.split() for r in rows if r.startswith("tables "))
    assert row[:6] == ["tables", "open", "1", "1", "1", "10"]

    status, out, err = gk("rooms", "--json")
    assert status == 0
    view = next(r for r in json.loads(out)["rooms"] if r["room"] == "tables")
    assert (view["waiting"], view["active"], view["capacity"], view["mode"]) == (1, 1, 1, "open")


def test_room_shows_changes_and_resets_its_numbers(gk: Gk) -> None:
    status, out, _ = gk("room", "changes")
    assert status == 0
    assert field(out, "room") == "changes" and field(out, "capacity") == "1"
    assert field(out, "message") == "-"

    status, out, _ = gk(
        "room", "changes", "--capacity", "5", "--batch-size", "3", "--new-per-minute", "60",
        "--max-session", "600", "--message", "Extra seats at 8 pm",
    )  # fmt: skip
    assert status == 0
    assert field(out, "capacity") == "5 (set live)"
    assert field(out, "batch size") == "3 (set live)"
    assert field(out, "new per minute") == "60 (set live)"
    assert field(out, "max session") == "600s (set live)"
    assert field(out, "message") == "Extra seats at 8 pm"

    status, out, _ = gk("room", "changes", "--json")
    view = json.loads(out)
    assert (view["capacity"], view["batchSize"], view["newVisitorsPerMinute"]) == (5, 3, 60)
    assert view["maxSessionSeconds"] == 600
    assert view["controls"]["message"] == "Extra seats at 8 pm"

    status, out, _ = gk("room", "changes", "--capacity", "default", "--message", "", "--json")
    view = json.loads(out)
    assert view["capacity"] == 1 and "capacity" not in view["controls"]
    assert "message" not in view["controls"]


@pytest.mark.parametrize(
    ("command", "mode"),
    [
        ("pause", "paused"),
        ("resume", "open"),
        ("queue-all", "queue-all"),
        ("passthrough", "passthrough"),
        ("close", "closed"),
        ("reopen", "open"),
    ],
)
def test_mode_commands_set_the_mode(gk: Gk, command: str, mode: str) -> None:
    room = f"mode-{command}"
    status, out, _ = gk(command, room)
    assert status == 0
    assert field(out, "mode").split()[0] == mode
    status, out, _ = gk("room", room, "--json")
    assert json.loads(out)["mode"] == mode


def test_revoke_ends_the_session_and_an_unknown_one_is_404(gk: Gk, base: str) -> None:
    session = join(base, "revokes")
    status, out, err = gk("revoke", session)
    assert (status, out, err) == (0, f"revoked {session}\n", "")
    state = httpx.get(f"{base}{API}/sessions/{session}", timeout=5).json()
    assert state["status"] == "EXPIRED"

    other = join(base, "revokes")
    status, out, _ = gk("revoke", other, "--json")
    assert json.loads(out) == {"session": other, "revoked": True}

    status, out, err = gk("revoke", "AAAAAAAAAAAAAAAAAAAAAA.revokes")
    assert status == 1 and out == ""
    assert err == "gatekeeper: 404 not_found: unknown session\n"


def test_audit_lists_the_newest_actions(gk: Gk) -> None:
    gk("pause", "audited")
    gk("room", "audited", "--capacity", "7")
    status, out, _ = gk("audit", "--limit", "2")
    assert status == 0
    header, *rows = out.splitlines()
    assert header.split() == ["TIME", "(UTC)", "ACTION", "ROOM", "ACTOR", "DETAIL"]
    assert len(rows) == 2
    assert rows[0].split()[2:5] == ["room", "audited", "admin@127.0.0.1"]
    assert rows[0].endswith('{"capacity":"7"}') and rows[1].endswith('{"mode":"paused"}')

    status, out, _ = gk("audit", "--limit", "1", "--json")
    (entry,) = json.loads(out)["entries"]
    assert entry["room"] == "audited" and entry["action"] == "room"

    status, out, err = gk("audit", "--limit", "0")
    assert status == 2 and err == "gatekeeper: --limit: 1..1000, not 0\n"


def test_a_wrong_token_is_one_line_and_a_failure(gk: Gk, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WAITINGROOM_ADMIN_TOKEN", "not-the-token-" + "x" * 30)
    status, out, err = gk("rooms")
    assert status == 1 and out == ""
    assert err == (
        "gatekeeper: 401 unauthorized: bearer token required "
        "(is WAITINGROOM_ADMIN_TOKEN the server's admin token?)\n"
    )
    monkeypatch.delenv("WAITINGROOM_ADMIN_TOKEN")
    status, out, err = gk("rooms")
    assert (
        status == 2
        and err == "gatekeeper: set WAITINGROOM_ADMIN_TOKEN to the server's admin token\n"
    )


def test_a_value_the_api_refuses_is_its_message(gk: Gk) -> None:
    status, out, err = gk("room", "refused", "--capacity", "0")
    assert status == 1 and out == ""
    assert err == "gatekeeper: 400 bad_request: capacity: an integer 1..10000000, or null\n"


def test_bad_arguments_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    for args in (["room", "no/such"], ["room", "x", "--capacity", "many"], ["revoke", "bad"]):
        with pytest.raises(SystemExit) as exit_:
            main(args)
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1 and "(see gatekeeper " in err
    assert main(["rooms", "--url", "ftp://example.com"]) == 2
    err = capsys.readouterr().err
    assert err == "gatekeeper: --url: not an http(s) URL: 'ftp://example.com'\n"


def test_no_server_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WAITINGROOM_ADMIN_TOKEN", TOKEN)
    url = f"http://127.0.0.1:{free_port()}"
    assert main(["rooms", "--url", url]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"gatekeeper: cannot reach {url}/_gatekeeper/admin: Connection refused\n"


def test_a_server_that_never_answers_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WAITINGROOM_ADMIN_TOKEN", TOKEN)
    with socket.socket() as silent:  # the kernel completes the handshake; nobody reads
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        assert main(["rooms", "--url", url, "--timeout", "0.3"]) == 1
    assert capsys.readouterr().err == (
        f"gatekeeper: no answer from {url}/_gatekeeper/admin: timed out\n"
    )


def test_a_server_without_a_token_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WAITINGROOM_ADMIN_TOKEN", TOKEN)
    with gatekeeper_process([], {"WAITINGROOM_ADMIN_TOKEN": ""}, tmp_path / "log") as (url, _):
        assert main(["rooms", "--url", url]) == 1
    assert capsys.readouterr().err == (
        "gatekeeper: 404 not_found: the admin API is disabled "
        "(the server has no admin token: set WAITINGROOM_ADMIN_TOKEN where it runs)\n"
    )


def test_the_installed_command_reads_its_url_from_the_environment(base: str) -> None:
    env = {**_env(), "WAITINGROOM_ADMIN_TOKEN": TOKEN, "GATEKEEPER_URL": base}
    done = subprocess.run(
        [*gatekeeper_command(), "rooms"], env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0 and done.stdout.startswith("ROOM ")
    env["GATEKEEPER_URL"] = f"http://127.0.0.1:{free_port()}"
    done = subprocess.run(
        [*gatekeeper_command(), "audit"], env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("gatekeeper: cannot reach ") and done.stderr.count("\n") == 1
