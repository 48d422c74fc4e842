#!/usr/bin/env bash
# Installs Debian's Chromium for the status-page test (headless screenshot of the live page).
# Idempotent; prints the browser's path. Needs root or passwordless sudo for apt-get.
set -euo pipefail
if [ -n "${FLASHNODE_CHROMIUM:-}" ] && [ -x "$FLASHNODE_CHROMIUM" ]; then
  echo "$FLASHNODE_CHROMIUM"
  exit 0
fi
for bin in /usr/bin/chromium /usr/bin/chromium-browser; do
  if [ -x "$bin" ]; then echo "$bin"; exit 0; fi
done
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo="sudo -n"; else
    echo "chromium is missing and this user cannot run apt-get (install Debian's chromium package)" >&2
    exit 1
  fi
fi
echo "installing Debian's chromium package" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >&2 || true
$sudo apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >&2
echo /usr/bin/chromium
