#!/usr/bin/env bash
# Install a Prometheus server (Debian's `prometheus` package) for the integration
# test tests/integration/test_prometheus.py, which scrapes a real worker with it.
#
# Idempotent and cheap: does nothing when `prometheus` is already on PATH (or at
# /usr/bin/prometheus). Otherwise installs it with apt-get when running as root;
# without root or apt-get it prints why and exits 0, and the test skips.
#
# The package would normally start a `prometheus` systemd service. The test runs
# its own server on a free port, so no service is started: a policy-rc.d that
# denies every start is put in place for the duration of the install (unless one
# exists already, as in most containers), and any service left running by the
# package afterwards is stopped.
set -euo pipefail

if command -v prometheus >/dev/null 2>&1 || [ -x /usr/bin/prometheus ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install-prometheus: prometheus is not installed and this is not root;" \
        "install Debian's 'prometheus' package (apt-get install prometheus) to run" \
        "tests/integration/test_prometheus.py (it is skipped otherwise)." >&2
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-prometheus: prometheus is not installed and apt-get is not available;" \
        "install a prometheus binary on PATH to run tests/integration/test_prometheus.py" \
        "(it is skipped otherwise)." >&2
    exit 0
fi

POLICY=/usr/sbin/policy-rc.d
created_policy=""
cleanup() {
    if [ -n "$created_policy" ]; then
        rm -f "$POLICY"
    fi
}
trap cleanup EXIT
if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\n# temporary, from scripts/install-prometheus.sh\nexit 101\n' >"$POLICY"
    chmod 755 "$POLICY"
    created_policy=1
fi

echo "install-prometheus: installing Debian's prometheus package ..." >&2
start=$(date +%s)
export DEBIAN_FRONTEND=noninteractive
# Refresh the package lists only when apt does not know the package yet.
if ! apt-cache show prometheus >/dev/null 2>&1 \
    || [ -z "$(apt-cache policy prometheus 2>/dev/null | awk '/Candidate:/ {print $2}' | grep -v '(none)')" ]; then
    apt-get -o DPkg::Lock::Timeout=120 update -qq
fi
# A failing service start in the maintainer scripts must not fail the install:
# only the binary is needed. Whether it is usable is checked below.
apt-get -o DPkg::Lock::Timeout=120 install -y -qq --no-install-recommends prometheus >/dev/null || true

# Never leave a package-started server behind (it would hold port 9090).
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    systemctl disable --now prometheus >/dev/null 2>&1 || true
elif [ -x /etc/init.d/prometheus ]; then
    /etc/init.d/prometheus stop >/dev/null 2>&1 || true
fi

if ! /usr/bin/prometheus --version >/dev/null 2>&1; then
    echo "install-prometheus: installing the prometheus package failed;" \
        "tests/integration/test_prometheus.py will be skipped." >&2
    exit 0
fi
echo "install-prometheus: $(/usr/bin/prometheus --version 2>&1 | head -n 1)" \
    "installed in $(($(date +%s) - start)) s" >&2
