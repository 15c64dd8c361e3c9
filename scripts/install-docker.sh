#!/usr/bin/env bash
# A Docker engine for `make docker-test` (tests/integration/test_docker.py):
# Debian's docker.io (dockerd and a client with BuildKit built in), debootstrap
# (the base image is built from Debian packages: no registry is needed) and
# docker-compose (validates docker-compose.yml); then starts dockerd when no
# daemon answers.
#
# Idempotent: installs only what is missing and starts nothing when a daemon
# answers. Exit status: 0 ready; 2 cannot install here (not root, or no
# apt-get: the reason is printed, the test skips); 1 anything else failed.
#
# dockerd runs with --bridge=none --iptables=false: no bridge network and no
# firewall rules are touched on the host; builds and containers use the host's
# network (`--network host`), where the test broker is.
set -euo pipefail

DOCKER=/usr/bin/docker  # Debian's client: its `docker build` has BuildKit without buildx
LOG=${SEGMENTER_DOCKERD_LOG:-/var/log/segmenter-dockerd.log}

missing=()
[ -x /usr/sbin/dockerd ] && [ -x "$DOCKER" ] || missing+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || missing+=(debootstrap)
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)

if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "install-docker: ${missing[*]} not installed and this is not root;" \
            "run 'make docker' as root (or apt-get install ${missing[*]})" >&2
        exit 2
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "install-docker: ${missing[*]} not installed and apt-get is not available" >&2
        exit 2
    fi
    echo "install-docker: installing ${missing[*]} (Debian packages) ..." >&2
    start=$(date +%s)
    export DEBIAN_FRONTEND=noninteractive
    # Never let the packages start services (dockerd is started below, with our flags).
    POLICY=/usr/sbin/policy-rc.d
    created_policy=""
    if [ ! -e "$POLICY" ]; then
        printf '#!/bin/sh\n# temporary, from scripts/install-docker.sh\nexit 101\n' >"$POLICY"
        chmod 755 "$POLICY"
        created_policy=1
    fi
    trap '[ -n "$created_policy" ] && rm -f "$POLICY"' EXIT
    for package in "${missing[@]}"; do
        if [ -z "$(apt-cache policy "$package" 2>/dev/null | awk '/Candidate:/ {print $2}' | grep -v '(none)')" ]; then
            apt-get -o DPkg::Lock::Timeout=600 update -qq
            break
        fi
    done
    # pigz: parallel gzip, which dockerd uses when present (faster layer handling).
    install() {
        apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
            "${missing[@]}" pigz >/dev/null
    }
    # A stale package list names versions the mirror no longer has: refresh, retry once.
    install || { apt-get -o DPkg::Lock::Timeout=600 update -qq && install; }
    echo "install-docker: installed in $(($(date +%s) - start)) s" >&2
fi

if "$DOCKER" info >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "install-docker: no Docker daemon answers and only root can start one" >&2
    exit 2
fi
echo "install-docker: starting dockerd (log: $LOG)" >&2
setsid /usr/sbin/dockerd --bridge=none --iptables=false --ip-masq=false \
    --log-level=warn </dev/null >>"$LOG" 2>&1 &
for _ in $(seq 1 120); do
    if "$DOCKER" info >/dev/null 2>&1; then
        echo "install-docker: $("$DOCKER" version --format 'dockerd {{.Server.Version}}') ready" >&2
        exit 0
    fi
    sleep 0.5
done
echo "install-docker: dockerd did not answer within 60 s; last lines of $LOG:" >&2
tail -n 20 "$LOG" >&2
exit 1
