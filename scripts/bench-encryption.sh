#!/usr/bin/env bash
# Produce throughput with encryption at rest off and on, side by side in
# one run: a standalone broker (acks=all) on a fresh data directory per
# run, the two modes alternating round by round so both see the same
# machine conditions; prints a markdown table of the medians.
#
#   scripts/bench-encryption.sh                 # 3 rounds, 400,000 messages per run
#   scripts/bench-encryption.sh --rounds 5 --count 200000
#
# Environment: FLYMQ_BIN / FLYMQ_CLI = binaries to measure (default
# $CARGO_TARGET_DIR/release/{flymq,flymq-cli}, built beforehand with
# `cargo build --release --workspace`).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
FLYMQ_BIN=${FLYMQ_BIN:-$TARGET/release/flymq}
FLYMQ_CLI=${FLYMQ_CLI:-$TARGET/release/flymq-cli}
ROUNDS=3
COUNT=400000
BATCH_COUNT=3000000
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift ;;
    --count) COUNT=$2; BATCH_COUNT=$((COUNT * 7)); shift ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "bench-encryption: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
for bin in "$FLYMQ_BIN" "$FLYMQ_CLI"; do
  [ -x "$bin" ] || { echo "bench-encryption: $bin is missing: cargo build --release --workspace" >&2; exit 1; }
done

WORK=$(mktemp -d /tmp/flymq-bench-enc.XXXXXX)
BROKER_PID=""
cleanup() {
  if [ -n "$BROKER_PID" ]; then kill "$BROKER_PID" 2>/dev/null || true; wait "$BROKER_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
KEY=$(openssl rand -hex 32 2>/dev/null || head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
ADDR=127.0.1.60:19092

start_broker() { # $1 = off|on
  local dir=$WORK/data-$1-$RANDOM
  local env=()
  [ "$1" = on ] && env=(FLYMQ_ENCRYPTION_KEY="$KEY")
  env "${env[@]}" "$FLYMQ_BIN" --data-dir "$dir" --bind-addr "$ADDR" --log-level warn \
    --set metrics_addr=127.0.1.60:0 --set health_addr=127.0.1.60:0 --set admin_addr=127.0.1.60:0 \
    2>"$WORK/broker-$1.log" &
  BROKER_PID=$!
  for _ in $(seq 1 100); do
    "$FLYMQ_CLI" -b "$ADDR" topic list >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "bench-encryption: the broker did not start:" >&2; cat "$WORK/broker-$1.log" >&2; exit 1
}

stop_broker() {
  kill "$BROKER_PID"; wait "$BROKER_PID" 2>/dev/null || true; BROKER_PID=""
}

# $1 = workload name, rest = bench args; prints "msgs/s p50"
run_bench() {
  local out
  out=$("$FLYMQ_CLI" -b "$ADDR" bench produce -q "${@:2}" 2>&1)
  local rate p50
  rate=$(sed -n 's/.*throughput: \([0-9]*\) msgs\/s.*/\1/p' <<<"$out")
  p50=$(sed -n 's/.* p50 \([^ ]*\) p99.*/\1/p' <<<"$out")
  [ -n "$rate" ] || { echo "bench-encryption: no result from $1:" >&2; echo "$out" >&2; exit 1; }
  echo "$rate $p50"
}

declare -A RATES P50S
for round in $(seq 1 "$ROUNDS"); do
  for mode in off on; do
    start_broker "$mode"
    read -r r p < <(run_bench pipelined -t p1 -n "$COUNT" -c 4 -i 256)
    RATES[pipelined-$mode]+="$r "; P50S[pipelined-$mode]+="$p "
    read -r r p < <(run_bench batch -t p2 -n "$BATCH_COUNT" -c 2 -i 8 --batch 1000)
    RATES[batch-$mode]+="$r "; P50S[batch-$mode]+="$p "
    stop_broker
    echo "round $round, encryption $mode: done" >&2
  done
done

median() { tr ' ' '\n' | sed '/^$/d' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "| workload | encryption off (msgs/s, median of $ROUNDS) | encryption on | on / off | p50 off → on (each run) |"
echo "|---|---|---|---|---|"
for w in pipelined batch; do
  off=$(median <<<"${RATES[$w-off]}")
  on=$(median <<<"${RATES[$w-on]}")
  ratio=$(awk -v a="$on" -v b="$off" 'BEGIN {printf "%.2f", a / b}')
  echo "| $w | $off | $on | $ratio | ${P50S[$w-off]% } → ${P50S[$w-on]% } |"
done
echo
echo "all runs (msgs/s): pipelined off: ${RATES[pipelined-off]}/ on: ${RATES[pipelined-on]}; batch off: ${RATES[batch-off]}/ on: ${RATES[batch-on]}"
