#!/usr/bin/env bash
# Installs what scripts/image-check.sh builds and runs the container image with when no Docker
# engine is there: podman with runc (crun rejects a hybrid cgroup layout: "cgroups in hybrid mode
# not supported"), and debootstrap (with gpg, to pick Ubuntu's archive key out of its keyring) for
# the local base image when no registry can be reached.
# Uses apt-get when running as root (or with sudo); otherwise says what is missing.
set -euo pipefail

missing=()
command -v podman >/dev/null 2>&1 || missing+=(podman)
command -v runc >/dev/null 2>&1 || missing+=(runc)
command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || missing+=(debootstrap)
command -v gpg >/dev/null 2>&1 || missing+=(gpg)
command -v curl >/dev/null 2>&1 || missing+=(curl)
[ ${#missing[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  echo "Missing: ${missing[*]}. Install them with your package manager and re-run." >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
    echo "Missing: ${missing[*]}. Run as root or: apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi
echo "Installing ${missing[*]} with apt-get…"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
  "${missing[@]}" >/dev/null
