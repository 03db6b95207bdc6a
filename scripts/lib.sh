# Shared shell helpers for scripts/. Source it; it defines paths and small helpers, nothing runs.
# shellcheck shell=bash

URGENTFLOW_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ "$(id -u)" = 0 ]; then
  URGENTFLOW_HOME=${URGENTFLOW_HOME:-/var/lib/urgentflow}
else
  URGENTFLOW_HOME=${URGENTFLOW_HOME:-${XDG_DATA_HOME:-$HOME/.local/share}/urgentflow}
fi
TESTBED_DIR=${TESTBED_DIR:-$URGENTFLOW_HOME/testbed}
# Airflow Connections of every test-bed part, one JSON file per connection id; the runtime and the
# tests both read them from here (scripts/connections.py turns them into AIRFLOW_CONN_* variables).
CONN_DIR=$TESTBED_DIR/connections
VENV=${URGENTFLOW_VENV:-$URGENTFLOW_ROOT/.venv}
export URGENTFLOW_ROOT URGENTFLOW_HOME TESTBED_DIR CONN_DIR VENV

_part=${_part:-urgentflow}

log() { printf '[%s] %s\n' "$_part" "$*"; }
die() { printf '\n[%s] ERROR: %s\n' "$_part" "$*" >&2; exit 1; }

# port_free PORT: true when nothing listens on 127.0.0.1:PORT (or 0.0.0.0:PORT).
port_free() {
  ! ss -Hltn "sport = :$1" 2>/dev/null | grep -q .
}

# need_port PORT WHAT: die with a clear message when PORT is taken by someone else.
need_port() {
  port_free "$1" || die "port $1 (needed for $2) is already in use by: $(ss -Hltnp "sport = :$1" | awk '{print $NF}' | head -1). Free it or set the port variable to another value."
}

# wait_until SECONDS DESCRIPTION CMD...: poll CMD every 0.2 s until it succeeds or time runs out.
wait_until() {
  local limit=$1 what=$2; shift 2
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -ge "$deadline" ] && return 1
    sleep 0.2
  done
  log "$what ready"
}

# proc_running PID: the process exists and is not a zombie (pid 1 here reaps only every ~2 s, so a
# stopped daemon lingers as a zombie that `kill -0` still reports alive).
proc_running() {
  local st
  st=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
  [ -n "$st" ] && [ "${st#Z}" = "$st" ]
}

# pid_alive PIDFILE: true when the pid in PIDFILE names a running process.
pid_alive() {
  [ -s "$1" ] && proc_running "$(head -1 "$1")"
}

# stop_pid PID NAME SECONDS: SIGTERM, wait up to SECONDS, then SIGKILL.
stop_pid() {
  local pid=$1 name=$2 limit=${3:-15}
  kill -TERM "$pid" 2>/dev/null || return 0
  local deadline=$((SECONDS + limit))
  while proc_running "$pid" && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
  if proc_running "$pid"; then
    log "$name (pid $pid) did not stop within $limit s: killing it"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.2
  fi
}

# stop_pidfile PIDFILE NAME [SECONDS]: stop the daemon a pid file names (if it runs), remove the file.
stop_pidfile() {
  local pid
  if pid_alive "$1"; then
    pid=$(head -1 "$1")
    stop_pid "$pid" "$2" "${3:-15}"
    log "stopped $2 (pid $pid)"
  fi
  rm -f "$1"
}

# fail_with_log WHAT LOGFILE: die naming what failed, with the end of its log.
fail_with_log() {
  local tail_text="(no log at $2)"
  [ -s "$2" ] && tail_text=$(tail -n 12 "$2")
  die "$1
--- last lines of $2 ---
$tail_text
---"
}

# apt_need PKG...: install Debian packages that are missing (apt-get update once per run).
apt_need() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]} (apt-get)"
  if [ -z "${_apt_updated:-}" ]; then
    apt-get update -qq >/dev/null || die "apt-get update failed: is the Debian mirror reachable?"
    _apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed"
}

# write_connection ID JSON: record an Airflow Connection (JSON form) for the runtime and the tests.
write_connection() {
  mkdir -p "$CONN_DIR"
  printf '%s\n' "$2" > "$CONN_DIR/$1.json"
  chmod 600 "$CONN_DIR/$1.json"
}
