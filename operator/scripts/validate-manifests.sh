#!/usr/bin/env bash
# Validates every Kubernetes manifest the operator ships, offline:
#   - kube-validate (Kubernetes 1.33 schemas, --strict) over the CRDs, the
#     chart's CRD copy, the kustomize manifests, the example custom resources
#     (their kinds are reported as unknown and skipped: the Rust tests check
#     them against the CRD types and CEL rules) and the operator's golden files;
#   - helm-lint over the chart with its default values, and over a copy of the
#     chart whose values switch on every optional template (helm-lint cannot
#     take custom values, and helm-sdkpy cannot render templates without a
#     cluster, so the rendered chart itself is not schema-validated).
# Usage: operator/scripts/validate-manifests.sh   (from anywhere)
# The tools come from shared/tools beside the repository, or FLYMQ_TOOLS_DIR.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
tools=${FLYMQ_TOOLS_DIR:-$root/../shared/tools}
for t in kube-validate helm-lint; do
  [ -x "$tools/$t" ] || { echo "validate-manifests: $tools/$t not found; set FLYMQ_TOOLS_DIR" >&2; exit 2; }
done
cd "$root"

echo "== kube-validate"
"$tools/kube-validate" crds charts/flymq-operator/crds deploy/kustomize deploy/examples operator/tests/golden

echo "== helm-lint (default values)"
"$tools/helm-lint" charts/flymq-operator

echo "== helm-lint (every optional template on)"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp -r charts/flymq-operator "$tmp/flymq-operator"
cat > "$tmp/flymq-operator/values.yaml" <<'VALUES'
image:
  repository: ghcr.io/flymq/flymq-operator
  tag: "0.1.0"
  pullPolicy: Always
imagePullSecrets: [registry-credentials]
watchNamespaces: [team-a, team-b]
logging: {level: debug, json: false}
serviceAccount: {create: true, name: flymq-op, annotations: {example.com/role: operator}}
rbac: {create: true, serviceMonitors: false, certManager: false}
resources: {}
podAnnotations: {example.com/a: "1"}
podLabels: {team: messaging}
nodeSelector: {kubernetes.io/os: linux}
tolerations: [{key: dedicated, operator: Exists, effect: NoSchedule}]
affinity: {}
priorityClassName: system-cluster-critical
metrics:
  port: 9000
  service: {enabled: true}
  serviceMonitor: {enabled: true, interval: 15s, labels: {release: prometheus}}
exampleCluster: {enabled: true, name: demo, replicas: 3, storageSize: 5Gi, image: ghcr.io/flymq/flymq:0.1.0, auth: {enabled: false}, networkPolicy: {enabled: false}}
VALUES
"$tools/helm-lint" "$tmp/flymq-operator"
echo "validate-manifests: ok"
