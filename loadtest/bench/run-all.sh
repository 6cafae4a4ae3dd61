#!/usr/bin/env bash
# Runs every benchmark case for every contender, interleaved (case by case, contender by
# contender, repetition after repetition), through `switchboard-load run`, and appends one JSON
# line per run to $OUT: {"case", "rep", "contender", "result": <the tool's JSON line>}.
#
# Usage (from the repository root, after building):
#   cargo build --release -p switchboard-load -p switchboard-gateway
#   (cd loadtest/peers/node && npm ci) ; (cd loadtest/peers/socketioxide && cargo build --release)
#   loadtest/bench/run-all.sh            # REPS=3, all cases, all contenders
#   REPS=1 CASES="fanout-200" CONTENDERS="switchboard" loadtest/bench/run-all.sh
#   CASES="shards1-2000 shards3-2000 shards1-sweep shards3-sweep" loadtest/bench/run-all.sh
# Then: python3 loadtest/bench/report.py $OUT   (tables + docs/benchmarks-deliveries-p99.png)
set -euo pipefail
cd "$(dirname "$0")/../.."

REPS=${REPS:-3}
CONTENDERS=${CONTENDERS:-"switchboard node socketioxide"}
LOAD=${LOAD:-target/release/switchboard-load}
OUT=${OUT:-loadtest/results/$(date -u +%Y%m%dT%H%M%SZ).jsonl}
ALL_CASES="idle-10k fanout-200 fanout-1000 crossnode-200 crossnode-1000 storm sweep"
# Switchboard's sharded wire on a Redis Cluster of 1 or 3 masters (not in the default set;
# Switchboard only): 3 nodes, 300 rooms of 4 members spread over the nodes, one publisher each.
SHARD_CASES="shards1-2000 shards3-2000 shards1-sweep shards3-sweep"
CASES=${CASES:-$ALL_CASES}

ROOMS="--connections 1000 --rooms 10 --publishers 10"
MANY_ROOMS="--connections 1200 --rooms 300 --publishers 300"
# The sweep's p99 bound: 1 s suits the shared 2-core VM the published figures come from;
# use 50-100 ms on a quiet machine.
SWEEP_P99_MS=${SWEEP_P99_MS:-1000}
case_args() {
  case "$1" in
    idle-10k)       echo "|idle --connections 10000 --duration 10" ;;
    fanout-200)     echo "|fanout $ROOMS --rate 200 --duration 5 --drain 5" ;;
    fanout-1000)    echo "|fanout $ROOMS --rate 1000 --duration 5 --drain 5" ;;
    crossnode-200)  echo "--nodes 2|crossnode $ROOMS --rate 200 --duration 5 --drain 5" ;;
    crossnode-1000) echo "--nodes 2|crossnode $ROOMS --rate 1000 --duration 5 --drain 5" ;;
    storm)          echo "|storm --concurrency 50 --duration 5" ;;
    sweep)          echo "|sweep $ROOMS --start-rate 250 --factor 2 --max-rate 64000 --duration 4 --max-p99-ms $SWEEP_P99_MS --drain 5" ;;
    shards1-2000)   echo "--nodes 3 --redis-shards 1|crossnode $MANY_ROOMS --rate 2000 --duration 5 --drain 5" ;;
    shards3-2000)   echo "--nodes 3 --redis-shards 3|crossnode $MANY_ROOMS --rate 2000 --duration 5 --drain 5" ;;
    shards1-sweep)  echo "--nodes 3 --redis-shards 1|sweep $MANY_ROOMS --start-rate 1000 --factor 2 --max-rate 64000 --duration 4 --max-p99-ms $SWEEP_P99_MS --drain 5" ;;
    shards3-sweep)  echo "--nodes 3 --redis-shards 3|sweep $MANY_ROOMS --start-rate 1000 --factor 2 --max-rate 64000 --duration 4 --max-p99-ms $SWEEP_P99_MS --drain 5" ;;
    *) echo "unknown case $1 (cases: $ALL_CASES $SHARD_CASES)" >&2; exit 64 ;;
  esac
}

[ -x "$LOAD" ] || { echo "$LOAD missing: cargo build --release -p switchboard-load -p switchboard-gateway" >&2; exit 1; }
mkdir -p "$(dirname "$OUT")"
echo "writing $OUT" >&2
for rep in $(seq 1 "$REPS"); do
  for c in $CASES; do
    spec=$(case_args "$c")
    runner=${spec%%|*}
    scenario=${spec#*|}
    for who in $CONTENDERS; do
      case "$c" in shards*) [ "$who" = switchboard ] || continue ;; esac
      echo "== rep $rep/$REPS case $c contender $who" >&2
      # shellcheck disable=SC2086
      if line=$("$LOAD" run --server "$who" $runner -- $scenario --label "$who" | tail -n 1); then
        printf '{"case":"%s","rep":%d,"contender":"%s","result":%s}\n' "$c" "$rep" "$who" "$line" >> "$OUT"
      else
        echo "   (run failed; recorded as a failure)" >&2
        printf '{"case":"%s","rep":%d,"contender":"%s","result":null}\n' "$c" "$rep" "$who" >> "$OUT"
      fi
    done
  done
done
echo "done: $OUT" >&2
