#!/usr/bin/env bash
# Installs the Debian packages named as arguments with apt-get, as root or with sudo; without
# either (or without apt-get) it says what is missing and fails. Used by system-deps.sh and
# image-deps.sh once they have worked out what is missing.
set -euo pipefail

[ $# -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "Missing: $*. Install them with your package manager and re-run." >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
    echo "Missing: $*. Run as root or: apt-get install $*" >&2
    exit 1
  fi
fi
echo "Installing $* with apt-get…"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
