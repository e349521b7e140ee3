"""`gatekeeper rooms | room | pause … | revoke | audit`: the operator API from the command line."""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from gatekeeper.ids import ROOM_ID, room_of

TOKEN_VAR = "WAITINGROOM_ADMIN_TOKEN"
# Not a WAITINGROOM_* name: `gatekeeper run` refuses unknown variables of that family, and an
# operator's shell that has this one set must still be able to start a server.
URL_VAR = "GATEKEEPER_URL"
DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_PREFIX = "/_gatekeeper/admin"
MODE_ACTIONS = {
    "pause": "stop admitting (waiters keep their places)",
    "resume": "admit again (open)",
    "queue-all": "hold everyone, admitted visitors too (503 page)",
    "passthrough": "let everyone through, still counted",
    "close": "sold out: refuse joins, send waiters away",
    "reopen": "undo close (the same as resume)",
}
# `gatekeeper room` option (its argparse dest) → field of PATCH /rooms/{room}.
_ROOM_FIELDS = {
    "capacity": "capacity",
    "batch_size": "batchSize",
    "new_per_minute": "newVisitorsPerMinute",
    "max_session": "maxSessionSeconds",
    "message": "message",
}
# Control-hash fields the room view explains by name; any other (an event's) is listed as is.
_SHOWN_CONTROLS = {"capacity", "batch-size", "per-minute", "max-session", "message", "mode"}
_MAX_ERROR_BODY = 65_536
_USAGE = 2  # the exit status of a command given wrongly, as argparse uses


class OperatorError(Exception):
    """A failure told as one line on stderr; `status` is the exit status."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Client:
    """The admin API of one running gatekeeper (urllib: the CLI adds no dependency)."""

    base: str
    token: str
    timeout: float

    def call(self, method: str, path: str, body: dict[str, object] | None = None) -> dict[str, Any]:
        """The JSON object answered ({} for no body); OperatorError for anything else."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.token}")
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:  # before URLError: it is one
            raise OperatorError(_api_error(exc)) from None
        except urllib.error.URLError as exc:
            raise OperatorError(f"cannot reach {self.base}: {_reason(exc.reason)}") from None
        except (OSError, http.client.HTTPException) as exc:  # a timeout or reset mid-answer
            raise OperatorError(f"no answer from {self.base}: {_reason(exc)}") from None
        if not raw:
            return {}
        try:
            answer = json.loads(raw)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise OperatorError(
                f"{self.base}{path} answered no JSON object: is it gatekeeper's admin API?"
            )
        return answer


def _reason(reason: object) -> str:
    if isinstance(reason, TimeoutError):
        return "timed out"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason) or type(reason).__name__


def _api_error(exc: urllib.error.HTTPError) -> str:
    """`401 unauthorized: bearer token required (…)`: the status, the API's code and message."""
    try:
        error = json.loads(exc.read(_MAX_ERROR_BODY))["error"]
        what = f"{error['code']}: {error['message']}"
    except (ValueError, KeyError, TypeError, OSError):
        what = str(exc.reason)  # not the API's error shape: another server at that address?
    hint = ""
    if exc.code == 401:
        hint = f" (is {TOKEN_VAR} the server's admin token?)"
    elif "admin API is disabled" in what:
        hint = f" (the server has no admin token: set {TOKEN_VAR} where it runs)"
    return f"{exc.code} {what}{hint}"


def _setting(text: str) -> int | None:
    """An integer setting, or `default` for null: back to the configured value."""
    if text == "default":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"an integer or 'default', not {text!r}") from None


def _room_name(text: str) -> str:
    if not ROOM_ID.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"not a room name: {text!r} (1 to 64 letters, digits, '_', '.' or '-')"
        )
    return text


def _session_id(text: str) -> str:
    if room_of(text) is None:
        raise argparse.ArgumentTypeError(f"not a session id: {text!r} (<token>.<room>)")
    return text


def add_commands(commands: argparse._SubParsersAction[Any]) -> None:
    """Add the operator subcommands to the `gatekeeper` command."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--url",
        default=os.environ.get(URL_VAR) or DEFAULT_URL,
        help=f"the running gatekeeper (default: ${URL_VAR}, else {DEFAULT_URL}); the token "
        f"comes from ${TOKEN_VAR}",
    )
    common.add_argument(
        "--admin-prefix", metavar="PATH", default=DEFAULT_PREFIX, help="the server's admin.prefix"
    )
    common.add_argument("--json", action="store_true", help="print the API's JSON answer")
    common.add_argument(
        "--timeout", type=float, default=10.0, metavar="SECONDS", help="per request (default 10)"
    )
    commands.add_parser("rooms", parents=[common], help="list rooms with live figures")
    room = commands.add_parser(
        "room", parents=[common], help="show a room; with options, change it first"
    )
    room.add_argument("room", type=_room_name)
    numbers = (
        ("--capacity", "N", "most visitors admitted at once"),
        ("--batch-size", "N", "most admitted per grant step"),
        ("--new-per-minute", "N", "most admitted per minute (0: no limit)"),
        ("--max-session", "SECONDS", "a session ends this long after its grant (0: no cap)"),
    )  # fmt: skip
    for flag, metavar, what in numbers:
        room.add_argument(
            flag, type=_setting, metavar=metavar, default=argparse.SUPPRESS,
            help=f"{what}; 'default' goes back to the configured value",
        )  # fmt: skip
    room.add_argument(
        "--message", metavar="TEXT", default=argparse.SUPPRESS,
        help="shown to every waiter (plain text, 500 characters at most); '' clears it",
    )  # fmt: skip
    for action, what in MODE_ACTIONS.items():
        sub = commands.add_parser(action, parents=[common], help=what)
        sub.add_argument("room", type=_room_name)
    revoke = commands.add_parser("revoke", parents=[common], help="end a session, free its place")
    revoke.add_argument("session", type=_session_id)
    audit = commands.add_parser("audit", parents=[common], help="the newest operator actions")
    audit.add_argument("--limit", type=int, default=20, metavar="N", help="1..1000 (default 20)")


def _client(args: argparse.Namespace) -> Client:
    url = urlsplit(args.url)
    if url.scheme not in ("http", "https") or not url.netloc:
        raise OperatorError(f"--url: not an http(s) URL: {args.url!r}", _USAGE)
    if not args.timeout > 0:
        raise OperatorError(f"--timeout: seconds above 0, not {args.timeout}", _USAGE)
    token = os.environ.get(TOKEN_VAR, "").strip()
    if not token:
        raise OperatorError(f"set {TOKEN_VAR} to the server's admin token", _USAGE)
    if not (token.isascii() and token.isprintable()):  # http.client would raise on the header
        raise OperatorError(f"{TOKEN_VAR} has characters a header cannot carry", _USAGE)
    prefix = "/" + args.admin_prefix.strip("/")
    return Client(args.url.rstrip("/") + prefix, token, args.timeout)


def _num(x: object) -> str:
    if x is None:
        return "-"
    if isinstance(x, float) and x.is_integer():
        return str(int(x))
    return str(x)


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [list(header), *([_num(v) for v in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells)
    return "\n".join(line.rstrip() for line in lines)


def _rooms_text(answer: dict[str, Any]) -> str:
    rooms = answer.get("rooms") or []
    if not rooms:
        return "no rooms"
    header = (
        "ROOM", "MODE", "WAITING", "ACTIVE", "CAPACITY", "BATCH", "PER-MIN", "GRANTS/S",
        "OLDEST WAIT",
    )  # fmt: skip
    rows = [
        (
            r.get("room"), r.get("mode"), r.get("waiting"), r.get("active"), r.get("capacity"),
            r.get("batchSize"), r.get("newVisitorsPerMinute"), r.get("grantRatePerSecond"),
            _secs(r),
        )
        for r in rooms
    ]  # fmt: skip
    return _table(header, rows)


def _secs(view: dict[str, Any]) -> str:
    oldest = view.get("oldestWaiterAgeSeconds")
    return "-" if oldest is None else f"{oldest}s"


def _room_text(view: dict[str, Any]) -> str:
    controls: dict[str, str] = view.get("controls") or {}

    def live(field: str) -> str:
        return " (set live)" if field in controls else ""

    per_minute, max_session = view.get("newVisitorsPerMinute"), view.get("maxSessionSeconds")
    others = {k: v for k, v in controls.items() if k not in _SHOWN_CONTROLS}
    pairs = [
        ("room", view.get("room")),
        ("mode", f"{view.get('mode')}{live('mode')}"),
        ("waiting", view.get("waiting")),
        ("active", view.get("active")),
        ("capacity", f"{view.get('capacity')}{live('capacity')}"),
        ("batch size", f"{view.get('batchSize')}{live('batch-size')}"),
        ("new per minute", f"{per_minute or 'no limit'}{live('per-minute')}"),
        ("max session", f"{f'{max_session}s' if max_session else 'no cap'}{live('max-session')}"),
        ("grant rate", f"{_num(view.get('grantRatePerSecond'))}/s"),
        ("oldest waiter", _secs(view)),
        ("message", controls.get("message") or "-"),
    ]
    if others:
        pairs.append(("other controls", ", ".join(f"{k}={v}" for k, v in sorted(others.items()))))
    width = max(len(label) for label, _ in pairs)
    return "\n".join(f"{label + ':':<{width + 1}}  {_num(value)}" for label, value in pairs)


def _when(ts: object) -> str:
    try:
        at = datetime.fromtimestamp(int(str(ts)) / 1000, UTC)
    except (ValueError, OverflowError, OSError):
        return str(ts)
    return at.strftime("%Y-%m-%d %H:%M:%SZ")


def _audit_text(answer: dict[str, Any]) -> str:
    entries = answer.get("entries") or []
    if not entries:
        return "no audit entries"
    rows = [
        (
            _when(e.get("ts")), e.get("action"), e.get("room"), e.get("actor"),
            e.get("detail") or (f"session {e['session']}" if e.get("session") else None),
        )
        for e in entries
    ]  # fmt: skip
    return _table(("TIME (UTC)", "ACTION", "ROOM", "ACTOR", "DETAIL"), rows)


Answer = tuple[Any, str]  # the API's answer (what --json prints) and its table


def _rooms(client: Client, args: argparse.Namespace) -> Answer:
    answer = client.call("GET", "/rooms")
    return answer, _rooms_text(answer)


def _room(client: Client, args: argparse.Namespace) -> Answer:
    given = vars(args)
    changes = {field: given[dest] for dest, field in _ROOM_FIELDS.items() if dest in given}
    path = f"/rooms/{args.room}"
    view = client.call("PATCH", path, changes) if changes else client.call("GET", path)
    return view, _room_text(view)


def _mode(client: Client, args: argparse.Namespace) -> Answer:
    view = client.call("POST", f"/rooms/{args.room}:{args.command}")
    return view, _room_text(view)


def _revoke(client: Client, args: argparse.Namespace) -> Answer:
    client.call("POST", f"/sessions/{args.session}:revoke")  # 204: no body
    return {"session": args.session, "revoked": True}, f"revoked {args.session}"


def _audit(client: Client, args: argparse.Namespace) -> Answer:
    if not 1 <= args.limit <= 1000:
        raise OperatorError(f"--limit: 1..1000, not {args.limit}", _USAGE)
    answer = client.call("GET", f"/audit?limit={args.limit}")
    return answer, _audit_text(answer)


_RUN: dict[str, Callable[[Client, argparse.Namespace], Answer]] = {
    "rooms": _rooms,
    "room": _room,
    "revoke": _revoke,
    "audit": _audit,
    **dict.fromkeys(MODE_ACTIONS, _mode),
}
COMMANDS = frozenset(_RUN)
"""The subcommands this module adds and runs."""


def run(args: argparse.Namespace) -> int:
    """Run one operator command; the exit status (errors are one line on stderr)."""
    try:
        answer, text = _RUN[args.command](_client(args), args)
    except OperatorError as exc:
        print(f"gatekeeper: {exc}", file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        return 130
    try:
        print(json.dumps(answer, indent=2, ensure_ascii=False) if args.json else text)
        sys.stdout.flush()
    except BrokenPipeError:  # `gatekeeper audit | head`: the reader took what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0
