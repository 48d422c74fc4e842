#!/usr/bin/env bash
# The lint gate (scripts/test.sh runs it first; CONTRIBUTING.md): formatting of all three
# workspaces, clippy with warnings denied, rustdoc with warnings denied, and cargo-deny's
# bans/licenses/sources checks (deny.toml). Each step names itself when it fails.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
step() { printf '\n== lint: %s\n' "$*" >&2; }

step "rustfmt (workspace, fuzz/, tests/kona/)"
cargo fmt --all -- --check
(cd fuzz && cargo fmt --all -- --check)
(cd tests/kona && cargo fmt --all -- --check)

step "clippy (workspace, all targets, -D warnings)"
cargo clippy --locked --workspace --all-targets -- -D warnings

step "rustdoc (workspace, no deps, -D warnings)"
RUSTDOCFLAGS="-D warnings" cargo doc --locked --workspace --no-deps

step "cargo deny check bans licenses sources"
deny_bin="$(bash scripts/install-lint-tools.sh)"
"$deny_bin/cargo-deny" --log-level error check bans licenses sources
