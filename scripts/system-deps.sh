#!/usr/bin/env bash
# Installs the system programs the test suite drives for real: redis-server, Chromium, nginx,
# Node.js and npm (docs' minting snippet, axe-core) (and wrk for `make bench`).
# Installs what is missing with scripts/apt-install.sh (apt-get, as root or with sudo).
set -euo pipefail

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || missing+=(chromium)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
exec "$(dirname "$0")/apt-install.sh" "${missing[@]}"
