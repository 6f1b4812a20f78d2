#!/usr/bin/env bash
# Make a Docker engine and the local base image available for the Docker tests.
# Idempotent and fast when everything is already there:
#   1. install docker.io, debootstrap, docker-registry and chromium (the UI test's headless
#      browser) with apt-get if missing;
#   2. start dockerd in the background if no engine answers (waits for `docker info`);
#   3. build the base image (Debian bookworm + python3, venv, pip, CA certificates) with
#      debootstrap + `docker import` if it is missing. No image registry is reachable here,
#      so the image is made locally; the rootfs tarball is cached so a rerun skips debootstrap.
set -euo pipefail

BASE_IMAGE="${PREFECT_MLTRAIN_BASE_IMAGE:-prefect-mltrain-base:bookworm}"
CACHE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/prefect-mltrain"
ROOTFS_TAR="$CACHE_DIR/rootfs-bookworm.tar"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

log() { echo "[docker-setup] $*"; }

need_pkgs=()
command -v dockerd >/dev/null 2>&1 || need_pkgs+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || need_pkgs+=(debootstrap)
# A registry on loopback for the push test (the tests start it themselves).
command -v docker-registry >/dev/null 2>&1 || need_pkgs+=(docker-registry)
# Headless Chromium for tests/test_ui_deployment.py (the Prefect UI's deployment pages).
command -v chromium >/dev/null 2>&1 || need_pkgs+=(chromium)
if [ "${#need_pkgs[@]}" -gt 0 ]; then
    log "installing ${need_pkgs[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        "${need_pkgs[@]}" >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
    log "starting dockerd (log: /tmp/dockerd.log)"
    # setsid: the engine outlives this script and the shell that ran it.
    $SUDO setsid dockerd >/tmp/dockerd.log 2>&1 < /dev/null &
    for _ in $(seq 1 60); do
        docker info >/dev/null 2>&1 && break
        sleep 1
    done
    if ! docker info >/dev/null 2>&1; then
        log "dockerd did not come up within 60 s; last lines of /tmp/dockerd.log:"
        tail -n 30 /tmp/dockerd.log >&2 || true
        exit 1
    fi
fi
log "engine up: $(docker version --format '{{.Server.Version}}')"

if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    log "base image $BASE_IMAGE present"
    exit 0
fi

mkdir -p "$CACHE_DIR"
if [ ! -s "$ROOTFS_TAR" ]; then
    log "debootstrap bookworm into a temporary root (about a minute)"
    root="$(mktemp -d)"
    trap '$SUDO rm -rf "$root"' EXIT
    $SUDO debootstrap --variant=minbase \
        --include=python3,python3-venv,python3-pip,ca-certificates \
        bookworm "$root" "$MIRROR" >/tmp/debootstrap.log 2>&1 || {
            log "debootstrap failed; last lines of /tmp/debootstrap.log:"
            tail -n 30 /tmp/debootstrap.log >&2
            exit 1
        }
    $SUDO rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    # Write to a temporary name first: an interrupted run never leaves a truncated cache.
    $SUDO tar -C "$root" -cf "$ROOTFS_TAR.tmp" .
    mv "$ROOTFS_TAR.tmp" "$ROOTFS_TAR"
fi
log "importing $ROOTFS_TAR as $BASE_IMAGE"
docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    "$ROOTFS_TAR" "$BASE_IMAGE" >/dev/null
log "base image $BASE_IMAGE ready"
