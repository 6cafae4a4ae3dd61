#!/usr/bin/env bash
# Profiles one Switchboard gateway on CPU 0 under fan-out from CPU 1 and draws a flame graph.
#
# Usage (from the repository root, as root or with perf_event_paranoid <= 1):
#   cargo build --release -p switchboard-load -p switchboard-gateway
#   cargo install inferno --locked          # inferno-collapse-perf, inferno-flamegraph
#   loadtest/bench/profile.sh                # RATE=2000 SAMPLE_SECONDS=8 OUT=docs/benchmarks-flamegraph.svg
# Needs `perf` (Debian: linux-perf). Prints perf's inclusive and self tables on stdout and the
# load generator's JSON line on stderr; leaves perf.data in $WORK.
set -euo pipefail
cd "$(dirname "$0")/../.."

RATE=${RATE:-2000}
SECONDS_SAMPLED=${SAMPLE_SECONDS:-8}
OUT=${OUT:-docs/benchmarks-flamegraph.svg}
WORK=${WORK:-$(mktemp -d /tmp/switchboard-profile.XXXXXX)}
GATEWAY=${GATEWAY:-target/release/switchboard}
LOAD=${LOAD:-target/release/switchboard-load}
PORT=${PORT:-39001}

need() { command -v "$1" >/dev/null || { echo "$1 not found: $2" >&2; exit 1; }; }
need perf "apt-get install linux-perf"
need inferno-collapse-perf "cargo install inferno --locked"
need inferno-flamegraph "cargo install inferno --locked"
need taskset "apt-get install util-linux"
[ -x "$GATEWAY" ] && [ -x "$LOAD" ] || { echo "build first: cargo build --release -p switchboard-load -p switchboard-gateway" >&2; exit 1; }

echo "profile: gateway on CPU 0, port $PORT; perf data in $WORK" >&2
RUST_LOG=warn taskset -c 0 "$GATEWAY" --listen "127.0.0.1:$PORT" --admin-listen 127.0.0.1:0 &
gw=$!
trap 'kill $gw 2>/dev/null || true; wait $gw 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  sleep 0.1
done

# Publishing runs long enough to cover connection setup plus the sampled window.
taskset -c 1 "$LOAD" fanout --url "http://127.0.0.1:$PORT" --connections 1000 --rooms 10 \
  --publishers 10 --rate "$RATE" --duration $((SECONDS_SAMPLED + 6)) --drain 5 --server-pid "$gw" \
  > "$WORK/load.jsonl" &
load=$!
sleep 5   # connections up, publishing under way
echo "profile: sampling the gateway for $SECONDS_SAMPLED s at 499 Hz" >&2
perf record -q -F 499 --call-graph dwarf,32768 -o "$WORK/perf.data" -p "$gw" -- sleep "$SECONDS_SAMPLED"
wait $load || echo "profile: the load generator reported loss or failure (see above)" >&2
cat "$WORK/load.jsonl" >&2

echo "profile: folding stacks (this takes a minute)" >&2
perf script -i "$WORK/perf.data" 2>/dev/null | inferno-collapse-perf > "$WORK/stacks.folded"
inferno-flamegraph --title "switchboard gateway, fan-out at $RATE msg/s (1000 connections, 10 rooms)" \
  < "$WORK/stacks.folded" > "$OUT"
echo "profile: flame graph written to $OUT" >&2
# Flat tables: inclusive (children) and self time per symbol.
report() { perf report -i "$WORK/perf.data" "$@" --stdio --sort symbol -g none 2>/dev/null | grep -E '^ +[0-9]' || true; }
echo "---- inclusive ----"
report --children | sed -n 1,60p
echo "---- self ----"
report --no-children | sed -n 1,40p
