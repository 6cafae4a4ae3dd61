#!/usr/bin/env bash
# Runs the whole Switchboard test suite on a fresh Debian machine, installing what it needs
# first: Node.js + npm (official socket.io-client, and socket.io + @socket.io/redis-adapter +
# @socket.io/redis-emitter for the mixed-cluster tests, pinned by tests/clients/package-lock.json),
# python-socketio (pinned by tests/clients/requirements.txt), redis-server, haproxy, prometheus and chromium.
# Usage: scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: install Rust with rustup (https://rustup.rs) and re-run scripts/test.sh" >&2
  exit 1
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  step "installing nodejs and npm (apt-get)"
  as_root apt-get update -q
  as_root apt-get install -y -q nodejs npm
fi
if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
  step "installing redis-server and redis-tools (apt-get; the cluster tests start their own servers and Redis Clusters on free ports)"
  as_root apt-get update -q
  as_root apt-get install -y -q redis-server redis-tools
  # Debian starts a system instance on 6379; the tests never use it.
fi
if ! command -v openssl >/dev/null 2>&1; then
  step "installing openssl (apt-get; the security and TLS Redis tests make their keys and certificates with it)"
  as_root apt-get update -q
  as_root apt-get install -y -q openssl
fi
if ! command -v haproxy >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
  step "installing haproxy and prometheus (apt-get; the deploy tests check their configs and run deploy/local-cluster.sh)"
  as_root apt-get update -q
  as_root apt-get install -y -q --no-install-recommends haproxy prometheus
fi
if ! command -v chromium >/dev/null 2>&1; then
  step "installing chromium (apt-get; the browser demo test drives it headless)"
  as_root apt-get update -q
  as_root apt-get install -y -q --no-install-recommends chromium
fi
if ! command -v python3 >/dev/null 2>&1; then
  step "installing python3 and pip (apt-get)"
  as_root apt-get update -q
  as_root apt-get install -y -q python3 python3-pip
fi

step "installing the JavaScript packages (npm ci in tests/clients)"
(cd tests/clients && npm ci --no-audit --no-fund --loglevel=error)

step "installing the browser demo's socket.io-client bundle (npm ci in examples/chat-web)"
(cd examples/chat-web && npm ci --no-audit --no-fund --loglevel=error)

step "installing the Python client (pip, pinned)"
if ! python3 -m pip install -q --disable-pip-version-check -r tests/clients/requirements.txt; then
  # Debian's system Python refuses global installs (PEP 668).
  python3 -m pip install -q --disable-pip-version-check --break-system-packages -r tests/clients/requirements.txt
fi

step "checking formatting (cargo fmt --check)"
cargo fmt --all -- --check

step "linting (cargo clippy -D warnings)"
cargo clippy --workspace --all-targets -- -D warnings

step "running the tests (cargo test --workspace)"
cargo test --workspace "$@"
