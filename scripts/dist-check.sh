#!/usr/bin/env bash
# Builds the distribution (sdist + wheel, `python -m build`) and checks it as a user gets it:
#   scripts/dist-check.sh          build into dist/, then the checks below (`make dist-check`, so `make test`)
#   scripts/dist-check.sh build    build only (`make dist`)
#
# Checks: the metadata renders on PyPI (`twine check`) and names the distribution
# gatekeeper-waitingroom; the wheel holds every file of the package that git tracks (templates,
# static files, Lua scripts, catalogues, py.typed) and nothing else; the sdist builds the same
# wheel; in a fresh venv (the locked dependencies, hash-checked, then the wheel), from outside
# the repo: `gatekeeper --version`, `gatekeeper check-config` (built-in defaults and the repo's
# config.yaml), and `gatekeeper run` serving /_gatekeeper/healthz and the waiting page's assets.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-check}
case "$mode" in check | build) ;; *) echo "usage: $0 [build]" >&2; exit 2 ;; esac
PYTHON=${PYTHON:-python3}
OUT=${DIST_DIR:-dist}
NAME=gatekeeper-waitingroom
say() { printf '\033[1mdist-check:\033[0m %s\n' "$*"; }
fail() { printf 'dist-check: FAILED: %s\n' "$*" >&2; exit 1; }
quiet() {  # COMMAND...: its output only when it fails
  "$@" >"$work/out.log" 2>&1 || { tail -n 30 "$work/out.log" >&2; return 1; }
}

work=$(mktemp -d "${TMPDIR:-/tmp}/gatekeeper-dist-check.XXXXXX")
server=""
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# The build front end in a venv of its own (the project's venv is not touched).
$PYTHON -m venv "$work/tools"
quiet "$work/tools/bin/pip" install 'build>=1.2' 'twine>=6.1'
mkdir -p "$OUT"
rm -f "$OUT"/gatekeeper_waitingroom-*
"$work/tools/bin/python" -m build --outdir "$OUT" . >"$work/build.log" 2>&1 || {
  tail -n 30 "$work/build.log" >&2
  fail "python -m build"
}
version=$("$work/tools/bin/python" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
wheel=$OUT/gatekeeper_waitingroom-$version-py3-none-any.whl
sdist=$OUT/gatekeeper_waitingroom-$version.tar.gz
if [ ! -f "$wheel" ] || [ ! -f "$sdist" ]; then ls -l "$OUT" >&2; fail "expected $wheel and $sdist"; fi
say "built $sdist ($(du -k "$sdist" | cut -f1) kB) and $wheel ($(du -k "$wheel" | cut -f1) kB)"
[ "$mode" = build ] && exit 0

"$work/tools/bin/twine" check --strict "$OUT"/gatekeeper_waitingroom-"$version"* >"$work/twine.log" 2>&1 || {
  cat "$work/twine.log" >&2
  fail "twine check"
}
say "ok: twine check --strict passes (the README renders as the PyPI page)"

# The wheel's contents: exactly the package's files that git tracks or would (plus metadata).
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  git ls-files --cached --others --exclude-standard gatekeeper |
    while read -r f; do [ -f "$f" ] && echo "$f"; done >"$work/tracked"
else
  find gatekeeper -type f ! -path '*/__pycache__/*' ! -name '*.pyc' >"$work/tracked"
fi
"$work/tools/bin/python" - "$wheel" "$sdist" "$work/tracked" "$NAME" "$version" <<'EOF'
import email, sys, tarfile, zipfile

wheel, sdist, tracked, name, version = sys.argv[1:]
want = {line.strip() for line in open(tracked) if line.strip()}
with zipfile.ZipFile(wheel) as z:
    names = set(z.namelist())
    info = f"gatekeeper_waitingroom-{version}.dist-info"
    meta = email.message_from_bytes(z.read(f"{info}/METADATA"))
    entry_points = z.read(f"{info}/entry_points.txt").decode()
have = {n for n in names if not n.startswith(info + "/")}
problems = [f"missing from the wheel: {n}" for n in sorted(want - have)]
problems += [f"in the wheel but not in git: {n}" for n in sorted(have - want)]
if meta["Name"] != name or meta["Version"] != version:
    problems.append(f"metadata names {meta['Name']} {meta['Version']}, not {name} {version}")
if meta["License-Expression"] != "Apache-2.0":
    problems.append(f"License-Expression is {meta['License-Expression']!r}")
if "gatekeeper = gatekeeper.cli:main" not in entry_points:
    problems.append("no `gatekeeper` console script")
if not any(c == "Typing :: Typed" for c in meta.get_all("Classifier") or []):
    problems.append("no Typing :: Typed classifier")
with tarfile.open(sdist) as t:
    root = f"gatekeeper_waitingroom-{version}/"
    in_sdist = {m.name.removeprefix(root) for m in t.getmembers() if m.isfile()}
problems += [f"missing from the sdist: {n}" for n in sorted(want - in_sdist)]
problems += [f"missing from the sdist: {n}" for n in ("pyproject.toml", "README.md") if n not in in_sdist]
if problems:
    sys.exit("\n".join(problems))
data = sorted(n for n in have if not n.endswith(".py"))
print(f"{len(have)} files in the package, {len(data)} of them data: " + ", ".join(
    sorted({n.rsplit("/", 1)[0] + "/" for n in data if "/" in n.removeprefix("gatekeeper/")}))
    + " and gatekeeper/py.typed")
EOF
say "ok: the wheel and the sdist hold every tracked file of the package and nothing else"

# A fresh venv, as a user installs it: the locked dependencies (hash-checked), then the wheel.
$PYTHON -m venv "$work/venv"
quiet "$work/venv/bin/pip" install --require-hashes --only-binary=:all: -r requirements.lock
quiet "$work/venv/bin/pip" install --no-index --no-deps "$wheel"
"$work/venv/bin/pip" check >/dev/null || { "$work/venv/bin/pip" check >&2; fail "pip check"; }
config=$PWD/config.yaml
cd "$work"  # from outside the repo: nothing imports the source tree by accident
gk=$work/venv/bin/gatekeeper
where=$("$work/venv/bin/python" -c 'import gatekeeper; print(gatekeeper.__file__)')
case "$where" in "$work/venv/"*) ;; *) fail "gatekeeper imported from $where, not the venv" ;; esac
out=$("$gk" --version 2>&1) || fail "gatekeeper --version: $out"
[ "$out" = "gatekeeper $version" ] || fail "gatekeeper --version printed '$out', not 'gatekeeper $version'"
say "ok: $out"
out=$(env -u WAITINGROOM_CONFIG "$gk" check-config 2>&1) || fail "gatekeeper check-config: $out"
grep -q "^store: .*in-memory" <<<"$out" || fail "check-config printed: $out"
out=$(env -u WAITINGROOM_CONFIG "$gk" check-config --config "$config" 2>&1) ||
  fail "gatekeeper check-config --config config.yaml: $out"
say "ok: gatekeeper check-config (built-in defaults, and the repo's config.yaml)"
port=$("$work/venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
env -u WAITINGROOM_CONFIG "$gk" run --host 127.0.0.1 --port "$port" --origin http://127.0.0.1:9 \
  >"$work/run.log" 2>&1 &
server=$!
base=http://127.0.0.1:$port/_gatekeeper
for _ in $(seq 100); do curl -s -o /dev/null -m 1 "$base/healthz" && break; sleep 0.1; done
for path in healthz static/waiting.css static/waiting.js; do
  code=$(curl -s -o /dev/null -w '%{http_code}' "$base/$path")
  [ "$code" = 200 ] || { cat "$work/run.log" >&2; fail "GET /_gatekeeper/$path answered $code"; }
done
kill -TERM "$server"
# 143: uvicorn re-raises the signal after its graceful shutdown, so a process that is not PID 1
# ends "killed by SIGTERM" (as PID 1, in the image, the re-raised signal is ignored: exit 0).
rc=0
wait "$server" || rc=$?
[ "$rc" = 0 ] || [ "$rc" = 143 ] || { cat "$work/run.log" >&2; fail "gatekeeper run exited $rc on SIGTERM"; }
server=""
say "ok: gatekeeper run from the wheel serves /_gatekeeper/healthz and the waiting page's assets, stops on SIGTERM"
say "all checks passed: $NAME $version"
