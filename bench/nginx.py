"""nginx configs of a run (a plain reverse proxy, examples/nginx/nginx.conf adapted) and the
check that nginx runs them at its best: upstream connections kept alive, not one per request."""

from __future__ import annotations

import re
import socket
import struct
from pathlib import Path

from bench import wrk
from bench.procs import ROOT, BenchError

EXAMPLE = ROOT / "examples" / "nginx" / "nginx.conf"

# As the example: every proxying location sets proxy_http_version 1.1 and clears Connection
# itself, as nginx's docs require for upstream keep-alive (see the note in the example).
PLAIN = """\
user root;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 4096; }}

http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;

    upstream origin {{ server 127.0.0.1:{origin}; keepalive {keepalive}; keepalive_timeout 4s; }}

    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_pass http://origin;
        }}
    }}
}}
"""
KEEPALIVE = 64
"""Idle connections nginx keeps per upstream (`keepalive`, both configs; 1 worker)."""
MAX_OPENED = KEEPALIVE + wrk.CONNECTIONS
"""Upstream connections a keep-alive nginx may open during one wrk run (see check_keepalive)."""


def plain_conf(prefix: Path, port: int, origin: int) -> str:
    """nginx, 1 worker, proxying the origin over keep-alive connections (as the example does)."""
    return PLAIN.format(prefix=prefix, port=port, origin=origin, keepalive=KEEPALIVE)


def auth_conf(prefix: Path, port: int, origin: int, gate: int) -> str:
    """The repo's auth_request config with this run's ports and paths, its decision cache kept."""
    conf = EXAMPLE.read_text()
    pools = {int(n) for n in re.findall(r"\bkeepalive\s+(\d+);", conf)}
    if pools != {KEEPALIVE}:
        raise BenchError(f"{EXAMPLE}: upstream keepalive {pools}, expected {KEEPALIVE}")
    for old, new in (
        ("127.0.0.1:9000", f"127.0.0.1:{origin}"),
        ("127.0.0.1:8080", f"127.0.0.1:{gate}"),
        ("listen 8000", f"listen 127.0.0.1:{port}"),
        ("/tmp/gatekeeper-nginx", f"{prefix}/nginx"),
    ):
        if old not in conf:
            raise BenchError(f"{EXAMPLE} changed: {old!r} not found; update bench/nginx.py")
        conf = conf.replace(old, new)
    # Run as root: workers dropping to `nobody` could not write under the results directory.
    return "user root;\n" + conf


def connections(port: int) -> set[tuple[str, str]]:
    """The TCP connections to 127.0.0.1:`port` the kernel lists, as (client, server) ends.

    A closed connection stays listed for a minute (TIME_WAIT, on whichever end closed first),
    so the set grows by about one for every connection opened since, even a short-lived one
    (a lower bound: on loopback a new connection may reuse the ends of one in TIME_WAIT).
    """
    host = struct.unpack("=I", socket.inet_aton("127.0.0.1"))[0]
    server = f"{host:08X}:{port:04X}"
    found: set[tuple[str, str]] = set()
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            local, remote, state = line.split(None, 4)[1:4]
            if state == "0A":  # LISTEN
                continue
            if local == server:
                found.add((remote, local))
            elif remote == server:
                found.add((local, remote))
    return found


def check_keepalive(
    peer: str, target: wrk.Target, upstream: int, seconds: float, save: Path
) -> str:
    """Drive `target` alone with wrk for `seconds`, counting the connections opened to `upstream`.

    nginx keeping upstream connections alive opens at most one per concurrent request
    (wrk.CONNECTIONS), kept in its pool (KEEPALIVE); nginx sending `Connection: close` opens
    one per request, thousands. Raises BenchError naming `peer` and the count above the pool;
    returns the count for the report.
    """
    before = connections(upstream)
    result = wrk.run(target, seconds, save)
    opened = len(connections(upstream) - before)
    if opened > MAX_OPENED or not result.clean:
        raise BenchError(
            f"{peer}: {opened:,} upstream connections opened for {result.requests:,} requests "
            f"(keep-alive: at most {MAX_OPENED}; {result.non2xx} non-2xx, {result.socket_errors} "
            "socket errors); each proxying location needs proxy_http_version 1.1 and "
            'proxy_set_header Connection ""'
        )
    return f"{opened:,} for {result.requests:,} requests"
