# Shared by scripts/official-suites.sh and scripts/client-suite.sh (sourced, not run): reads
# `SUITES_DIR [RUNS]` and the PRIORITY and MIN_CLEAN settings, and says whether a private
# network namespace can be made.
#
# suite_args SCRIPT WHAT ARGS...
#   SCRIPT  the calling script's name, for the usage line
#   WHAT    what SUITES_DIR must hold, for the error message
# Sets SUITES_DIR (absolute), RUNS, PRIO (empty or a command prefix) and MIN_CLEAN; a bad
# argument or setting exits 64 with what to pass instead.
suite_args() {
  local script=$1 what=$2
  shift 2
  if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: $script SUITES_DIR [RUNS]" >&2
    exit 64
  fi
  SUITES_DIR=$(cd "$1" 2>/dev/null && pwd) || {
    echo "SUITES_DIR '$1' is not a directory: pass the folder that holds $what" >&2
    exit 64
  }
  RUNS=${2:-1}
  if ! [[ "$RUNS" =~ ^[1-9][0-9]*$ ]]; then
    echo "RUNS '$RUNS' must be a positive integer" >&2
    exit 64
  fi
  PRIORITY=${PRIORITY:-rt}
  case "$PRIORITY" in
    rt) PRIO="chrt -f 10" ;;
    nice) PRIO="nice -n -10" ;;
    none) PRIO="" ;;
    *)
      echo "PRIORITY '$PRIORITY' must be rt, nice or none" >&2
      exit 64
      ;;
  esac
  # $PRIO is a command prefix: unquoted on purpose.
  # shellcheck disable=SC2086
  if [ -n "$PRIO" ] && ! $PRIO true 2>/dev/null; then
    echo "note: cannot run under '$PRIO' (needs root); running at normal priority (PRIORITY=none hides this)" >&2
    PRIO=""
  fi
  MIN_CLEAN=${MIN_CLEAN:-$RUNS}
  if ! [[ "$MIN_CLEAN" =~ ^[1-9][0-9]*$ ]] || [ "$MIN_CLEAN" -gt "$RUNS" ]; then
    echo "MIN_CLEAN '$MIN_CLEAN' must be a positive integer no larger than RUNS ($RUNS)" >&2
    exit 64
  fi
}

# Succeeds when this process may run the suite in a private network namespace (root, with
# unshare and ip): then a fixed port held by another server on the machine does not matter.
can_unshare_net() {
  [ "$(id -u)" -eq 0 ] && command -v unshare >/dev/null 2>&1 && command -v ip >/dev/null 2>&1 \
    && unshare --net true 2>/dev/null
}

step() { printf '\n==> %s\n' "$*"; }
