#!/usr/bin/env bash
# One command for every figure in docs/benchmarks.md:
#   bash bench/run.sh                      # ingest-latency, receipt-throughput, reexec, rpc-ratio
#   bash bench/run.sh ingest-latency       # one of them (extra args go to flashnode-bench)
#   bash bench/run.sh receipt-throughput --duration-secs 5
#   bash bench/run.sh calls                # pending eth_call vs the upstream's latest (needs anvil)
#   bash bench/run.sh overload             # 256 concurrent gas-cap eth_calls: mode + cheap-call p99
#   bash bench/run.sh overload --floor     # the same 256 callers sending eth_chainId (the floor)
#   bash bench/run.sh batch-fairness       # 1,000-call batches vs the same calls one at a time: a cheap eth_call p99
#   bash bench/run.sh reexec               # Mgas/s by flashblock size + bench/results/reexec-mgas.svg
#   bash bench/run.sh cold-state           # #24: cold storage reads, dev vs devnet + node, and the floor
#   bash bench/run.sh cold-state --rate 400 --slots 40 --workloads fresh --out bench/results/cold-state-400x40.json
#   bash bench/run.sh rpc-ratio            # flashnode vs devnet canonical vs anvil (wrk)
#   bash bench/run.sh soak                 # 10 min soak + bench/results/soak.svg; fails on growth
#   bash bench/run.sh soak --duration-secs 120 --warmup-secs 20   # a shorter soak
#   bash bench/run.sh fanout
#   bash bench/run.sh fanout-floor       # the same subscribers on a minimal relay (the floor)
#   bash bench/run.sh fanout-brotli      # subscribers ask for brotli Binary frames
#   bash bench/run.sh fanout-floor-brotli
#   bash bench/run.sh fanout-relay       # the same subscribers on a `flashnode relay` of the node
#   bash bench/run.sh fanout-tree        # ... on the second of two chained relays
#   bash bench/run.sh resume             # kill -9 of a middle relay: the leaf's subscribers catch up
# Builds the release `flashnode` and `flashnode-bench`, installs wrk and anvil if missing, runs
# the scenario(s) against the release binary and writes bench/results/<scenario>.json.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT="$PWD"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"

bash bench/install-tools.sh
tools_bin="$(bash scripts/install-test-tools.sh)"
export FLASHNODE_ANVIL="$tools_bin/anvil" FLASHNODE_CAST="$tools_bin/cast"
cargo build --release --bin flashnode
cargo build --release -p flashnode-bench --bin flashnode-bench

export FLASHNODE_BIN="$TARGET/release/flashnode"
BENCH="$TARGET/release/flashnode-bench"
mkdir -p bench/results

run() {
  local scenario="$1"
  shift
  # The result goes to bench/results/<scenario>.json unless the arguments name a file.
  local out=(--out "bench/results/$scenario.json")
  for arg in "$@"; do
    case "$arg" in --out | --out=*) out=() ;; esac
  done
  echo "== $scenario (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
  "$BENCH" "$scenario" "${out[@]}" "$@"
}

fanout_variant() {
  local name="$1"
  shift
  echo "== fanout $* (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
  "$BENCH" fanout "$@" --out "bench/results/$name.json"
}

if [ "${1:-}" = fanout-floor ]; then
  shift
  fanout_variant fanout-floor --floor "$@"
elif [ "${1:-}" = fanout-brotli ]; then
  shift
  fanout_variant fanout-brotli --brotli "$@"
elif [ "${1:-}" = fanout-floor-brotli ]; then
  shift
  fanout_variant fanout-floor-brotli --floor --brotli "$@"
elif [ "${1:-}" = fanout-relay ]; then
  shift
  fanout_variant fanout-relay --relays 1 "$@"
elif [ "${1:-}" = fanout-tree ]; then
  shift
  fanout_variant fanout-tree --relays 2 "$@"
elif [ $# -gt 0 ]; then
  run "$@"
else
  run ingest-latency
  run receipt-throughput
  run reexec
  run rpc-ratio
fi
