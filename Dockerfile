# gatekeeper: slim, non-root. Config comes from a mounted file, secrets from the environment:
#   docker run -p 8080:8080 \
#     -v $PWD/my-config.yaml:/etc/gatekeeper/config.yaml:ro \
#     -e WAITINGROOM_REDIS_URL=redis://redis:6379/0 \
#     -e WAITINGROOM_GATE_COOKIE_KEYS=... -e WAITINGROOM_GATE_PROOF_SECRET=... \
#     gatekeeper --origin http://seats.internal:8000
#
# Built and checked by `make image-check` (scripts/image-check.sh), which `make test` runs.
# Dependencies come from requirements.lock (exact versions, sha256 hashes; `make lock`).
# Precedence is the documented one: built-in defaults < config file < WAITINGROOM_* < flags.
# The image adds one thing at the lowest level it can: /etc/gatekeeper/config.yaml, used when
# you mount none, listens on 0.0.0.0:8080. A config you mount there replaces it, so give yours
# `server.host: 0.0.0.0` (a container's 127.0.0.1 is unreachable from outside it).
ARG PYTHON_IMAGE=python:3.12-slim

# ---- wheels: every wheel the image installs, hash-checked, nothing compiled ------------------
FROM ${PYTHON_IMAGE} AS wheels
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python3 -m venv /build
# The dependencies first: this layer is rebuilt only when the lock changes, not on a code edit.
COPY requirements.lock ./
RUN /build/bin/pip wheel --quiet --require-hashes --only-binary=:all: --wheel-dir /wheels/deps \
      -r requirements.lock
# Then gatekeeper itself, built offline against the locked setuptools from /wheels.
COPY pyproject.toml README.md ./
COPY gatekeeper ./gatekeeper
RUN /build/bin/pip wheel --quiet --no-index --find-links /wheels/deps --no-deps \
      --wheel-dir /wheels/app . \
    && cd /wheels && sha256sum deps/*.whl app/*.whl >/wheels.sha256

# ---- the image -----------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/gatekeeper/bin:$PATH \
    WAITINGROOM_CONFIG=/etc/gatekeeper/config.yaml
RUN useradd --uid 10001 --user-group --create-home --home-dir /home/gatekeeper --no-log-init \
      --shell /usr/sbin/nologin gatekeeper
# The wheels' sha256 sums (a few kB, kept as a record of what is installed): copied, they make
# the next step rebuild whenever a wheel changes. podman/buildah (Debian 12 has podman 4.3) leave a
# RUN's cache key blind to what a --mount from a stage brings, and would reuse the old install.
COPY --from=wheels /wheels.sha256 /opt/gatekeeper/wheels.sha256
# The wheels are mounted for this one step, never copied: no layer keeps them. pip resolves
# gatekeeper's dependencies from /wheels/deps only (--no-index): exactly the locked ones.
RUN --mount=type=bind,from=wheels,source=/wheels,target=/wheels \
    python3 -m venv /opt/gatekeeper \
    && /opt/gatekeeper/bin/pip install --quiet --no-cache-dir --no-index \
         --find-links /wheels/deps /wheels/app/*.whl \
    && /opt/gatekeeper/bin/pip uninstall --quiet --yes pip \
    && mkdir -p /etc/gatekeeper \
    && printf '%s\n' \
       '# The image default, used when no config is mounted here. A mounted config replaces' \
       '# this file whole: set server.host: 0.0.0.0 in yours. Reference: config.yaml in the repo.' \
       'waitingroom:' '  server:' '    host: 0.0.0.0' '    port: 8080' \
       > /etc/gatekeeper/config.yaml
USER gatekeeper
WORKDIR /home/gatekeeper
EXPOSE 8080
# Asks the running gatekeeper on the address it really listens on: its own flags (--config,
# --host, --port, read from /proc), the environment it was started with and its config file,
# resolved by gatekeeper's own loader, so `run --port 18733` or a mounted config's port is
# checked where it is. The path follows gate.static-prefix.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 CMD ["python3", "-c", "\
import argparse, os, sys, urllib.request\n\
from gatekeeper import load_config\n\
def words(pid, name): return [w.decode(errors='replace') for w in open(f'/proc/{pid}/{name}', 'rb').read().split(b'\\0')[:-1]]\n\
def run_args(a): return next((a[i + 2:] for i in range(len(a) - 1) if os.path.basename(a[i]) == 'gatekeeper' and a[i + 1] == 'run'), None)\n\
pids = sorted(int(p) for p in os.listdir('/proc') if p.isdigit() and int(p) != os.getpid())\n\
found = [(p, r) for p in pids if (r := run_args(words(p, 'cmdline'))) is not None]\n\
pid, args = found[0] if found else sys.exit('unhealthy: no gatekeeper run process')\n\
env = dict(w.partition('=')[::2] for w in words(pid, 'environ'))\n\
parser = argparse.ArgumentParser(add_help=False)\n\
for flag in ('--config', '--host', '--port', '--redis-url', '--origin', '--workers', '--log-level'): parser.add_argument(flag)\n\
flags, _ = parser.parse_known_args(args)\n\
overrides = {f'waitingroom.server.{k}': v for k, v in (('host', flags.host), ('port', flags.port)) if v is not None}\n\
settings = load_config(flags.config or env.get('WAITINGROOM_CONFIG') or None, env, overrides)\n\
host = {'': '127.0.0.1', '0.0.0.0': '127.0.0.1', '::': '::1'}.get(settings.server.host, settings.server.host)\n\
host = f'[{host}]' if ':' in host else host\n\
prefix = settings.gate.static_prefix.rstrip('/')\n\
urllib.request.urlopen(f'http://{host}:{settings.server.port}{prefix}/healthz', timeout=2)\n\
"]
ENTRYPOINT ["gatekeeper", "run"]
