#!/usr/bin/env bash
# Builds every cargo-fuzz target in fuzz/ and runs each for a bounded time.
#
#   bash scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# SECONDS_PER_TARGET defaults to 30 (FUZZ_SECONDS overrides it too); with 0 the targets are
# only built. Installs cargo-fuzz from crates.io into tools/cargo-fuzz (gitignored) when it is
# not on PATH. Only a stable toolchain is assumed: targets are built with `--sanitizer none`
# (the address sanitizer needs nightly; the code under test is safe Rust, so what the fuzzer
# hunts is panics, overflows and broken invariants, which debug assertions turn into crashes).
# Crashes land in fuzz/artifacts/<target>/; the corpus grows in fuzz/corpus/<target>/.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
seconds="${1:-${FUZZ_SECONDS:-30}}"
shift || true
CARGO_FUZZ_VERSION="${CARGO_FUZZ_VERSION:-0.13.2}"

if ! cargo fuzz --version >/dev/null 2>&1; then
  fuzz_root="$root/tools/cargo-fuzz"
  if [ ! -x "$fuzz_root/bin/cargo-fuzz" ]; then
    echo "installing cargo-fuzz $CARGO_FUZZ_VERSION into $fuzz_root" >&2
    # Its own target dir: never contend with or pollute the workspace's build cache.
    CARGO_TARGET_DIR="$fuzz_root/build" cargo install --locked --root "$fuzz_root" \
      --version "$CARGO_FUZZ_VERSION" cargo-fuzz >&2
    rm -rf "$fuzz_root/build"
  fi
  export PATH="$fuzz_root/bin:$PATH"
fi

# The fuzz workspace builds under the shared target dir (its own subdirectory: different
# RUSTFLAGS, so nothing would be reused from the main build anyway).
target_dir="${CARGO_TARGET_DIR:-$root/target}/fuzz"
cd fuzz
targets=("$@")
start=$(date +%s)
if [ "${#targets[@]}" -eq 0 ]; then
  # One cargo invocation builds every target.
  cargo fuzz build --sanitizer none --target-dir "$target_dir" >&2
  mapfile -t targets < <(cargo fuzz list)
else
  for t in "${targets[@]}"; do
    cargo fuzz build --sanitizer none --target-dir "$target_dir" "$t" >&2
  done
fi
echo "fuzz build: $(( $(date +%s) - start )) s" >&2
[ "$seconds" -gt 0 ] || exit 0

for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  # Seed inputs checked in under fuzz/seeds/<target> start every run.
  seeds=()
  [ -d "seeds/$t" ] && seeds=("seeds/$t")
  echo "fuzzing $t for ${seconds}s" >&2
  cargo fuzz run --sanitizer none --target-dir "$target_dir" "$t" "corpus/$t" "${seeds[@]}" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 >&2
done
echo "fuzz: every target ran ${seconds}s without a crash" >&2
