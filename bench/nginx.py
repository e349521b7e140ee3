"""nginx configs of a run: a plain reverse proxy, and examples/nginx/nginx.conf adapted."""

from __future__ import annotations

from pathlib import Path

from bench.procs import ROOT, BenchError

EXAMPLE = ROOT / "examples" / "nginx" / "nginx.conf"

PLAIN = """\
user root;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 4096; }}

http {{
    access_log off;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;

    upstream origin {{ server 127.0.0.1:{origin}; keepalive 64; }}

    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_pass http://origin;
        }}
    }}
}}
"""


def plain_conf(prefix: Path, port: int, origin: int) -> str:
    """nginx, 1 worker, proxying the origin over keep-alive connections (as the example does)."""
    return PLAIN.format(prefix=prefix, port=port, origin=origin)


def auth_conf(prefix: Path, port: int, origin: int, gate: int) -> str:
    """The repo's auth_request config with this run's ports and paths, its decision cache kept."""
    conf = EXAMPLE.read_text()
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
