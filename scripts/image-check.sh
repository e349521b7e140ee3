#!/usr/bin/env bash
# Builds the container image (Dockerfile) and checks it as an operator runs it:
#   scripts/image-check.sh          build, then run the checks below (`make image-check`, so `make test`)
#   scripts/image-check.sh build    build only (`make image`)
#
# Docker is used when its engine answers, else podman (installed by scripts/image-deps.sh).
# The checks, against a throwaway redis-server and a throwaway origin on loopback, with the
# container on the host's network, read-only and with no capabilities:
#   /healthz and a join (a page through the gate, a JSON API join that lands in Redis); the
#   image's HEALTHCHECK command with `run --port N` (not 8080), with a mounted config's port and
#   static prefix, and failing when nothing serves; file < environment precedence; the image's
#   own default (0.0.0.0:8080); uid 10001 with no capabilities; SIGTERM → exit 0 within 10 s;
#   the image's gatekeeper is this tree's (no stale layer); the image's Python is the
#   Dockerfile's; and it prints the Python version, the build time and the image size.
#
# The base image is the Dockerfile's PYTHON_IMAGE (python:3.12-slim). Where no registry can be
# reached (as on this project's CI) a stand-in with the same Python is built instead, once:
# Ubuntu 24.04 (noble) minbase by debootstrap from UBUNTU_MIRROR, its Release signature checked
# against Ubuntu's archive key (pinned below by fingerprint), with Ubuntu's python3 (3.12),
# python3-venv and ca-certificates, brought up to date from noble-updates and noble-security,
# imported as localhost/gatekeeper-base:noble. The image's Python must be the Dockerfile's.
#
# Environment: IMAGE (tag to build, default gatekeeper:latest), PYTHON_IMAGE (base to use, skips
# the lookup and the Python version check), IMAGE_ENGINE (docker or podman), UBUNTU_MIRROR (for
# the stand-in, default http://archive.ubuntu.com/ubuntu).
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-check}
case "$mode" in check | build) ;; *) echo "usage: $0 [build]" >&2; exit 2 ;; esac
IMAGE=${IMAGE:-gatekeeper:latest}
STANDIN=localhost/gatekeeper-base:noble
UBUNTU_MIRROR=${UBUNTU_MIRROR:-http://archive.ubuntu.com/ubuntu}
# "Ubuntu Archive Automatic Signing Key (2018) <ftpmaster@ubuntu.com>", which signs noble.
UBUNTU_ARCHIVE_KEY=F6ECB3762474EDA9D21B7022871920D1991BC93C
# Debian 12 packages no Ubuntu keyring: without /usr/share/keyrings/ubuntu-archive-keyring.gpg
# it comes from this package of noble's (over plain HTTP: only the pinned key is kept from it).
UBUNTU_KEYRING_DEB=pool/main/u/ubuntu-keyring/ubuntu-keyring_2023.11.28.1_all.deb
say() { printf '\033[1mimage-check:\033[0m %s\n' "$*"; }
fail() { printf 'image-check: FAILED: %s\n' "$*" >&2; exit 1; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }
secs() { awk -v ms="$1" 'BEGIN { printf "%.1f", ms / 1000 }'; }  # MS -> seconds

# ---- the engine ------------------------------------------------------------------------------
engine=${IMAGE_ENGINE:-}
if [ -z "$engine" ]; then
  if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then engine=docker; else
    engine=podman
  fi
fi
if [ "$engine" = podman ]; then
  ./scripts/image-deps.sh
  # Without systemd and a Docker-like host: runc (crun rejects a hybrid cgroup layout), cgroupfs,
  # events in a file, and default limits within this process's hard limits (podman's own
  # defaults exceed them: "setrlimit RLIMIT_NOFILE: Operation not permitted"; nproc is capped at
  # what podman gives conmon, pid_max).
  if [ -z "${CONTAINERS_CONF:-}" ]; then
    conf_dir=${TMPDIR:-/tmp}/gatekeeper-podman
    mkdir -p "$conf_dir"
    nofile=$(ulimit -Hn); [ "$nofile" = unlimited ] && nofile=1048576
    nproc=$(ulimit -Hu); [ "$nproc" = unlimited ] && nproc=4194304
    pid_max=$(cat /proc/sys/kernel/pid_max 2>/dev/null || echo 32768)
    [ "$nproc" -gt "$pid_max" ] && nproc=$pid_max
    cat >"$conf_dir/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
    export CONTAINERS_CONF=$conf_dir/containers.conf
  fi
fi
say "engine: $($engine --version)"

# ---- the base image --------------------------------------------------------------------------
exists() { $engine image inspect "$1" >/dev/null 2>&1; }
python_of() { $engine run --rm --network none --entrypoint python3 "$1" --version 2>&1 | grep -v systemd; }
ubuntu_keyring() {  # DIR: writes DIR/ubuntu-archive.gpg, a keyring with the pinned key only
  local dir=$1 src=/usr/share/keyrings/ubuntu-archive-keyring.gpg
  if [ ! -f "$src" ]; then
    curl -fsS -m 120 -o "$dir/ubuntu-keyring.deb" "$UBUNTU_MIRROR/$UBUNTU_KEYRING_DEB" ||
      fail "cannot fetch $UBUNTU_MIRROR/$UBUNTU_KEYRING_DEB"
    dpkg-deb --fsys-tarfile "$dir/ubuntu-keyring.deb" |
      tar -xOf - ./usr/share/keyrings/ubuntu-archive-keyring.gpg >"$dir/ubuntu-keyring.gpg"
    src=$dir/ubuntu-keyring.gpg
  fi
  mkdir -m 700 "$dir/gnupg"
  GNUPGHOME=$dir/gnupg gpg --batch --quiet --no-default-keyring --keyring "$src" \
    --export "$UBUNTU_ARCHIVE_KEY" >"$dir/ubuntu-archive.gpg" 2>/dev/null || true
  [ -s "$dir/ubuntu-archive.gpg" ] || fail "no key $UBUNTU_ARCHIVE_KEY in $src"
}
build_standin() {
  local root t0 script=/usr/share/debootstrap/scripts/noble
  t0=$(now_ms)
  root=$(mktemp -d "${TMPDIR:-/tmp}/gatekeeper-base.XXXXXX")
  say "no registry: building the base stand-in $STANDIN (Ubuntu noble, python3 3.12) from $UBUNTU_MIRROR"
  mkdir "$root.keys"
  ubuntu_keyring "$root.keys"
  # Debian 12's debootstrap predates noble; every Ubuntu release since 7.10 uses the gutsy
  # script (upstream debootstrap's noble is a link to it).
  [ -e "$script" ] || script=/usr/share/debootstrap/scripts/gutsy
  debootstrap --variant=minbase --components=main,universe \
    --include=python3,python3-venv,ca-certificates --keyring "$root.keys/ubuntu-archive.gpg" \
    noble "$root" "$UBUNTU_MIRROR" "$script" >"$root.log" 2>&1 || { tail -n 20 "$root.log" >&2; exit 1; }
  grep -q "Valid Release signature (key id $UBUNTU_ARCHIVE_KEY)" "$root.log" ||
    fail "debootstrap did not check noble's Release signature (log: $root.log)"
  # The fixes released since noble (Python 3.12.3 with its security patches, OpenSSL, glibc...).
  printf 'deb %s %s main universe\n' "$UBUNTU_MIRROR" noble "$UBUNTU_MIRROR" noble-updates \
    "$UBUNTU_MIRROR" noble-security >"$root/etc/apt/sources.list"
  chroot "$root" /usr/bin/env PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 \
    DEBIAN_FRONTEND=noninteractive sh -c 'apt-get -qq update &&
      apt-get -qq -y --no-install-recommends dist-upgrade && apt-get clean' >>"$root.log" 2>&1 ||
    { tail -n 20 "$root.log" >&2; fail "updating the stand-in (log: $root.log)"; }
  rm -rf "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/* "$root"/var/log/* \
    "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
    "$root"/usr/share/locale/*
  : >"$root/etc/resolv.conf"  # the host's, copied in by debootstrap; the engine mounts its own
  : >"$root/etc/hostname"
  tar --numeric-owner -C "$root" -cf - . |
    $engine import --change 'ENV LANG=C.UTF-8' \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'CMD ["python3"]' - "$STANDIN" >/dev/null 2>&1
  rm -rf "$root" "$root.keys" "$root.log"
  say "built $STANDIN in $(secs $(($(now_ms) - t0)))s: $(python_of "$STANDIN")"
}
want_python=""  # the Dockerfile's Python (X.Y), which the image must have
if [ -z "${PYTHON_IMAGE:-}" ]; then
  PYTHON_IMAGE=$(sed -n 's/^ARG PYTHON_IMAGE=//p' Dockerfile)
  want_python=$(sed -n 's/^python:\([0-9]*\.[0-9]*\)-.*/\1/p' <<<"$PYTHON_IMAGE")
  if ! exists "$PYTHON_IMAGE" && ! exists "docker.io/library/$PYTHON_IMAGE"; then
    if timeout 60 "$engine" pull -q "docker.io/library/$PYTHON_IMAGE" >/dev/null 2>&1; then
      PYTHON_IMAGE=docker.io/library/$PYTHON_IMAGE
    else
      PYTHON_IMAGE=$STANDIN
      exists "$STANDIN" || build_standin
    fi
  fi
fi

# ---- build -----------------------------------------------------------------------------------
build_args=(--build-arg "PYTHON_IMAGE=$PYTHON_IMAGE" -t "$IMAGE")
if [ "$engine" = podman ]; then
  # docker format keeps HEALTHCHECK (OCI drops it). pip in the build trusts the host's CA bundle
  # (a TLS-inspecting proxy's CA lives there), mounted read-only over the image's own file.
  build_args+=(--format docker --layers)
  ca=/etc/ssl/certs/ca-certificates.crt
  [ -f "$ca" ] && build_args+=(-v "$ca:$ca:ro")
fi
# What the image's gatekeeper must be (checked in 6), taken as the build takes its context.
py_sums='LC_ALL=C find gatekeeper -name "*.py" -not -path "*/__pycache__/*" | LC_ALL=C sort | xargs sha256sum'
in_tree=$(sh -c "$py_sums")
say "building $IMAGE on $PYTHON_IMAGE"
start=$(now_ms)
$engine build "${build_args[@]}" . >"${TMPDIR:-/tmp}/gatekeeper-image-build.log" 2>&1 || {
  tail -n 40 "${TMPDIR:-/tmp}/gatekeeper-image-build.log" >&2
  fail "build (log: ${TMPDIR:-/tmp}/gatekeeper-image-build.log)"
}
build_s=$(secs $(($(now_ms) - start)))
size=$($engine image inspect --format '{{.Size}}' "$IMAGE")
size_mb=$(awk -v b="$size" 'BEGIN { printf "%.1f", b / 1e6 }')
say "built $IMAGE in ${build_s}s: $size_mb MB"
[ "$mode" = build ] && exit 0

# ---- run -------------------------------------------------------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/gatekeeper-image-check.XXXXXX")
containers=()
pids=()
cleanup() {
  for c in "${containers[@]}"; do $engine rm -f "$c" >/dev/null 2>&1 || true; done
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_http() {  # URL: until it answers (any status), 30 s at most
  for _ in $(seq 150); do curl -s -o /dev/null -m 1 "$1" && return 0; sleep 0.2; done
  return 1
}
logs() { $engine logs "$1" 2>&1 | tail -n 30 >&2; }
start_container() {  # NAME ARGS...: a read-only, capability-free container on the host network
  local name=$1
  shift
  containers+=("$name")
  $engine rm -f "$name" >/dev/null 2>&1 || true
  # (podman without systemd cannot schedule the periodic health check; the checks run it.)
  $engine run -d --name "$name" --network host --read-only --cap-drop ALL \
    --security-opt no-new-privileges "$@" 2>&1 >/dev/null | grep -v 'systemd' >&2 || true
  $engine container inspect "$name" >/dev/null 2>&1 || fail "$name did not start"
}
# The image's own HEALTHCHECK command, exec'd in the container as the engine would run it.
mapfile -d '' health < <($engine image inspect --format '{{json .Config.Healthcheck.Test}}' "$IMAGE" |
  python3 -c 'import json, sys; t = json.load(sys.stdin); sys.stdout.write("\0".join(t[1:]) + "\0")')
[ "${#health[@]}" -gt 1 ] || fail "the image has no HEALTHCHECK (built without --format docker?)"
healthy() { $engine exec "$1" "${health[@]}" >/dev/null 2>&1; }

redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
  --dir "$work" >"$work/redis.log" 2>&1 &
pids+=($!)
origin_port=$(free_port)
mkdir "$work/site" && echo "origin says hello" >"$work/site/index.html"
python3 -m http.server "$origin_port" --bind 127.0.0.1 --directory "$work/site" \
  >"$work/origin.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
wait_http "http://127.0.0.1:$origin_port/" || fail "the throwaway origin did not start"
secrets=(-e "WAITINGROOM_GATE_COOKIE_KEYS=$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
  -e "WAITINGROOM_GATE_PROOF_SECRET=$(python3 -c 'import secrets; print(secrets.token_hex(32))')")

image_python=$(python_of "$IMAGE")
say "python in the image: $image_python"
if [ -n "$want_python" ] && [[ "$image_python" != "Python $want_python."* ]]; then
  fail "the image has $image_python, the Dockerfile's base Python $want_python"
fi

# 1. The image's own default, used when nothing is mounted: 0.0.0.0:8080.
out=$($engine run --rm --network none --entrypoint gatekeeper "$IMAGE" check-config 2>&1)
grep -q "on 0.0.0.0:8080" <<<"$out" || { echo "$out" >&2; fail "the image's default is not 0.0.0.0:8080"; }
say "ok: with no config mounted it serves on 0.0.0.0:8080 (its baked-in default)"

# 2. Flags: `run --port N`, in front of an origin, with Redis. (127.0.0.1: this is the host's
# network; in a network of its own the image's 0.0.0.0 is what you want.)
port_a=$(free_port)
start_container gk-check-flags "${secrets[@]}" -e "WAITINGROOM_REDIS_URL=redis://127.0.0.1:$redis_port/0" \
  "$IMAGE" --origin "http://127.0.0.1:$origin_port" --host 127.0.0.1 --port "$port_a"
base=http://127.0.0.1:$port_a
wait_http "$base/_gatekeeper/healthz" || { logs gk-check-flags; fail "no /_gatekeeper/healthz on --port $port_a"; }
[ "$(curl -s -o /dev/null -w '%{http_code}' "$base/_gatekeeper/healthz")" = 200 ] || fail "healthz not 200"
say "ok: /_gatekeeper/healthz answers 200 on --port $port_a"
page=$(curl -s -c "$work/cookies" "$base/")
grep -q "origin says hello" <<<"$page" || { echo "$page" | head -n 5 >&2; fail "a visitor did not reach the origin"; }
grep -q $'\t' "$work/cookies" || fail "the gate set no cookie"
code=$(curl -s -o "$work/join.json" -w '%{http_code}' -X POST -H 'content-type: application/json' \
  -d '{"eventId": "image-check", "userId": "u1"}' "$base/api/waiting-room/sessions")
if [ "$code" != 202 ] || ! grep -q '"sessionId"' "$work/join.json"; then
  cat "$work/join.json" >&2
  fail "API join answered $code"
fi
[ -n "$(redis-cli -p "$redis_port" --scan --pattern '*image-check*' | head -n 1)" ] ||
  fail "the join left nothing in the throwaway Redis"
say "ok: a visitor passes the gate to the origin (cookie set); an API join is 202 and lands in Redis"
healthy gk-check-flags || fail "HEALTHCHECK fails with run --port $port_a"
say "ok: the HEALTHCHECK command passes with run --port $port_a"
uid=$($engine exec gk-check-flags id -u)
[ "$uid" = 10001 ] || fail "runs as uid $uid, not 10001"
capeff=$($engine exec gk-check-flags sh -c "grep CapEff /proc/1/status" | awk '{print $2}')
[ "$((16#$capeff))" = 0 ] || fail "the process has capabilities: CapEff $capeff"
$engine exec gk-check-flags sh -c 'touch /opt/gatekeeper/x' 2>/dev/null && fail "the root file system is writable"
say "ok: uid 10001, no capabilities (CapEff $capeff), read-only root file system"
start=$(now_ms)
$engine kill --signal TERM gk-check-flags >/dev/null
rc=$(timeout 15 "$engine" wait gk-check-flags 2>/dev/null | tail -n 1) || fail "still running 15 s after SIGTERM"
stop_ms=$(($(now_ms) - start))
stop_s=$(secs $stop_ms)
[ "$rc" = 0 ] || { logs gk-check-flags; fail "exit status $rc after SIGTERM"; }
[ "$stop_ms" -lt 10000 ] || fail "took ${stop_s}s to stop after SIGTERM"
say "ok: SIGTERM → exit 0 in ${stop_s}s"

# 3. A mounted config: its port and static prefix are used, by the server and the health check.
port_b=$(free_port)
cat >"$work/config.yaml" <<EOF
waitingroom:
  server:
    host: 127.0.0.1
    port: $port_b
  gate:
    static-prefix: /_gk
EOF
chmod 644 "$work/config.yaml"
start_container gk-check-config "${secrets[@]}" -v "$work/config.yaml:/etc/gatekeeper/config.yaml:ro" \
  "$IMAGE" --origin "http://127.0.0.1:$origin_port"
wait_http "http://127.0.0.1:$port_b/_gk/healthz" || { logs gk-check-config; fail "the mounted config's port $port_b is not used"; }
healthy gk-check-config || fail "HEALTHCHECK fails with the mounted config's port $port_b and prefix /_gk"
say "ok: a mounted config's port ($port_b) and static prefix are honoured, by the health check too"

# 4. The environment beats the file (the documented precedence; the image sets neither).
port_c=$(free_port)
start_container gk-check-env "${secrets[@]}" -v "$work/config.yaml:/etc/gatekeeper/config.yaml:ro" \
  -e "WAITINGROOM_SERVER_PORT=$port_c" "$IMAGE"
wait_http "http://127.0.0.1:$port_c/_gk/healthz" || { logs gk-check-env; fail "WAITINGROOM_SERVER_PORT did not beat the file"; }
healthy gk-check-env || fail "HEALTHCHECK fails with WAITINGROOM_SERVER_PORT=$port_c"
say "ok: WAITINGROOM_SERVER_PORT ($port_c) beats the file's port, and the health check follows"

# 5. The health check fails when no gatekeeper serves.
$engine rm -f gk-check-config >/dev/null 2>&1
containers+=(gk-check-idle)
$engine run -d --name gk-check-idle --network none --read-only --cap-drop ALL --entrypoint sleep \
  "$IMAGE" 60 2>&1 >/dev/null | grep -v systemd >&2 || true
healthy gk-check-idle && fail "HEALTHCHECK passes with no gatekeeper running"
say "ok: the HEALTHCHECK command fails when nothing serves"

# 6. The image holds this tree's gatekeeper, not a stale build's (every .py file, by sha256).
site=$($engine run --rm --network none --entrypoint python3 "$IMAGE" -c \
  'import gatekeeper, os; print(os.path.dirname(os.path.dirname(gatekeeper.__file__)))' 2>&1 | grep -v systemd)
in_image=$($engine run --rm --network none --entrypoint sh -w "$site" "$IMAGE" -c "$py_sums" 2>&1 | grep -v systemd)
[ "$in_image" = "$in_tree" ] || {
  diff <(echo "$in_tree") <(echo "$in_image") | head -n 10 >&2
  fail "the image's gatekeeper is not this tree's (a stale layer cache, or edited during the build?)"
}
say "ok: the image's gatekeeper is this tree's ($(wc -l <<<"$in_tree") .py files, same sha256)"

say "all checks passed: $IMAGE, $size_mb MB, built in ${build_s}s on $PYTHON_IMAGE"
