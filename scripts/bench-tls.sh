#!/usr/bin/env bash
# Produce throughput and p50 with TLS on and off, in one run against one
# broker: the broker serves TLS on 127.0.0.1:19092 and its plaintext
# migration listener on 127.0.0.1:19192 (same process, same data
# directory), and `flymq-cli bench produce` runs against each port in turn,
# ROUNDS times, alternating, so that both see the same machine state.
#
# Usage: scripts/bench-tls.sh [ROUNDS]      (default 3)
#   FLYMQ_BIN, FLYMQ_CLI   binaries (default $CARGO_TARGET_DIR/release/...)
#   BENCH_ARGS             bench options (default: 400000 x 100-byte
#                          single-message produces, 4 connections x 256 in flight)
# Prints one JSON line per run and a summary table (medians).
set -euo pipefail
rounds=${1:-3}
target=${CARGO_TARGET_DIR:-target}
bin=${FLYMQ_BIN:-$target/release/flymq}
cli=${FLYMQ_CLI:-$target/release/flymq-cli}
read -r -a bench_args <<< "${BENCH_ARGS:--n 400000 -c 4 -i 256 -s 100}"
for b in "$bin" "$cli"; do
  [ -x "$b" ] || { echo "bench-tls: $b missing; cargo build --release --workspace" >&2; exit 2; }
done
command -v openssl >/dev/null || { echo "bench-tls: needs openssl to make the test certificate" >&2; exit 2; }

work=$(mktemp -d /var/tmp/flymq-bench-tls-XXXXXX)
pid=""
cleanup() {
  [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# A throwaway CA and an ECDSA P-256 broker certificate for 127.0.0.1.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj "/CN=bench CA" -keyout "$work/ca.key" -out "$work/ca.crt" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -subj "/CN=127.0.0.1" -keyout "$work/tls.key" -out "$work/tls.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\n' > "$work/ext"
openssl x509 -req -in "$work/tls.csr" -CA "$work/ca.crt" -CAkey "$work/ca.key" -CAcreateserial \
  -days 2 -extfile "$work/ext" -out "$work/tls.crt" 2>/dev/null

FLYMQ_TLS_ENABLED=true FLYMQ_TLS_CERT_FILE="$work/tls.crt" FLYMQ_TLS_KEY_FILE="$work/tls.key" \
FLYMQ_PLAINTEXT_BIND_ADDR=127.0.0.1:19192 \
  "$bin" --data-dir "$work/data" --bind-addr 127.0.0.1:19092 --log-level warn \
  --set metrics_addr=127.0.0.1:19094 --set health_addr=127.0.0.1:19095 --set admin_addr=127.0.0.1:19096 \
  > "$work/broker.log" 2>&1 &
pid=$!
for _ in $(seq 100); do
  curl -sf -o /dev/null http://127.0.0.1:19095/health/ready && break
  sleep 0.1
done
curl -sf -o /dev/null http://127.0.0.1:19095/health/ready || { cat "$work/broker.log" >&2; exit 1; }

results="$work/results.jsonl"
for round in $(seq "$rounds"); do
  for mode in plain tls; do
    if [ "$mode" = tls ]; then
      conn=(--bootstrap 127.0.0.1:19092 --tls-ca "$work/ca.crt")
    else
      conn=(--bootstrap 127.0.0.1:19192)
    fi
    line=$("$cli" "${conn[@]}" -o json bench produce -t "$mode-$round" "${bench_args[@]}")
    echo "{\"mode\":\"$mode\",\"round\":$round,\"report\":$line}" | tee -a "$results"
  done
done

python3 - "$results" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def med(mode, f):
    return statistics.median(f(r["report"]) for r in rows if r["mode"] == mode)
tput = {m: med(m, lambda r: r["msgs_per_sec"]) for m in ("plain", "tls")}
p50 = {m: med(m, lambda r: r["latency"]["p50_us"]) for m in ("plain", "tls")}
print()
print("| transport | msgs/s (median of %d) | p50 |" % (len(rows) // 2))
print("|---|---|---|")
for m, name in (("plain", "plaintext"), ("tls", "TLS 1.3")):
    print("| %s | %s | %.2f ms |" % (name, f"{tput[m]:,.0f}", p50[m] / 1000))
print()
print("TLS throughput = %.1f %% of plaintext (cost %.1f %%); p50 x%.2f"
      % (100 * tput["tls"] / tput["plain"], 100 * (1 - tput["tls"] / tput["plain"]), p50["tls"] / p50["plain"]))
EOF
