"""The `gatekeeper` command: `run`, `check-config`, and operator commands for a running one."""

from __future__ import annotations

import argparse
import os
import socket
import sys
from collections.abc import Sequence
from dataclasses import fields
from typing import Any, NoReturn
from urllib.parse import urlsplit

from gatekeeper import __version__, operator_cli
from gatekeeper.config import Settings, load_config
from gatekeeper.errors import ConfigError
from gatekeeper.logs import configure
from gatekeeper.supervisor import check_workers

_ENTRY_POINT = "gatekeeper.cli:main"


def version() -> str:
    """The installed distribution's version, whatever it is named; else the package's own."""
    from importlib import metadata

    # The import package and the command keep their name while the distribution's may differ
    # (and an unrelated `gatekeeper` distribution may be installed too): the one whose console
    # script is ours is the one.
    for name in metadata.packages_distributions().get("gatekeeper", []):
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        if any(ep.value == _ENTRY_POINT for ep in dist.entry_points):
            return dist.version
    return __version__


class _Version(argparse.Action):
    """`--version`, looked up only when asked: reading every installed distribution is slow."""

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> NoReturn:
        print(f"gatekeeper {version()}")
        parser.exit()


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line (the subcommands' parsers are of this class too)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="gatekeeper", description=__doc__)
    parser.add_argument("--version", action=_Version, nargs=0, help="print the version and exit")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="serve the waiting room (API, grant loop, gate)")
    check = commands.add_parser("check-config", help="validate a config and print a summary")
    for sub in (run, check):
        sub.add_argument(
            "--config",
            metavar="PATH",
            default=os.environ.get("WAITINGROOM_CONFIG") or None,
            help="config.yaml to load (default: $WAITINGROOM_CONFIG, else built-in defaults)",
        )
        sub.add_argument("--redis-url", metavar="URL", help="redis://… (default: embedded store)")
        sub.add_argument("--origin", metavar="URL", help="put the gate in front of this origin")
    run.add_argument("--host", help="address to listen on")
    run.add_argument("--port", type=int, help="port to listen on")
    run.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="processes serving the one port (server.workers, default 1; more than one needs "
        "--redis-url: the workers share the rooms there)",
    )
    run.add_argument("--log-level", default="info", help="debug, info, warning, error")
    operator_cli.add_commands(commands)
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, object] = {}
    if args.redis_url is not None:
        overrides["waitingroom.redis.url"] = args.redis_url
    if args.origin is not None:
        overrides["waitingroom.gate.origin"] = args.origin
    if getattr(args, "host", None) is not None:
        overrides["waitingroom.server.host"] = args.host
    if getattr(args, "port", None) is not None:
        overrides["waitingroom.server.port"] = args.port
    if getattr(args, "workers", None) is not None:
        overrides["waitingroom.server.workers"] = args.workers
    return load_config(args.config, overrides=overrides)


def _num(x: float) -> str:
    return str(int(x)) if x == int(x) else str(x)


def _value(x: object) -> str:
    """A room override's value: seconds (a float) with their unit, a count or a name as it is."""
    return f"{_num(x)}s" if isinstance(x, float) else str(x)


def describe(settings: Settings) -> str:
    """A short human summary for `gatekeeper check-config`; never shows secrets or passwords."""
    s, r, lc = settings, settings.redis, settings.lifecycle
    if r.in_memory:
        store = "in-memory (embedded, single process)"
    else:  # scheme, host and path only: the URL may carry a password
        u = urlsplit(r.url)
        where = f"{u.scheme}://{u.netloc.rpartition('@')[2]}{u.path}"
        store = f"redis {where} (key prefix {r.key_prefix!r}, stream {r.stream!r})"
    rooms = []
    for room, o in sorted(s.rooms.overrides.items()):
        values = ((f.name, getattr(o, f.name)) for f in fields(o))
        parts = [f"{k} {_value(v)}" for k, v in values if v is not None]
        rooms.append(f"{room} ({', '.join(parts)})")
    cookie = s.gate.cookie
    gate = f"proxying to {s.gate.origin}" if s.gate.origin else "API-only (no origin)"
    if s.gate.origin:
        gate += f", failure policy {s.gate.failure_policy}, cookie {cookie.name!r}"
        gate += f" bound to {s.gate.bind_pass}" if s.gate.bind_pass != "none" else ""
    lines = [
        f"store:      {store}",
        f"processing: capacity {s.processing.capacity}, batch {s.processing.batch_size} "
        f"every {s.processing.rate_ms} ms",
        f"lifecycle:  waiting timeout {_num(lc.waiting_timeout)}s, claim window "
        f"{_num(lc.claim_window)}s, idle timeout {_num(lc.idle_timeout)}s, "
        f"retention {_num(lc.retention)}s",
        f"polling:    {s.polling.min_ms}..{s.polling.max_ms} ms",
        f"rooms:      default {s.rooms.default_room!r}, "
        f"{'unlisted rooms allowed' if s.rooms.allow_unlisted else 'listed rooms only'}; "
        f"overrides: {'; '.join(rooms) or 'none'}",
        f"api:        {s.api.prefix} on {s.server.host}:{s.server.port}"
        + (f", {s.server.workers} workers" if s.server.workers > 1 else ""),
        f"gate:       {gate}",
        f"secrets:    {len(s.cookie_keys)} cookie key(s), proof secret "
        f"{'set' if s.proof_secret else 'not set'}, admin token "
        f"{'set' if s.admin_token else 'not set'}",
    ]
    return "\n".join(lines)


def _run(settings: Settings, log_level: str) -> int:
    from gatekeeper.app import create_app
    from gatekeeper.server import serve

    configure(log_level, settings.server.log_format)
    if settings.server.workers == 1:
        serve(create_app(settings), settings, log_level)
        return 0
    from gatekeeper.supervisor import Supervisor, reserve, share_cookie_key

    settings = share_cookie_key(settings)
    s = settings.server
    try:
        sock = reserve(s.host, s.port)
    except OSError as exc:
        print(f"gatekeeper: cannot listen on {s.host}:{s.port}: {exc}", file=sys.stderr)
        return 1

    def worker(sock: socket.socket) -> None:
        # Each worker builds its own app after the fork: its own store connections, grant
        # loop, metrics and request-id prefix.
        serve(create_app(settings), settings, log_level, sock)

    return Supervisor(sock, s.workers, worker, s.graceful_timeout).run()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `gatekeeper` console script."""
    args = _parser().parse_args(argv)
    if args.command in operator_cli.COMMANDS:
        return operator_cli.run(args)
    try:
        settings = _settings(args)
        check_workers(settings)
    except ConfigError as exc:
        print(f"gatekeeper: config error: {exc}", file=sys.stderr)
        return 2
    if args.command == "check-config":
        print(describe(settings))
        return 0
    return _run(settings, args.log_level)
