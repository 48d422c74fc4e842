#!/usr/bin/env bash
# One command for every figure in docs/benchmarks.md:
#   bash bench/run.sh                      # both scenarios
#   bash bench/run.sh ingest-latency       # one of them (extra args go to flashnode-bench)
#   bash bench/run.sh receipt-throughput --duration-secs 5
#   bash bench/run.sh calls                 # pending eth_call vs the upstream's latest (needs anvil)
# Builds the release `flashnode` and `flashnode-bench`, installs wrk if missing, runs the
# scenario(s) against the release binary and writes bench/results/<scenario>.json.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT="$PWD"

bash bench/install-tools.sh
cargo build --release --bin flashnode
cargo build --release -p flashnode-bench --bin flashnode-bench

export FLASHNODE_BIN="$ROOT/target/release/flashnode"
BENCH="$ROOT/target/release/flashnode-bench"
mkdir -p bench/results

run() {
  local scenario="$1"
  shift
  echo "== $scenario (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
  "$BENCH" "$scenario" --out "bench/results/$scenario.json" "$@"
}

if [ $# -gt 0 ]; then
  run "$@"
else
  run ingest-latency
  run receipt-throughput
fi
