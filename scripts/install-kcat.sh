#!/usr/bin/env bash
# Install kcat (Debian's `kcat` package, librdkafka's command-line client) for the
# integration tests that produce with a client we did not write
# (tests/integration/test_repartition.py and the repartition fault test).
#
# Idempotent and cheap: does nothing when `kcat` is already on PATH. Otherwise
# installs it with apt-get when running as root; without root or apt-get it
# prints why and exits 0, and those tests skip with the same message.
set -euo pipefail

if command -v kcat >/dev/null 2>&1; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install-kcat: kcat is not installed and this is not root;" \
        "install Debian's 'kcat' package (apt-get install kcat) to run the kcat" \
        "integration tests (they are skipped otherwise)." >&2
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-kcat: kcat is not installed and apt-get is not available;" \
        "install a kcat binary on PATH to run the kcat integration tests" \
        "(they are skipped otherwise)." >&2
    exit 0
fi

echo "install-kcat: installing Debian's kcat package ..." >&2
start=$(date +%s)
export DEBIAN_FRONTEND=noninteractive
# Refresh the package lists only when apt does not know the package yet.
if ! apt-cache show kcat >/dev/null 2>&1 \
    || [ -z "$(apt-cache policy kcat 2>/dev/null | awk '/Candidate:/ {print $2}' | grep -v '(none)')" ]; then
    apt-get -o DPkg::Lock::Timeout=600 update -qq
fi
apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends kcat >/dev/null || true

if ! kcat -V >/dev/null 2>&1; then
    echo "install-kcat: installing the kcat package failed;" \
        "the kcat integration tests will be skipped." >&2
    exit 0
fi
echo "install-kcat: kcat $(kcat -V 2>&1 | awk '/^Version/ {print $2}') installed in $(($(date +%s) - start)) s" >&2
