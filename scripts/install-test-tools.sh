#!/usr/bin/env bash
# Installs what the end-to-end tests drive, from the package registries, into ./tools:
# cast and anvil (Foundry's npm packages), viem and ethers (tests/js drives them with node), and
# web3.py in a virtualenv at ./tools/py (tests/py drives it; FLASHNODE_PYTHON names its python).
# Idempotent: does nothing when already present. Prints the directory of cast and anvil.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="$root/tools"
FOUNDRY_VERSION="${FOUNDRY_VERSION:-1.7.1}"
# viem for the client e2e tests (tests/it/clients.rs runs tests/js/*.mjs with node).
VIEM_VERSION="${VIEM_VERSION:-2.57.20}"
# ethers v6 and web3.py for the strict-client tests (#28: they require a non-null blockHash).
ETHERS_VERSION="${ETHERS_VERSION:-6.17.0}"
WEB3PY_VERSION="${WEB3PY_VERSION:-8.0.0}"
mkdir -p "$tools"
need=()
[ -x "$tools/node_modules/@foundry-rs/cast-linux-amd64/bin/cast" ] || need+=("@foundry-rs/cast-linux-amd64@$FOUNDRY_VERSION")
[ -x "$tools/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil" ] || need+=("@foundry-rs/anvil-linux-amd64@$FOUNDRY_VERSION")
grep -q "\"version\": \"$VIEM_VERSION\"" "$tools/node_modules/viem/package.json" 2>/dev/null || need+=("viem@$VIEM_VERSION")
grep -q "\"version\": \"$ETHERS_VERSION\"" "$tools/node_modules/ethers/package.json" 2>/dev/null || need+=("ethers@$ETHERS_VERSION")
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
# web3.py from PyPI into a virtualenv of its own (never the system's site-packages).
py="$tools/py/bin/python"
if ! "$py" -c "import web3, sys; sys.exit(web3.__version__ != '$WEB3PY_VERSION')" 2>/dev/null; then
  echo "installing web3==$WEB3PY_VERSION into $tools/py" >&2
  if ! python3 -m venv "$tools/py" >&2 2>/dev/null; then
    bash "$root/scripts/apt-install.sh" "web3.py tests (python venv)" python3 python3-venv >&2
    rm -rf "$tools/py"
    python3 -m venv "$tools/py" >&2
  fi
  "$py" -m pip install --quiet --disable-pip-version-check "web3==$WEB3PY_VERSION" >&2
fi
ln -sf "$py" "$tools/bin/python-web3"
echo "$tools/bin"
