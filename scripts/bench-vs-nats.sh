#!/usr/bin/env bash
# FlyMQ vs NATS JetStream, side by side on this machine, in one run.
#
#   scripts/bench-vs-nats.sh            # full run: 3 rounds, 10 s per workload (~20 min)
#   scripts/bench-vs-nats.sh --quick    # smoke test: 1 round, 1 s per workload (~1 min)
#
# Options: --rounds N, --duration 10s, --warmup 2s, --out FILE (markdown),
# --setups flymq-all,nats-r1,... (default: every setup below), --perf
# (profile the FlyMQ brokers with `perf record -e cpu-clock -g` during
# their runs and add the top symbols to the report; perf costs CPU, so
# compare numbers from runs without it), --threads-per-server N (in the
# 3-server setups, run every server with N threads for its work: FlyMQ's
# `worker_threads`, NATS's GOMAXPROCS; default: each sizes itself for the
# whole machine, one per CPU. One-server setups always use the default).
# Environment: FLYMQ_BIN = broker binary to measure (built from this
# checkout when unset), NATS_SYNC_BIN = a nats-server >= 2.10 for the extra
# `sync_interval: always` setups (Debian's 2.9 has no such setting),
# CARGO_TARGET_DIR as usual.
#
# Setups, each started fresh for every round and torn down after it, all on
# 127.0.1.x loopback addresses (other tests use 127.0.0.x):
#   flymq-all     FlyMQ, 1 broker, acks=all (WAL fsync before every ack)
#   flymq-leader  FlyMQ, 1 broker, acks=leader (WAL synced every 10 ms)
#   nats-r1       NATS, 1 server, JetStream file store, R1 streams
#   flymq-3       FlyMQ, 3 broker processes, replication factor 3
#   nats-r3       NATS, 3-server cluster, R3 file-store streams
#   nats-r1-sync, nats-r3-sync   the NATS setups with sync_interval: always
#                                (only with NATS_SYNC_BIN)
# Every setup gets the same workloads and client settings (flymq-bench run).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

ROUNDS=3
DURATION=10s
CONSUME=600000
WARMUP=2s
SETUPS="flymq-all,nats-r1,flymq-leader,flymq-3,nats-r3"
OUT=""
QUICK=0
PERF=0
THREADS=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1; ROUNDS=1; DURATION=1s; WARMUP=500ms; CONSUME=30000 ;;
    --rounds) ROUNDS=$2; shift ;;
    --duration) DURATION=$2; shift ;;
    --warmup) WARMUP=$2; shift ;;
    --setups) SETUPS=$2; shift ;;
    --out) OUT=$2; shift ;;
    --perf) PERF=1 ;;
    --threads-per-server) THREADS=$2; shift ;;
    -h|--help) sed -n '2,29p' "$0"; exit 0 ;;
    *) echo "bench-vs-nats: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
if [ -n "${NATS_SYNC_BIN:-}" ] && [[ ",$SETUPS," != *",nats-r1-sync,"* ]]; then
  SETUPS="$SETUPS,nats-r1-sync,nats-r3-sync"
fi

NATS_ENV=()  # the 3-server NATS setups' environment
[ -n "$THREADS" ] && NATS_ENV=(GOMAXPROCS="$THREADS")

# Client settings, identical for every setup.
BENCH_ARGS=(--size 100 --connections 3 --in-flight 256 --partitions 3
            --batch 1000 --batch-in-flight 4 --duration "$DURATION" --warmup "$WARMUP"
            --consume-messages "$CONSUME")

log() { printf '==> %s\n' "$*" >&2; }

# --- what the run needs -------------------------------------------------------
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
need_pkgs=()
command -v nats-server >/dev/null 2>&1 || need_pkgs+=(nats-server)
command -v curl >/dev/null 2>&1 || need_pkgs+=(curl)
[ "$PERF" = 1 ] && ! command -v perf >/dev/null 2>&1 && need_pkgs+=(linux-perf)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  log "installing ${need_pkgs[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi
NATS_BIN=$(command -v nats-server)

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/flymq-target}
log "building flymq-bench (release)"
cargo build --release --locked -q -p flymq-bench
BENCH="$CARGO_TARGET_DIR/release/flymq-bench"
BIN_ORIGIN="built from this checkout"
if [ -n "${FLYMQ_BIN:-}" ]; then
  BIN_ORIGIN="given as FLYMQ_BIN, so its source may differ from this checkout"
else
  scripts/setup.sh
  log "building the broker (release; RocksDB's C++ takes a while on a cold cache)"
  cargo build --release --locked -q -p flymq-broker
  FLYMQ_BIN="$CARGO_TARGET_DIR/release/flymq"
fi
[ -x "$FLYMQ_BIN" ] || { echo "bench-vs-nats: FLYMQ_BIN=$FLYMQ_BIN is not an executable" >&2; exit 1; }

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=${OUT:-$CARGO_TARGET_DIR/bench-vs-nats/$STAMP.md}
mkdir -p "$(dirname "$OUT")"
RESULTS="${OUT%.md}.jsonl"
: > "$RESULTS"
# Broker metrics and profiles go next to the report.
EXTRA="${OUT%.md}"
mkdir -p "$EXTRA"
# Data on the real disk (not tmpfs), so that fsync costs what it costs.
WORK=$(mktemp -d /var/tmp/flymq-bench-XXXXXX)
# Brokers in cluster mode authenticate each other with a shared secret.
CLUSTER_SECRET=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
CMDS="$WORK/commands.txt"
LOADS="$WORK/load.txt"
: > "$CMDS"

# --- process control: only our own PIDs -----------------------------------------
PIDS=()
stop_all() {
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  PIDS=()
}
cleanup() {
  local rc=$?
  stop_all
  rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Records a command line once (first round) for the report.
record_cmd() { [ "$ROUND" -eq 1 ] && printf '%s\n' "$*" >> "$CMDS"; return 0; }

# start NAME LOG ENV... -- CMD...: runs a server in the background, clean environment.
start() {
  local name=$1 logf=$2; shift 2
  local envs=()
  while [ "$1" != "--" ]; do envs+=("$1"); shift; done
  shift
  # The recorded command never shows the cluster secret.
  record_cmd "${envs[*]//FLYMQ_CLUSTER_SECRET=*/FLYMQ_CLUSTER_SECRET=<redacted>} $*"
  env -i PATH="$PATH" HOME="$HOME" "${envs[@]}" "$@" > "$logf" 2>&1 &
  PIDS+=($!)
  log "started $name (pid $!)"
}

wait_http() {
  local url=$1 what=$2
  for _ in $(seq 300); do
    curl -sf -o /dev/null "$url" && return 0
    for pid in "${PIDS[@]}"; do
      kill -0 "$pid" 2>/dev/null || { echo "bench-vs-nats: $what exited; its log:" >&2; tail -n 30 "$WORK"/*.log >&2; exit 1; }
    done
    sleep 0.2
  done
  echo "bench-vs-nats: $what not ready after 60 s ($url)" >&2
  exit 1
}

flymq_node() { # ID IP DIR SEEDS [ACKS]
  local id=$1 ip=$2 dir=$3 seeds=$4 acks=${5:-all}
  local envs=(FLYMQ_NODE_ID="$id")
  [ -n "$seeds" ] && [ -n "$THREADS" ] && envs+=(FLYMQ_WORKER_THREADS="$THREADS")
  [ -n "$seeds" ] && envs+=(POD_IP="$ip" FLYMQ_SEEDS="$seeds" FLYMQ_CLUSTER_SECRET="$CLUSTER_SECRET")
  start "flymq node $id on $ip" "$WORK/flymq-$id.log" "${envs[@]}" -- "$FLYMQ_BIN" \
    --data-dir "$dir" --bind-addr "$ip:19092" --log-level warn --acks "$acks" \
    --set "cluster_addr=$ip:19093" --set "metrics_addr=$ip:19094" \
    --set "health_addr=$ip:19095" --set "admin_addr=$ip:19096"
}

nats_conf() { # NAME IP DIR SYNC ROUTES
  local name=$1 ip=$2 dir=$3 sync=$4 routes=$5
  {
    echo "server_name: $name"
    echo "listen: $ip:14222"
    echo "http: $ip:18222"
    if [ "$sync" = 1 ]; then
      echo "jetstream { store_dir: \"$dir\", sync_interval: always }"
    else
      echo "jetstream { store_dir: \"$dir\" }"
    fi
    if [ -n "$routes" ]; then
      echo "cluster { name: bench, listen: $ip:16222, routes: [$routes] }"
    fi
  } > "$WORK/$name.conf"
  record_cmd "# $WORK/$name.conf:"
  [ "$ROUND" -eq 1 ] && sed 's/^/#   /' "$WORK/$name.conf" >> "$CMDS"
  return 0
}

# run_bench LABEL DESCRIBE ARGS...: the measured part, same settings everywhere.
run_bench() {
  local label=$1 describe=$2; shift 2
  local pids; pids=$(IFS=,; echo "${PIDS[*]}")
  record_cmd "flymq-bench run --label $label $* ${BENCH_ARGS[*]} --round $ROUND --server-pid <pids> --out results.jsonl"
  echo "$label round $ROUND: load $(cut -d' ' -f1-3 /proc/loadavg); busiest other processes: $(busiest)" >> "$LOADS"
  local perf_pid=""
  if [ "$PERF" = 1 ] && [[ "$label" == flymq* ]]; then
    perf record -q -e cpu-clock -F 499 -g -p "$pids" -o "$EXTRA/$label-r$ROUND.perf.data" > /dev/null 2>&1 &
    perf_pid=$!
  fi
  "$BENCH" run --label "$label" --describe "$describe" "$@" "${BENCH_ARGS[@]}" \
    --round "$ROUND" --server-pid "$pids" --out "$RESULTS"
  if [ -n "$perf_pid" ]; then
    kill -INT "$perf_pid"; wait "$perf_pid" || true
    perf report -q -i "$EXTRA/$label-r$ROUND.perf.data" --no-children --sort comm,dso,sym --percent-limit 0.7 \
      --stdio -g none 2>/dev/null | sed '/^$/d' | head -n 40 > "$EXTRA/$label-r$ROUND.perf.txt" || true
  fi
}

# Saves every FlyMQ broker's Prometheus metrics (group commit, Raft, ...).
save_metrics() { # LABEL IP...
  local label=$1 ip; shift
  for ip in "$@"; do
    curl -sf "http://$ip:19094/metrics" > "$EXTRA/$label-r$ROUND-$ip.metrics.txt" || true
  done
}

# The three busiest processes that are not ours, for the load record.
busiest() {
  ps -eo pid=,pcpu=,comm= --sort=-pcpu | awk -v mine=" ${PIDS[*]} $$ " \
    'index(mine, " " $1 " ") == 0 && $2 > 5 {printf "%s%s %s%%", sep, $3, $2; sep=", "; if (++n == 3) exit}'
}

run_setup() {
  local setup=$1 dir="$WORK/data-$1-r$ROUND"
  mkdir -p "$dir"
  case "$setup" in
    flymq-all|flymq-leader)
      local acks=all; [ "$setup" = flymq-leader ] && acks=leader
      flymq_node 0 127.0.1.11 "$dir/node-0" "" "$acks"
      wait_http http://127.0.1.11:19095/health/ready "FlyMQ broker"
      run_bench "$setup" "FlyMQ, 1 broker, acks=$acks" --system flymq --servers 127.0.1.11:19092
      save_metrics "$setup" 127.0.1.11
      ;;
    flymq-3)
      local seeds=127.0.1.21:19093,127.0.1.22:19093,127.0.1.23:19093 i
      for i in 0 1 2; do flymq_node "$i" "127.0.1.2$((i + 1))" "$dir/node-$i" "$seeds"; done
      for i in 1 2 3; do wait_http "http://127.0.1.2$i:19095/health/ready" "FlyMQ broker 127.0.1.2$i"; done
      run_bench flymq-3 "FlyMQ, 3 broker processes, replication factor 3 (ack after majority fsync + leader apply)" \
        --system flymq --servers 127.0.1.21:19092,127.0.1.22:19092,127.0.1.23:19092
      save_metrics flymq-3 127.0.1.21 127.0.1.22 127.0.1.23
      ;;
    nats-r1|nats-r1-sync)
      local sync=0 bin=$NATS_BIN durab="file store, default background sync"
      [ "$setup" = nats-r1-sync ] && { sync=1; bin=$NATS_SYNC_BIN; durab="file store, sync_interval: always"; }
      nats_conf n1 127.0.1.1 "$dir/n1" "$sync" ""
      start "nats-server n1" "$WORK/n1.log" -- "$bin" -c "$WORK/n1.conf"
      wait_http "http://127.0.1.1:18222/healthz" "nats-server"
      run_bench "$setup" "NATS $("$bin" --version | awk '{print $2}'), 1 server, JetStream $durab, R1 streams" \
        --system nats --servers nats://127.0.1.1:14222 --replicas 1
      ;;
    nats-r3|nats-r3-sync)
      local sync=0 bin=$NATS_BIN durab="file store, default background sync" i
      [ "$setup" = nats-r3-sync ] && { sync=1; bin=$NATS_SYNC_BIN; durab="file store, sync_interval: always"; }
      local routes="nats-route://127.0.1.1:16222, nats-route://127.0.1.2:16222, nats-route://127.0.1.3:16222"
      for i in 1 2 3; do
        nats_conf "n$i" "127.0.1.$i" "$dir/n$i" "$sync" "$routes"
        start "nats-server n$i" "$WORK/n$i.log" "${NATS_ENV[@]}" -- "$bin" -c "$WORK/n$i.conf"
      done
      for i in 1 2 3; do wait_http "http://127.0.1.$i:18222/healthz" "nats-server n$i"; done
      run_bench "$setup" "NATS $("$bin" --version | awk '{print $2}'), 3-server cluster, JetStream $durab, R3 streams" \
        --system nats --servers nats://127.0.1.1:14222,nats://127.0.1.2:14222,nats://127.0.1.3:14222 --replicas 3
      ;;
    *) echo "bench-vs-nats: unknown setup '$setup'" >&2; exit 2 ;;
  esac
  stop_all
  rm -rf "$dir"
}

# --- the run ------------------------------------------------------------------------
ROUND=0
LOAD_START="$(uptime)"
BUSY_START="$(busiest)"
# One synced 4 KiB write, as a yardstick for every fsync on the ack path.
SYNC_PROBE=$(dd if=/dev/zero of="$WORK/dsync-probe" bs=4k count=500 oflag=dsync 2>&1 |
  awk '/copied/ {for (i = 1; i <= NF; i++) if ($i ~ /^s,?$/) printf "%.0f µs per write (500 writes)", $(i-1) / 500 * 1e6}')
rm -f "$WORK/dsync-probe"
T0=$(date +%s)
IFS=, read -r -a setup_list <<< "$SETUPS"
for ROUND in $(seq "$ROUNDS"); do
  for setup in "${setup_list[@]}"; do
    log "round $ROUND/$ROUNDS: $setup"
    run_setup "$setup"
  done
done
ROUND=0
LOAD_END="$(uptime)"
BUSY_END="$(busiest)"

# --- the report ----------------------------------------------------------------------
commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
git -C "$ROOT" diff --quiet HEAD 2>/dev/null || commit="$commit (with uncommitted changes)"
disk_dev=$(df --output=source "$WORK" | tail -n 1)
{
  echo "# FlyMQ vs NATS JetStream ($(date -u '+%Y-%m-%d %H:%M UTC'))"
  echo
  [ "$QUICK" = 1 ] && { echo "**Quick smoke run (1 round, 1 s per workload): not for comparison.**"; echo; }
  "$BENCH" report --input "$RESULTS"
  echo
  echo "## Machine and load"
  echo
  echo "- CPU: $(nproc) cores, $(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -n 1)"
  echo "- RAM: $(free -g | awk '/^Mem:/ {print $2}') GiB; kernel $(uname -r)"
  echo "- disk: $disk_dev ($(df -T "$WORK" | awk 'NR==2 {print $2}')), 4 KiB O_DSYNC write: $SYNC_PROBE"
  echo "- $("$NATS_BIN" --version), async-nats $(sed -n 's/^async-nats = { version = "\([^"]*\)".*/\1/p' Cargo.toml)"
  [ -n "${NATS_SYNC_BIN:-}" ] && echo "- sync setups: $("$NATS_SYNC_BIN" --version)"
  if [ -n "$THREADS" ]; then
    echo "- threads per server in the 3-server setups: $THREADS (FlyMQ \`worker_threads\`, NATS \`GOMAXPROCS\`); one-server setups: each server's default (one per CPU)"
  else
    echo "- threads per server: each server's default (one per CPU)"
  fi
  echo "- FlyMQ checkout $commit; broker binary \`$FLYMQ_BIN\` ($BIN_ORIGIN; built $(date -u -r "$FLYMQ_BIN" '+%Y-%m-%d %H:%M UTC'))"
  echo "- run took $(( $(date +%s) - T0 )) s; load at start: \`$LOAD_START\`; at end: \`$LOAD_END\`"
  echo "- busiest other processes at start: ${BUSY_START:-none above 5 % CPU}; at end: ${BUSY_END:-none above 5 % CPU}"
  echo
  echo "Load when each setup started:"
  echo
  sed 's/^/- /' "$LOADS"
  echo
  if [ "$PERF" = 1 ]; then
    echo "## Broker CPU profiles (perf record -e cpu-clock -g, self time; runs slowed by perf)"
    echo
    for f in "$EXTRA"/*.perf.txt; do
      [ -e "$f" ] || continue
      echo "$(basename "$f" .perf.txt):"; echo; echo '```'; cat "$f"; echo '```'; echo
    done
  fi
  echo "Broker metrics at the end of each FlyMQ setup: \`$EXTRA/*.metrics.txt\`."
  echo
  echo "## Commands"
  echo
  echo '```'
  echo "scripts/bench-vs-nats.sh --rounds $ROUNDS --duration $DURATION --warmup $WARMUP --setups $SETUPS"
  cat "$CMDS"
  echo '```'
} > "$OUT"
cat "$OUT"
log "report: $OUT (raw results: $RESULTS)"
