#!/usr/bin/env bash
# Runs the official Engine.IO v4 and Socket.IO v5 protocol test suites, unmodified, against the
# `conformance` example, RUNS times each, and prints one line per run.
#
# Usage: scripts/official-suites.sh SUITES_DIR [RUNS]
#   SUITES_DIR  a folder holding `engine.io-v4/` and `socket.io-v5/`, each with `test-suite.js`,
#               `node-imports.js`, `package.json` and `package-lock.json` (the suites as published)
#   RUNS        runs per suite (default 1)
#
# Each suite's npm dependencies are installed with `npm ci` from its own lockfile into a temporary
# directory. The suite's files are not copied or changed: the temporary directory holds symlinks
# to them next to its `node_modules`, and node runs with `--preserve-symlinks` so that the suite's
# `import "mocha"`/`"ws"`/... resolve from the symlink's folder. The suites expect the server on
# localhost:3000: as root (with unshare and ip) the server and the suites run in a private
# network namespace, so another server on the machine's port 3000 does not matter; otherwise
# that port must be free. Exits 1 when any run has a failing test, or, with MIN_CLEAN=N in the
# environment, when a suite has fewer than N clean runs (the others are still reported).
# PRIORITY=rt (the default) runs the server and the suites' node process with the real-time
# policy (chrt -f 10) when permitted (root), as a latency-sensitive deployment would run its
# server; PRIORITY=nice runs them at nice -10; PRIORITY=none at normal priority. The suites'
# tightest cases (a GET aborted 5 ms after it is started, two GETs started 5 ms apart) are
# decided in the test process before a byte reaches the server: a CPU-starved test process
# measures its own scheduling, not the server (docs/official-suites.md).
set -euo pipefail
cd "$(dirname "$0")/.."

SUITES=(engine.io-v4 socket.io-v5)
PORT=3000

# shellcheck source=scripts/lib/suites.sh
. scripts/lib/suites.sh
suite_args scripts/official-suites.sh "engine.io-v4/ and socket.io-v5/" "$@"
for suite in "${SUITES[@]}"; do
  for f in test-suite.js node-imports.js package.json package-lock.json; do
    if [ ! -f "$SUITES_DIR/$suite/$f" ]; then
      echo "$SUITES_DIR/$suite/$f is missing: SUITES_DIR must hold the official suites as published" >&2
      exit 64
    fi
  done
done
for tool in node npm cargo curl; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "$tool not found: install it (scripts/test.sh installs node and npm) and re-run" >&2
    exit 1
  }
done


stop_server() {
  if [ -n "${SERVER_PID:-}" ]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
}

WORK=$(mktemp -d -t switchboard-suites.XXXXXX)
trap 'stop_server; rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM

for suite in "${SUITES[@]}"; do
  step "installing $suite's dependencies (npm ci from its lockfile, in a temporary directory)"
  mkdir -p "$WORK/$suite"
  cp "$SUITES_DIR/$suite/package.json" "$SUITES_DIR/$suite/package-lock.json" "$WORK/$suite/"
  (cd "$WORK/$suite" && npm ci --no-audit --no-fund --loglevel=error)
  ln -s "$SUITES_DIR/$suite/test-suite.js" "$WORK/$suite/test-suite.js"
  ln -s "$SUITES_DIR/$suite/node-imports.js" "$WORK/$suite/node-imports.js"
done

step "building the conformance example"
cargo build -q -p switchboard --example conformance
BIN=target/debug/examples/conformance

# Starts the server and runs the suites; the server stops when this returns.
run_suites() {
  if curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$PORT/"; then
    echo "something already listens on 127.0.0.1:$PORT (the suites' fixed port): stop it and re-run" >&2
    exit 1
  fi
  step "starting the conformance server on 127.0.0.1:$PORT${PRIO:+ (server and suites under $PRIO)}"
  # $PRIO is empty or a command prefix (chrt/nice): unquoted on purpose.
  # shellcheck disable=SC2086
  RUST_LOG=${RUST_LOG:-warn} $PRIO "$BIN" --port "$PORT" >"$WORK/server.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 100); do
    if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$PORT/engine.io/?EIO=4&transport=polling"; then
      break
    fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      echo "the conformance server exited at start; its log:" >&2
      cat "$WORK/server.log" >&2
      return 1
    fi
    sleep 0.1
  done
  if ! curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$PORT/engine.io/?EIO=4&transport=polling"; then
    echo "the conformance server did not answer within 10 s; its log:" >&2
    cat "$WORK/server.log" >&2
    return 1
  fi

  failed_runs=0
  declare -A clean
  for suite in "${SUITES[@]}"; do
    clean[$suite]=0
    step "running $suite ($RUNS run(s), unmodified)"
    for run in $(seq 1 "$RUNS"); do
      log="$WORK/$suite-run$run.log"
      status=0
      # shellcheck disable=SC2086
      (cd "$WORK/$suite" &&
        NODE_OPTIONS="--preserve-symlinks" $PRIO node_modules/.bin/mocha --reporter dot --no-colors test-suite.js) >"$log" 2>&1 || status=$?
      passing=$(grep -oE '[0-9]+ passing' "$log" | head -1 || true)
      failing=$(grep -oE '[0-9]+ failing' "$log" | head -1 || true)
      if [ "$status" -eq 0 ]; then
        clean[$suite]=$((clean[$suite] + 1))
        echo "$suite run $run/$RUNS: ok (${passing:-? passing})"
      else
        failed_runs=$((failed_runs + 1))
        echo "$suite run $run/$RUNS: FAILED (${passing:-0 passing}, ${failing:-mocha exit $status})"
        # The failure details: mocha prints them after the summary line (or the whole log when
        # mocha did not get that far).
        if [ -n "$passing" ]; then sed -n '/passing/,$p' "$log"; else tail -n 40 "$log"; fi | sed 's/^/    /'
      fi
    done
  done

  step "summary"
  short=0
  for suite in "${SUITES[@]}"; do
    echo "$suite: ${clean[$suite]} of $RUNS runs clean"
    if [ "${clean[$suite]}" -lt "$MIN_CLEAN" ]; then short=1; fi
  done
  if [ "$failed_runs" -gt 0 ]; then
    mkdir -p target/official-suites
    cp "$WORK/server.log" target/official-suites/server.log
    echo "$failed_runs run(s) failed; the failing tests are listed above, the server's log is in" \
      "target/official-suites/server.log (RUST_LOG=switchboard_engine=trace scripts/official-suites.sh ... logs each ping and session close)" >&2
    if [ "$short" -eq 1 ]; then
      echo "fewer than $MIN_CLEAN clean run(s) of a suite: failing" >&2
      exit 1
    fi
    echo "every suite had at least $MIN_CLEAN clean run(s) (MIN_CLEAN): not failing" >&2
  fi
}

# The suites' port is fixed, and other servers on this machine may hold it: when we may create a
# private network namespace (root, unshare and ip present), the server and the suites run in one
# that has only its own loopback. Otherwise they use the machine's loopback.
if can_unshare_net; then
  step "running in a private network namespace (own loopback, port $PORT is ours)"
  export WORK BIN RUNS PORT MIN_CLEAN PRIO
  export -f run_suites stop_server step
  unshare --net bash -c 'set -euo pipefail; trap stop_server EXIT; ip link set lo up
    SUITES=(engine.io-v4 socket.io-v5); run_suites'
else
  run_suites
fi
