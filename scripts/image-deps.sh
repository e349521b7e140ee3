#!/usr/bin/env bash
# Installs what scripts/image-check.sh builds and runs the container image with when no Docker
# engine is there: podman with runc (crun rejects a hybrid cgroup layout: "cgroups in hybrid mode
# not supported"), and debootstrap (with gpg, to pick Ubuntu's archive key out of its keyring) for
# the local base image when no registry can be reached.
# Installs what is missing with scripts/apt-install.sh (apt-get, as root or with sudo).
set -euo pipefail

missing=()
command -v podman >/dev/null 2>&1 || missing+=(podman)
command -v runc >/dev/null 2>&1 || missing+=(runc)
command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || missing+=(debootstrap)
command -v gpg >/dev/null 2>&1 || missing+=(gpg)
command -v curl >/dev/null 2>&1 || missing+=(curl)
exec "$(dirname "$0")/apt-install.sh" "${missing[@]}"
