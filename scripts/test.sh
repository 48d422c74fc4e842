#!/usr/bin/env bash
# The project's one test command (the README's second command; .ci/run calls it).
# Installs the test tools, builds the binary, then runs every test of the workspace.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# System libraries of the build (libssl-dev, pkg-config: kona-p2p in tests/kona).
bash scripts/install-build-deps.sh
# The lint gate first (rustfmt, clippy and rustdoc with warnings denied, cargo-deny):
# CONTRIBUTING.md. FLASHNODE_LINT=0 skips it while iterating.
if [ "${FLASHNODE_LINT:-1}" = "1" ]; then
  bash scripts/lint.sh
fi
tools_bin="$(bash scripts/install-test-tools.sh)"
export PATH="$tools_bin:$PATH"
export FLASHNODE_CAST="$tools_bin/cast"
export FLASHNODE_ANVIL="$tools_bin/anvil"
# Headless Chromium for the status-page test (Debian's package).
FLASHNODE_CHROMIUM="$(bash scripts/install-browser.sh)"
export FLASHNODE_CHROMIUM
# The e2e tests spawn the real binary.
cargo build --locked --bin flashnode
export FLASHNODE_BIN="${CARGO_TARGET_DIR:-$root/target}/debug/flashnode"
# Interop with kona-p2p (docs/gossip.md): tests/kona is a workspace of its own (kona needs an
# older alloy-primitives than flashnode's alloy 2) sharing the target dir; it drives the
# binary built above. A filter in "$@" that matches none of its tests is fine.
kona=(--manifest-path tests/kona/Cargo.toml --target-dir "${CARGO_TARGET_DIR:-$root/target}")
if command -v cargo-nextest >/dev/null 2>&1 || cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --locked --workspace --no-fail-fast --test-threads 2 "$@"
  cargo nextest run --locked "${kona[@]}" --no-fail-fast --test-threads 2 --no-tests=pass "$@"
else
  cargo test --locked --workspace --no-fail-fast "$@" -- --test-threads 2
  cargo test --locked "${kona[@]}" --no-fail-fast "$@" -- --test-threads 2
fi
# Fuzzing (docs/fuzzing.md): every target is built (the whole dependency tree again, with
# coverage instrumentation: ~15 min cold on 2 cores, seconds when warm) and run briefly, so a
# target that stops compiling or a quick crash shows up in CI. FLASHNODE_FUZZ=0 skips it;
# FLASHNODE_FUZZ_SECONDS sets the time per target (long campaigns: scripts/fuzz.sh 3600).
if [ "${FLASHNODE_FUZZ:-1}" = "1" ]; then
  bash scripts/fuzz.sh "${FLASHNODE_FUZZ_SECONDS:-15}"
fi
