#!/usr/bin/env bash
# The docker-compose cluster without Docker, on this machine's loopback:
#
#   deploy/local-cluster.sh up [N]   redis-server, N gateways (default 3), HAProxy and Prometheus
#   deploy/local-cluster.sh status   what runs, one `NAME URL STATE` line per service
#   deploy/local-cluster.sh down     stops exactly what `up` started
#
# Every port is a free loopback port. HAProxy and Prometheus read deploy/haproxy.cfg and
# deploy/prometheus.yml rendered for loopback (the DNS discovery replaced by the gateways'
# addresses). `up` prints one `NAME URL` line per service on stdout; progress goes to stderr.
# Every SWITCHBOARD_* variable of the caller reaches every gateway, e.g.
#   SWITCHBOARD_PUBLISH_SCOPE=any deploy/local-cluster.sh up 3
# (the script sets only the listen addresses, the Redis URL and, unless the caller set it,
# SWITCHBOARD_STATIC_DIR to the browser demo examples/chat-web, served at / through the balancer).
#
# Missing redis-server, haproxy or prometheus are installed with apt-get (Debian packages).
# Settings (environment):
#   LOCAL_CLUSTER_DIR  state directory: pid files, logs, rendered configs
#                      (default: target/local-cluster in the repository)
#   LOCAL_CLUSTER_BIN  the switchboard binary to run (default: `cargo build --release`, then
#                      target/release/switchboard)
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
STATE="${LOCAL_CLUSTER_DIR:-$ROOT/target/local-cluster}"
SERVICES="$STATE/services"

say() { printf 'local-cluster: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

usage() {
  echo "usage: deploy/local-cluster.sh up [N] | status | down" >&2
  exit 64
}

# Installs the Debian packages whose commands are missing.
need_packages() {
  local missing=()
  command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
  command -v haproxy >/dev/null 2>&1 || missing+=(haproxy)
  command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
  command -v python3 >/dev/null 2>&1 || missing+=(python3)
  if [ "${#missing[@]}" -gt 0 ]; then
    say "installing ${missing[*]} (apt-get)"
    as_root apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
  fi
}

# Prints N free loopback TCP ports.
free_ports() {
  python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

# HTTP status of GET http://127.0.0.1:PORT/PATH, or 000.
http_status() {
  local port=$1 path=$2
  (
    exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
    printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$path" >&3
    read -r -t 2 _ code _ <&3 && echo "$code"
  ) 2>/dev/null || echo 000
}

# Waits up to $3 seconds for GET PATH on PORT to answer 200.
wait_ready() {
  local name=$1 port=$2 secs=$3 path=$4 i
  for ((i = 0; i < secs * 10; i++)); do
    [ "$(http_status "$port" "$path")" = 200 ] && return 0
    sleep 0.1
  done
  die "$name did not answer 200 on http://127.0.0.1:$port$path within ${secs}s; see $STATE/$name.log, then run: deploy/local-cluster.sh down"
}

# Starts a background process, records `NAME URL PID COMMAND` in the services file.
start() {
  local name=$1 url=$2
  shift 2
  nohup "$@" >"$STATE/$name.log" 2>&1 </dev/null &
  local pid=$! prog=$1 arg
  if [ "$prog" = env ]; then
    # env execs the first argument that is not an assignment.
    for arg in "${@:2}"; do
      case "$arg" in *=*) ;; *) prog=$arg; break ;; esac
    done
  fi
  printf '%s %s %s %s\n' "$name" "$url" "$pid" "$prog" >>"$SERVICES"
}

# True when PID runs the program recorded for it (a recycled pid is not ours).
ours() {
  local pid=$1 prog=$2 exe
  [ -e "/proc/$pid" ] || return 1
  exe="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | cut -d' ' -f1)"
  [ "$(basename "$exe")" = "$(basename "$prog")" ]
}

gateway_binary() {
  if [ -n "${LOCAL_CLUSTER_BIN:-}" ]; then
    [ -x "$LOCAL_CLUSTER_BIN" ] || die "LOCAL_CLUSTER_BIN=$LOCAL_CLUSTER_BIN is not an executable"
    echo "$LOCAL_CLUSTER_BIN"
    return
  fi
  command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust (https://rustup.rs) or set LOCAL_CLUSTER_BIN"
  say "building the gateway (cargo build --release -p switchboard-gateway)"
  (cd "$ROOT" && cargo build --release -q -p switchboard-gateway >&2)
  echo "$ROOT/target/release/switchboard"
}

render_haproxy() {
  local lb=$1 stats=$2 servers=$3
  awk -v lb="$lb" -v stats="$stats" -v servers="$servers" '
    /# LB-RESOLVERS-BEGIN/ { skip = 1 }
    /# LB-RESOLVERS-END/ { skip = 0; next }
    /# LB-SERVERS-BEGIN/ { skip = 1; printf "%s", servers }
    /# LB-SERVERS-END/ { skip = 0; next }
    skip { next }
    /^    bind :3000$/ { print "    bind 127.0.0.1:" lb; next }
    /^    bind :8404$/ { print "    bind 127.0.0.1:" stats; next }
    { print }
  ' "$ROOT/deploy/haproxy.cfg"
}

render_prometheus() {
  local targets=$1
  awk -v targets="$targets" '
    /# PROM-TARGETS-BEGIN/ { skip = 1; print "    static_configs:"; print "      - targets: [" targets "]"; next }
    /# PROM-TARGETS-END/ { skip = 0; next }
    skip { next }
    { print }
  ' "$ROOT/deploy/prometheus.yml"
}

cmd_up() {
  local n=${1:-3}
  [[ "$n" =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] && [ "$n" -le 20 ] || die "N must be 1 to 20 gateways, got '$n'"
  if [ -s "$SERVICES" ]; then
    die "a cluster is already recorded in $STATE; run: deploy/local-cluster.sh down"
  fi
  need_packages
  local bin
  bin="$(gateway_binary)"
  # The browser demo, served by every gateway and so through the balancer, unless the caller
  # chose another directory.
  local web="${SWITCHBOARD_STATIC_DIR:-$ROOT/examples/chat-web}"
  if [ -z "${SWITCHBOARD_STATIC_DIR:-}" ] && [ ! -d "$web/node_modules/socket.io-client" ]; then
    if command -v npm >/dev/null 2>&1; then
      say "installing the demo's socket.io-client bundle (npm ci in examples/chat-web)"
      (cd "$web" && npm ci --no-audit --no-fund --loglevel=error >&2)
    else
      say "npm not found: the demo page at / will lack its socket.io-client bundle (apt-get install npm)"
    fi
  fi
  mkdir -p "$STATE"
  : >"$SERVICES"

  local ports
  read -r -a ports <<<"$(free_ports $((4 + 2 * n)))"
  local redis=${ports[0]} lb=${ports[1]} stats=${ports[2]} prom=${ports[3]}

  say "starting redis-server on 127.0.0.1:$redis"
  start redis "redis://127.0.0.1:$redis" redis-server --bind 127.0.0.1 --port "$redis" \
    --save "" --appendonly no --dir "$STATE"

  local i servers="" targets="" listen admin
  for ((i = 1; i <= n; i++)); do
    listen=${ports[$((2 + 2 * i))]}
    admin=${ports[$((3 + 2 * i))]}
    say "starting gateway-$i on 127.0.0.1:$listen (admin 127.0.0.1:$admin)"
    start "gateway-$i" "http://127.0.0.1:$listen" env \
      SWITCHBOARD_LISTEN="127.0.0.1:$listen" \
      SWITCHBOARD_ADMIN_LISTEN="127.0.0.1:$admin" \
      SWITCHBOARD_REDIS_URL="redis://127.0.0.1:$redis" \
      SWITCHBOARD_STATIC_DIR="$web" \
      "$bin"
    printf 'gateway-%s-admin http://127.0.0.1:%s - -\n' "$i" "$admin" >>"$SERVICES"
    servers+="    server gateway-$i 127.0.0.1:$listen port $admin"$'\n'
    targets+="${targets:+, }'127.0.0.1:$admin'"
  done
  for ((i = 1; i <= n; i++)); do
    wait_ready "gateway-$i" "${ports[$((3 + 2 * i))]}" 20 /ready
  done

  render_haproxy "$lb" "$stats" "$servers" >"$STATE/haproxy.cfg"
  haproxy -c -q -f "$STATE/haproxy.cfg" >&2 || die "the rendered $STATE/haproxy.cfg is invalid; run: deploy/local-cluster.sh down"
  say "starting haproxy on 127.0.0.1:$lb (status page 127.0.0.1:$stats)"
  start lb "http://127.0.0.1:$lb" haproxy -db -f "$STATE/haproxy.cfg"
  printf 'lb-stats http://127.0.0.1:%s - -\n' "$stats" >>"$SERVICES"

  render_prometheus "$targets" >"$STATE/prometheus.yml"
  say "starting prometheus on 127.0.0.1:$prom"
  mkdir -p "$STATE/prometheus-data"
  start prometheus "http://127.0.0.1:$prom" prometheus \
    --config.file="$STATE/prometheus.yml" \
    --storage.tsdb.path="$STATE/prometheus-data" \
    --web.listen-address="127.0.0.1:$prom"

  wait_ready lb-stats "$stats" 10 /
  wait_ready prometheus "$prom" 30 /-/ready
  say "up; stop it with: deploy/local-cluster.sh down"
  awk '{ print $1, $2 }' "$SERVICES"
}

cmd_status() {
  [ -s "$SERVICES" ] || { say "no cluster recorded in $STATE; start one with: deploy/local-cluster.sh up"; exit 1; }
  local name url pid prog bad=0 state
  while read -r name url pid prog; do
    if [ "$pid" = - ]; then
      continue
    fi
    if ours "$pid" "$prog"; then state=running; else state=stopped; bad=1; fi
    echo "$name $url $state"
  done <"$SERVICES"
  return "$bad"
}

cmd_down() {
  [ -s "$SERVICES" ] || { say "nothing to stop (no cluster recorded in $STATE)"; exit 0; }
  local name url pid prog pids=()
  # Gateways first (they drain), the balancer and Redis last.
  while read -r name url pid prog; do
    [ "$pid" = - ] && continue
    if ours "$pid" "$prog"; then
      say "stopping $name (pid $pid)"
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid:$prog")
    fi
  done < <(tac "$SERVICES")
  local i entry left
  for ((i = 0; i < 400; i++)); do
    left=0
    for entry in "${pids[@]}"; do
      ours "${entry%%:*}" "${entry#*:}" && left=$((left + 1))
    done
    [ "$left" -eq 0 ] && break
    sleep 0.1
  done
  for entry in "${pids[@]}"; do
    if ours "${entry%%:*}" "${entry#*:}"; then
      say "pid ${entry%%:*} did not stop within 40s; killing it"
      kill -KILL "${entry%%:*}" 2>/dev/null || true
    fi
  done
  rm -f "$SERVICES"
  say "stopped; logs stay in $STATE"
}

case "${1:-}" in
  up) shift; [ "$#" -le 1 ] || usage; cmd_up "$@" ;;
  status) cmd_status ;;
  down) cmd_down ;;
  *) usage ;;
esac
