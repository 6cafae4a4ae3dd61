#!/usr/bin/env bash
# Runs the socket.io-client package's own test suite, unmodified, against the `client-fixture`
# example, RUNS times, and prints one line per run (passing, failing, pending).
#
# Usage: scripts/client-suite.sh SUITES_DIR [RUNS]
#   SUITES_DIR  a folder holding `socket.io-client/test/` (the suite as published: index.ts,
#               connection.ts, socket.ts, ..., support/, fixtures/)
#   RUNS        runs (default 1)
#
# socket.io-client 4.8 and the suite's dev dependencies (mocha, tsx, expect.js, ...) are
# installed with `npm ci` from tests/client-suite/package-lock.json into a temporary directory.
# The tests import the client as `..`, so they are copied (at run time, into that temporary
# directory only) to a `test/` folder inside the installed package. mocha runs them with
# tests/client-suite/hooks.mjs instead of the suite's own hooks: it starts the fixture binary
# before the first test and stops it after the last. The suite expects the server on
# localhost:3210: as root (with unshare and ip) the fixture and the tests run in a private
# network namespace, so another server on the machine's port 3210 does not matter; otherwise
# that port must be free. A run is clean when mocha exits 0 with at least EXPECTED_PASSING
# passing tests (default 111, every test the suite runs under Node). Exits 1 when a run is not
# clean, or, with MIN_CLEAN=N in the environment, when fewer than N runs are clean (every
# failing run is still printed). PRIORITY=rt (the default) runs mocha, and so the fixture it
# starts, with the real-time policy (chrt -f 10) when permitted (root), as scripts/official-suites.sh
# does; PRIORITY=nice runs them at nice -10; PRIORITY=none at normal priority.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

PORT=3210
EXPECTED_PASSING=${EXPECTED_PASSING:-111}

# shellcheck source=scripts/lib/suites.sh
. scripts/lib/suites.sh
suite_args scripts/client-suite.sh "socket.io-client/test/" "$@"
if ! [[ "$EXPECTED_PASSING" =~ ^[0-9]+$ ]]; then
  echo "EXPECTED_PASSING '$EXPECTED_PASSING' must be a whole number" >&2
  exit 64
fi
TESTS=$SUITES_DIR/socket.io-client/test
for f in index.ts connection.ts socket.ts support/util.ts; do
  if [ ! -f "$TESTS/$f" ]; then
    echo "$TESTS/$f is missing: SUITES_DIR must hold the socket.io-client suite as published" >&2
    exit 64
  fi
done
for tool in node npm cargo; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "$tool not found: install it (scripts/test.sh installs node and npm) and re-run" >&2
    exit 1
  }
done


WORK=$(mktemp -d -t switchboard-client-suite.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM

step "installing socket.io-client and the suite's dev dependencies (npm ci from tests/client-suite's lockfile, in a temporary directory)"
cp tests/client-suite/package.json tests/client-suite/package-lock.json "$WORK/"
(cd "$WORK" && npm ci --no-audit --no-fund --loglevel=error)
PKG=$WORK/node_modules/socket.io-client
cp -R "$TESTS" "$PKG/test"

step "building the client-fixture example"
cargo build -q -p switchboard --example client-fixture
export CLIENT_FIXTURE_BIN=$ROOT/target/debug/examples/client-fixture
export CLIENT_FIXTURE_PORT=$PORT
export CLIENT_FIXTURE_LOG=$WORK/fixture.log
HOOKS=$ROOT/tests/client-suite/hooks.mjs

# A number from mocha's summary (`  111 passing (8s)`), 0 when the line is absent.
summary_count() {
  awk -v word="$1" '$2 == word && $1 ~ /^[0-9]+$/ { n = $1; exit } END { print n + 0 }' "$2"
}

# Runs the suite RUNS times; the hooks start and stop the fixture in each run.
run_suite() {
  failed_runs=0
  for run in $(seq 1 "$RUNS"); do
    log="$WORK/run$run.log"
    status=0
    # $PRIO is empty or a command prefix (chrt/nice): unquoted on purpose; the fixture, started
    # by the hooks, inherits it.
    # shellcheck disable=SC2086
    (cd "$PKG" && RUST_LOG=${RUST_LOG:-warn} $PRIO ../.bin/mocha --import=tsx --require "$HOOKS" --exit \
      --reporter dot --no-colors test/index.ts) >"$log" 2>&1 || status=$?
    passing=$(summary_count passing "$log")
    failing=$(summary_count failing "$log")
    pending=$(summary_count pending "$log")
    line="$passing passing, $failing failing, $pending pending"
    if [ "$status" -eq 0 ] && [ "$passing" -ge "$EXPECTED_PASSING" ]; then
      echo "socket.io-client run $run/$RUNS: ok ($line)"
    else
      failed_runs=$((failed_runs + 1))
      echo "socket.io-client run $run/$RUNS: FAILED ($line; mocha exit $status, $EXPECTED_PASSING expected to pass)"
      if grep -q 'passing' "$log"; then sed -n '/passing/,$p' "$log"; else tail -n 40 "$log"; fi | sed 's/^/    /'
      mkdir -p "$ROOT/target/client-suite"
      cp "$CLIENT_FIXTURE_LOG" "$ROOT/target/client-suite/fixture-run$run.log" 2>/dev/null || true
    fi
  done
  step "summary"
  echo "socket.io-client: $((RUNS - failed_runs)) of $RUNS runs clean"
  if [ "$failed_runs" -gt 0 ]; then
    echo "$failed_runs run(s) failed; the failing tests are listed above, the fixture's logs are in" \
      "target/client-suite/ (RUST_LOG=debug scripts/client-suite.sh ... for more)" >&2
    if [ $((RUNS - failed_runs)) -lt "$MIN_CLEAN" ]; then
      echo "fewer than $MIN_CLEAN clean run(s): failing" >&2
      exit 1
    fi
    echo "at least $MIN_CLEAN clean run(s) (MIN_CLEAN): not failing" >&2
  fi
}

# The suite's port is fixed, and other servers on this machine may hold it: when we may create a
# private network namespace (root, unshare and ip present), the fixture and the tests run in one
# that has only its own loopback. Otherwise they use the machine's loopback.
if can_unshare_net; then
  step "running in a private network namespace (own loopback, port $PORT is ours); $RUNS run(s)${PRIO:+ under $PRIO}"
  export WORK PKG HOOKS RUNS EXPECTED_PASSING MIN_CLEAN ROOT PRIO
  export -f run_suite step summary_count
  unshare --net bash -c 'set -euo pipefail; ip link set lo up; run_suite'
else
  step "running on the machine's loopback (port $PORT must be free); $RUNS run(s)"
  run_suite
fi
