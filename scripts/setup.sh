#!/usr/bin/env bash
# Installs what a fresh machine lacks to build FlyMQ: libclang (RocksDB's
# bindings are generated with bindgen) and a C++ compiler. Safe to re-run.
set -euo pipefail

missing=()
if ! ldconfig -p 2>/dev/null | grep -q 'libclang[-.0-9]*\.so'; then missing+=(libclang-dev); fi
command -v c++ >/dev/null 2>&1 || missing+=(g++)
command -v cargo >/dev/null 2>&1 || { echo "setup: cargo is required (install Rust with rustup)" >&2; exit 1; }

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
