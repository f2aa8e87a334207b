#!/usr/bin/env bash
# Runs the operator's end-to-end tests (this crate) against a real Kubernetes
# control plane on this machine, the way CI does:
#
#   1. builds the flymq-operator binary and the tests (before any cluster
#      runs, so the cluster lives only as long as the tests);
#   2. starts ../shared/tools/kube-local (kube-apiserver, controller manager
#      and etcd v1.32 on loopback) with a fresh etcd, and
#      ../shared/tools/kube-node-emu, which runs the broker pods as local
#      `flymq` processes ($FLYMQ_BIN) on 127.0.0.x;
#   3. installs the CRDs and the Helm chart (its ServiceAccount and RBAC;
#      the operator Deployment is scaled to zero: no kubelet runs it), without
#      the ServiceMonitor and Certificate CRDs;
#   4. runs the operator binary with a kubeconfig holding the chart's
#      ServiceAccount token (`kubectl create token`), so RBAC is exercised;
#   5. runs the tests of tests/k8s-e2e with FLYMQ_E2E_OPERATOR=deployed
#      and the client Service reached directly (kube-node-emu resolves
#      Service names through /etc/hosts);
#   6. always tears everything down (operator, kube-node-emu, control plane).
#
# Needs root (kube-local installs etcd and kubectl from Debian; kube-node-emu
# writes /etc/hosts) and the ports of kube-local (6443, 2379, 10257): a
# control plane someone else runs on this machine is never touched, the run
# stops instead.
#
# Usage: tests/k8s-e2e/run.sh   (from anywhere)
#   FLYMQ_BIN        the broker binary (default $CARGO_TARGET_DIR/release/flymq,
#                    which `cargo test --workspace` builds)
#   FLYMQ_TOOLS_DIR  the shared tools (default ../shared/tools beside the repo)
#   FLYMQ_E2E_KEEP=1 leave the control plane running afterwards (for a look)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
tools=${FLYMQ_TOOLS_DIR:-$root/../shared/tools}
for t in kube-local kube-node-emu _venv.sh; do
  [ -e "$tools/$t" ] || { echo "k8s-e2e: $tools/$t not found; set FLYMQ_TOOLS_DIR" >&2; exit 2; }
done
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/flymq-target}
export FLYMQ_BIN=${FLYMQ_BIN:-$CARGO_TARGET_DIR/release/flymq}
[ -x "$FLYMQ_BIN" ] || { echo "k8s-e2e: no broker binary at $FLYMQ_BIN; build it (cargo build --release -p flymq-broker) or set FLYMQ_BIN" >&2; exit 2; }
cd "$root"
started=$(date +%s)
log() { echo "k8s-e2e [$(( $(date +%s) - started ))s]: $*"; }

# The e2e test targets and the flymq-operator binary, with the features
# `cargo test --workspace` resolves (scripts/test.sh built exactly these
# before, so nothing is compiled again there). `crds` also names the
# operator's CRD drift test, which runs in a second.
targets=(--workspace --test crds --test lifecycle --test volume_loss --test secure)
log "building the operator and the tests"
cargo test --release --locked "${targets[@]}" --no-run

# A control plane of this run's own: its state (and etcd data) in one
# directory, wiped first, so every run starts from an empty cluster.
export KUBE_LOCAL_DIR=${FLYMQ_E2E_KUBE_DIR:-$HOME/.cache/flymq-e2e-kube}
if ! [ -f "$KUBE_LOCAL_DIR/apiserver.pid" ] && (exec 3<>/dev/tcp/127.0.0.1/6443) 2>/dev/null; then
  echo "k8s-e2e: something else listens on 127.0.0.1:6443 (another kube-local?); not touching it" >&2
  exit 2
fi
work=$(mktemp -d /tmp/flymq-k8s-e2e.XXXXXX)
emu_pid=""
operator_pid=""
teardown() {
  local rc=$?
  set +e
  if [ "$rc" -ne 0 ]; then
    for f in operator.log emu.log; do
      [ -f "$work/$f" ] && { echo "---- last lines of $f"; tail -n 60 "$work/$f"; }
    done
  fi
  [ -n "$operator_pid" ] && kill "$operator_pid" 2>/dev/null && wait "$operator_pid" 2>/dev/null
  # SIGTERM: kube-node-emu stops its brokers and clears its /etc/hosts block.
  [ -n "$emu_pid" ] && kill "$emu_pid" 2>/dev/null && wait "$emu_pid" 2>/dev/null
  if [ "${FLYMQ_E2E_KEEP:-0}" = 1 ]; then
    log "FLYMQ_E2E_KEEP=1: control plane kept (KUBE_LOCAL_DIR=$KUBE_LOCAL_DIR $tools/kube-local down)"
  else
    "$tools/kube-local" down
    rm -rf "$work"
  fi
  log "done (exit $rc)"
  exit "$rc"
}
trap teardown EXIT

log "starting the control plane"
"$tools/kube-local" reset
"$tools/kube-local" up >/dev/null
admin_kc=$KUBE_LOCAL_DIR/kubeconfig
export KUBECONFIG=$admin_kc
for _ in $(seq 60); do
  kubectl get serviceaccount default -n default >/dev/null 2>&1 && break
  sleep 1
done

log "starting kube-node-emu (brokers: $FLYMQ_BIN)"
python3 "$tools/kube-node-emu" --root "$work/emu" >"$work/emu.log" 2>&1 &
emu_pid=$!

log "installing the CRDs and the Helm chart (no ServiceMonitor or Certificate CRDs)"
for f in crds/*.flymq.io.yaml; do kubectl apply --server-side -f "$f" >/dev/null; done
# shellcheck source=/dev/null
. "$tools/_venv.sh"
need cffi
need helm-sdkpy --ignore-requires-python
"$venv/bin/python" - "$admin_kc" "$root/charts/flymq-operator" <<'PY'
import asyncio, sys
import helm_sdkpy as helm
config = helm.Configuration(namespace="flymq-system", kubeconfig=sys.argv[1])
asyncio.run(helm.Install(config).run("flymq-operator", sys.argv[2], create_namespace=True, wait=False, timeout=120))
PY
# The chart's Deployment would run the operator image; no kubelet runs it
# here, so the binary runs below under the same ServiceAccount.
kubectl -n flymq-system scale deployment/flymq-operator --replicas=0 >/dev/null

token=$(kubectl -n flymq-system create token flymq-operator --duration=2h)
cat >"$work/operator.kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters: [{name: local, cluster: {server: "https://127.0.0.1:6443", certificate-authority: $KUBE_LOCAL_DIR/pki/ca.crt}}]
users: [{name: flymq-operator, user: {token: "$token"}}]
contexts: [{name: operator, context: {cluster: local, user: flymq-operator, namespace: flymq-system}}]
current-context: operator
KC
if KUBECONFIG=$work/operator.kubeconfig kubectl auth can-i create customresourcedefinitions >/dev/null 2>&1; then
  echo "k8s-e2e: the operator's token may create CRDs: it is not the chart's ServiceAccount" >&2
  exit 1
fi

log "running the operator as system:serviceaccount:flymq-system:flymq-operator"
KUBECONFIG=$work/operator.kubeconfig FLYMQ_OPERATOR_HTTP_ADDR=127.0.0.1:0 FLYMQ_OPERATOR_LOG=info,flymq_operator=debug \
  "$CARGO_TARGET_DIR/release/flymq-operator" run >"$work/operator.log" 2>&1 &
operator_pid=$!

log "running tests/k8s-e2e"
KUBECONFIG=$admin_kc FLYMQ_E2E_OPERATOR=deployed FLYMQ_E2E_CLIENT_ACCESS=in-cluster \
  FLYMQ_E2E_TIMEOUT_SECS=${FLYMQ_E2E_TIMEOUT_SECS:-240} FLYMQ_E2E_EMU_ROOT="$work/emu" FLYMQ_E2E_BROKER_BIN="$FLYMQ_BIN" \
  cargo test --release --locked "${targets[@]}" -- --test-threads=1 --nocapture
