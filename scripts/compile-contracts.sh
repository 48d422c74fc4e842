#!/usr/bin/env bash
# Recompiles the test contracts with solc-js from the npm registry and writes
# tests/contracts/<Name>.bin (creation code, hex). The .bin files are committed; run this
# only after changing a .sol file.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="$root/tools"
mkdir -p "$tools"
[ -x "$tools/node_modules/.bin/solcjs" ] || npm install --prefix "$tools" --no-audit --no-fund --loglevel=error solc@0.8.28 >&2
out="$(mktemp -d)"
cd "$root/tests/contracts"
for src in *.sol; do
  "$tools/node_modules/.bin/solcjs" --bin --optimize -o "$out" "$src" >/dev/null
done
for f in "$out"/*.bin; do
  name="$(basename "$f" .bin)"; name="${name##*_}"
  cp "$f" "$root/tests/contracts/$name.bin"
done
ls "$root/tests/contracts"
