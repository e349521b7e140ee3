"""`python -m bench` (`make bench`): measure side by side on loopback and print one table.

    .venv/bin/python -m bench                  # everything (~11 min); updates docs/performance.md
    .venv/bin/python -m bench --quick          # a smoke run with short durations (~2 minutes)
    .venv/bin/python -m bench --only P1,P3     # a subset

Servers are pinned to CPU 0 and the load (wrk, Python clients) to CPU 1. Every process the run
starts is stopped when it ends, also on errors and Ctrl-C. Raw numbers, wrk reports, logs and
the P6 plot go to bench/results/<timestamp>/.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sys
import time
import traceback
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from types import FrameType

from bench import p3_auth, p4_api, p5_redis, p6_flash, p7_people, p8_workers, p12_proxy
from bench.procs import LOAD_CPU, ROOT
from bench.report import Context, Row, error_row, machine, summary, table, write_doc

Scenario = Callable[[Context, set[str]], list[Row]]
# Scenarios that share servers run as one group, so P1 and P2 measure one gated proxy.
GROUPS: list[tuple[tuple[str, ...], Scenario]] = [
    (("P1", "P2"), p12_proxy.run),
    (("P3",), p3_auth.run),
    (("P4",), p4_api.run),
    (("P5",), p5_redis.run),
    (("P6",), p6_flash.run),
    (("P7",), p7_people.run),
    (("P8",), p8_workers.run),
]
ALL = [s for ids, _ in GROUPS for s in ids]


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--only", help=f"comma-separated scenarios ({','.join(ALL)})")
    parser.add_argument("--quick", action="store_true", help="short durations, for a smoke run")
    parser.add_argument("--seconds", type=float, help="wrk duration per run (default 5, quick 2)")
    parser.add_argument("--rounds", type=int, help="A B B A rounds per target (default 2, quick 1)")
    parser.add_argument("--out", type=Path, help="results directory (default bench/results/<ts>)")
    docs = parser.add_mutually_exclusive_group()
    docs.add_argument(
        "--docs",
        action="store_true",
        default=None,
        help="write the table into docs/performance.md (default: full runs only)",
    )
    docs.add_argument("--no-docs", dest="docs", action="store_false")  # fmt: skip
    args = parser.parse_args(argv)
    only = [s.strip().upper() for s in (args.only or ",".join(ALL)).split(",") if s.strip()]
    unknown = sorted(set(only) - set(ALL))
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(ALL)}")
    args.selected = set(only)
    return args


def _stop_on_signal(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    signal.signal(signal.SIGINT, _stop_on_signal)  # also when started with SIGINT ignored
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) is not signal.SIG_IGN:  # leave nohup's choice alone
            signal.signal(sig, _stop_on_signal)
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > LOAD_CPU:
        os.sched_setaffinity(0, {LOAD_CPU})  # Python clients run beside wrk, away from servers
    now = datetime.now()
    out = (args.out or ROOT / "bench" / "results" / now.strftime("%Y%m%d-%H%M%S")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    ctx = Context(
        out=out,
        quick=args.quick,
        seconds=args.seconds or (2.0 if args.quick else 5.0),
        rounds=args.rounds or (1 if args.quick else 2),
        warmup=1.0 if args.quick else 2.0,
    )
    info = machine()
    print(f"results: {out}", file=sys.stderr)
    rows: list[Row] = []
    failed: list[str] = []
    started = time.monotonic()
    try:
        for ids, scenario in GROUPS:
            chosen = args.selected & set(ids)
            if not chosen:
                continue
            label = "/".join(i for i in ids if i in chosen)
            print(f"{label}: running ({time.monotonic() - started:.0f} s so far)", file=sys.stderr)
            try:
                rows += scenario(ctx, chosen)
            except Exception as exc:  # one broken scenario must not hide the others' numbers
                (out / f"error-{label.replace('/', '-')}.txt").write_text(traceback.format_exc())
                print(f"{label}: FAILED: {exc}", file=sys.stderr)
                rows.append(error_row(label, exc))
                failed.append(label)
    except KeyboardInterrupt:
        print("interrupted: every server this run started has been stopped", file=sys.stderr)
        return 130
    info["duration"] = f"{time.monotonic() - started:.0f} s"
    text = table(rows)
    print(text)
    (out / "table.md").write_text(text + "\n")
    record = {"date": now.isoformat(timespec="seconds"), "argv": sys.argv[1:], "machine": info,
              "rows": [r.as_dict() for r in rows]}  # fmt: skip
    (out / "results.json").write_text(json.dumps(record, indent=2))
    full = not args.quick and args.selected == set(ALL)
    if args.docs if args.docs is not None else full:
        extra = sys.argv[1:]
        command = f".venv/bin/python -m bench {shlex.join(extra)}" if extra else "make bench"
        write_doc(summary(rows, info, command, now.strftime("%Y-%m-%d %H:%M"), out))
        print("docs/performance.md updated", file=sys.stderr)
    # A missed target is a result; only a scenario that could not be measured fails the run.
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
