#!/usr/bin/env bash
# Install Debian's `prometheus` package (promtool and the server) when either is
# missing: tests/deploy check the alert rules with promtool and scrape a running
# operator with a real Prometheus. Called by `make install`.
#
# Without apt-get this only says so; the deploy tests then fail (never skip) with the
# same advice, so a CI machine cannot pass them without the tools.
set -euo pipefail

if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-prometheus: apt-get is not available; install Prometheus 2.x (promtool and" \
         "prometheus on PATH) yourself, or tests/deploy will fail" >&2
    exit 0
fi
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    SUDO=(sudo)
fi
echo "install-prometheus: installing Debian's prometheus package (promtool + server)"
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus
# The package enables a system-wide server on :9090; the tests start their own.
if [ -d /run/systemd/system ]; then
    "${SUDO[@]}" systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
