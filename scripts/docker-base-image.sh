#!/usr/bin/env bash
# The base image of the Segmenter image, built from Debian packages alone:
# `debootstrap bookworm` (minbase) with python3.11 and its venv module, then
# `docker import`. For machines that reach Debian's archive but no container
# registry; with a registry, `docker build` uses python:3.11-slim instead.
#
#   scripts/docker-base-image.sh            # prints the image name
#   SEGMENTER_BASE_IMAGE=name:tag scripts/docker-base-image.sh
#
# Cached: nothing is done when the image exists (`docker image rm` it to rebuild).
set -euo pipefail

DOCKER=${DOCKER:-/usr/bin/docker}
IMAGE=${SEGMENTER_BASE_IMAGE:-segmenter-base:bookworm-py3.11}
MIRROR=${SEGMENTER_DEBIAN_MIRROR:-http://deb.debian.org/debian}

if "$DOCKER" image inspect "$IMAGE" >/dev/null 2>&1; then
    echo "$IMAGE"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "docker-base-image: debootstrap needs root" >&2
    exit 2
fi

start=$(date +%s)
rootfs=$(mktemp -d /var/tmp/segmenter-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
echo "docker-base-image: debootstrap bookworm into $rootfs ..." >&2
# minbase: only required packages and apt; python3.11-venv brings python3.11
# and ensurepip (pip for `python3.11 -m venv`; python3-distutils provides the
# python3.11-distutils it depends on, an alternative debootstrap does not
# resolve by itself); ca-certificates for pip at run time.
debootstrap --variant=minbase --include=python3.11-venv,python3-distutils,ca-certificates \
    bookworm "$rootfs" "$MIRROR" >"$rootfs.log" 2>&1 || {
    tail -n 30 "$rootfs.log" "$rootfs/debootstrap/debootstrap.log" >&2 || true
    rm -f "$rootfs.log"
    exit 1
}
rm -f "$rootfs.log"
# Leaner image: no package lists, caches, documentation or locales but C.
chroot "$rootfs" apt-get clean
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
    "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
    "$rootfs"/var/log/*.log "$rootfs"/var/log/apt/*
# `python3` and `python` name the interpreter, as in the python:3.11 images.
ln -sf python3.11 "$rootfs/usr/bin/python3"
ln -sf python3.11 "$rootfs/usr/bin/python"

tar --numeric-owner -C "$rootfs" -c . | "$DOCKER" import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["python3.11"]' \
    --message "debootstrap bookworm minbase + python3.11-venv (scripts/docker-base-image.sh)" \
    - "$IMAGE" >/dev/null
echo "docker-base-image: $IMAGE built in $(($(date +%s) - start)) s" \
    "($("$DOCKER" image inspect --format '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1 / 1e6}'))" >&2
echo "$IMAGE"
