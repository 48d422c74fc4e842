#!/usr/bin/env bash
# Installs the HTTP load tool used by `flashnode-bench receipt-throughput`: wrk (Debian/Ubuntu
# package). Does nothing when wrk is already on PATH.
set -euo pipefail

if command -v wrk >/dev/null 2>&1; then
  echo "wrk already installed: $(command -v wrk)"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "wrk is not installed and apt-get is unavailable; install wrk (https://github.com/wg/wrk) and re-run" >&2
  exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
$SUDO apt-get update
$SUDO apt-get install -y wrk
echo "installed $(command -v wrk)"
