#!/usr/bin/env bash
# Installs the Debian packages the workspace's build needs beyond a Rust toolchain:
# libssl-dev and pkg-config, for kona-p2p's OpenSSL (tests/kona) which .cargo/config.toml
# links against the system library (OPENSSL_NO_VENDOR=1) instead of compiling it from source.
# Idempotent; needs root or passwordless sudo only when something is missing.
set -euo pipefail
if command -v pkg-config >/dev/null 2>&1 && pkg-config --exists openssl 2>/dev/null; then
  exit 0
fi
bash "$(dirname "${BASH_SOURCE[0]}")/apt-install.sh" "kona-p2p build (OpenSSL)" libssl-dev pkg-config
