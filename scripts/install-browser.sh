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
bash "$(dirname "${BASH_SOURCE[0]}")/apt-install.sh" "status-page test" chromium fonts-dejavu-core
echo /usr/bin/chromium
