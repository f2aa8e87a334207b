#!/usr/bin/env bash
# Runs every check and test of the project: formatting, clippy, the whole
# workspace's tests (unit, integration against real brokers on loopback),
# and the Kubernetes manifest validation. This is the README's test command
# and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."

# A shared target directory outside the clone lets repeated runs reuse the
# slow RocksDB and Kubernetes crate builds; a fresh machine builds from nothing.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/flymq-target}
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

# Incremental build data of the workspace crates grows with every build
# (tens of GB over many runs, enough to fill a disk): start over past 8 GiB.
incremental="$CARGO_TARGET_DIR/release/incremental"
if [ -d "$incremental" ] && [ "$(du -sk "$incremental" | cut -f1)" -gt $((8 * 1024 * 1024)) ]; then
  rm -rf "$incremental"
fi

scripts/setup.sh

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (warnings are errors)"
cargo clippy --release --workspace --all-targets --locked -- -D warnings

# `cargo test` also builds the `flymq` and `flymq-cli` binaries the
# process-level tests run. clippy --all-targets and test resolve the same
# features, so RocksDB's C++ is compiled once for both.
step "cargo test"
cargo test --release --workspace --locked --no-fail-fast -- --test-threads="${FLYMQ_TEST_THREADS:-2}"

if [ -x operator/scripts/validate-manifests.sh ]; then
  step "Kubernetes manifests and Helm chart"
  operator/scripts/validate-manifests.sh
fi

# The operator end to end against a real API server and controller manager
# (../shared/tools/kube-local) with the broker pods run by
# ../shared/tools/kube-node-emu, the operator on its chart ServiceAccount's
# token. Uses the flymq binary `cargo test` built above.
step "Kubernetes end to end (tests/k8s-e2e/run.sh)"
tests/k8s-e2e/run.sh
