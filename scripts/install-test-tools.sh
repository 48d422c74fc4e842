#!/usr/bin/env bash
# Installs what the end-to-end tests drive, from the package registries, into ./tools:
# cast and anvil (Foundry's npm packages) and viem (tests/js drives it with node). Idempotent:
# does nothing when already present.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="$root/tools"
FOUNDRY_VERSION="${FOUNDRY_VERSION:-1.7.1}"
# viem for the client e2e tests (tests/it/clients.rs runs tests/js/*.mjs with node).
VIEM_VERSION="${VIEM_VERSION:-2.57.20}"
mkdir -p "$tools"
need=()
[ -x "$tools/node_modules/@foundry-rs/cast-linux-amd64/bin/cast" ] || need+=("@foundry-rs/cast-linux-amd64@$FOUNDRY_VERSION")
[ -x "$tools/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil" ] || need+=("@foundry-rs/anvil-linux-amd64@$FOUNDRY_VERSION")
grep -q "\"version\": \"$VIEM_VERSION\"" "$tools/node_modules/viem/package.json" 2>/dev/null || need+=("viem@$VIEM_VERSION")
if [ "${#need[@]}" -gt 0 ]; then
  if ! command -v npm >/dev/null 2>&1; then
    echo "npm is required to install cast, anvil and viem for the tests" >&2
    exit 1
  fi
  echo "installing ${need[*]} into $tools" >&2
  (cd "$tools" && [ -f package.json ] || echo '{"private":true}' > "$tools/package.json")
  npm install --prefix "$tools" --no-audit --no-fund --loglevel=error --save-exact "${need[@]}" >&2
fi
mkdir -p "$tools/bin"
ln -sf "$tools/node_modules/@foundry-rs/cast-linux-amd64/bin/cast" "$tools/bin/cast"
ln -sf "$tools/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil" "$tools/bin/anvil"
"$tools/bin/cast" --version >/dev/null
echo "$tools/bin"
