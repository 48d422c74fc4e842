#!/usr/bin/env bash
# Installs the Debian packages the workspace's build needs beyond a Rust toolchain:
# libssl-dev and pkg-config, for kona-p2p's OpenSSL (tests/kona) which .cargo/config.toml
# links against the system library (OPENSSL_NO_VENDOR=1) instead of compiling it from source.
# Idempotent; needs root or passwordless sudo only when something is missing.
set -euo pipefail
if command -v pkg-config >/dev/null 2>&1 && pkg-config --exists openssl 2>/dev/null; then
  exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo="sudo -n"; else
    echo "libssl-dev/pkg-config are missing and this user cannot run apt-get (install Debian's libssl-dev and pkg-config)" >&2
    exit 1
  fi
fi
echo "installing Debian's libssl-dev and pkg-config" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >&2 || true
$sudo apt-get install -y -qq --no-install-recommends libssl-dev pkg-config >&2
