#!/usr/bin/env bash
# Private PostgreSQL + Redis instances for the test suite.
#
# Usage: scripts/test-servers.sh start|stop|env|status|pg-stop [fast|immediate]|pg-start|redis-stop|redis-start
#
#   start        install postgresql/redis-server when missing, start a private
#                PostgreSQL and Redis on free 127.0.0.1 ports in a fresh temp
#                dir, wait until both answer, write the state file
#   stop         stop both, remove the temp dir and the state file (idempotent)
#   env          print the state file (KEY=value lines)
#   status       exit 0 when the state file exists and both servers answer
#   pg-stop      stop PostgreSQL only (default mode fast; "immediate" = crash-like)
#   pg-start     start PostgreSQL again on the same port/data dir, wait until ready
#   redis-stop   stop Redis only (SHUTDOWN NOSAVE)
#   redis-start  start Redis again on the same port, wait until ready
#
# State file: $TEST_SERVERS_STATE, default <repo root>/.test-servers.env.
# Point TEST_SERVERS_STATE elsewhere to run several sets from one checkout.
# Variables written: TEST_DATABASE_URL TEST_REDIS_URL TEST_SERVERS_DIR
# TEST_PG_BIN TEST_PG_PORT TEST_REDIS_PORT TEST_SERVERS_STATE TEST_SERVERS_SCRIPT
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
SCRIPT_PATH="$SCRIPT_DIR/$(basename "${BASH_SOURCE[0]}")"
STATE_FILE="${TEST_SERVERS_STATE:-$REPO_ROOT/.test-servers.env}"
case "$STATE_FILE" in /*) ;; *) STATE_FILE="$PWD/$STATE_FILE" ;; esac
READY_TIMEOUT=30
# Only the state file says which servers a command acts on: values inherited
# from a caller that sourced another state file (a test run under `make test`
# starting private servers) must never make `stop` act on the shared ones.
unset TEST_DATABASE_URL TEST_REDIS_URL TEST_SERVERS_DIR TEST_PG_BIN TEST_PG_PORT TEST_REDIS_PORT TEST_SERVERS_SCRIPT

log() { printf 'test-servers: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------- helpers

find_pg_bin() {
  # highest installed major version that has initdb and pg_ctl
  local d
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && printf '%s\n' "$d"
    true
  done | sort -V | tail -n1
}

ensure_packages() {
  local need=()
  [ -n "$(find_pg_bin)" ] || need+=(postgresql)
  command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
  command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)
  # The browser tests of the console and demo (SPEC §13) drive Debian's Chromium.
  [ -x /usr/bin/chromium ] || need+=(chromium)
  [ "${#need[@]}" -eq 0 ] && return 0
  log "installing ${need[*]} (apt-get)"
  [ "$(id -u)" -eq 0 ] || die "need root to apt-get install ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${need[@]}" </dev/null >/dev/null
  [ -n "$(find_pg_bin)" ] || die "PostgreSQL binaries still missing after install"
  command -v redis-server >/dev/null 2>&1 || die "redis-server still missing after install"
  [ -x /usr/bin/chromium ] || die "chromium still missing after install"
}

# Two distinct free TCP ports on 127.0.0.1 (both sockets held open together).
free_ports() {
  node -e '
    const net = require("net");
    const a = net.createServer(), b = net.createServer();
    a.listen(0, "127.0.0.1", () => b.listen(0, "127.0.0.1", () => {
      console.log(a.address().port + " " + b.address().port);
      a.close(); b.close();
    }));'
}

# Run a command as the postgres OS user when we are root.
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

# true while the process exists and is not a zombie (pid 1 may reap slowly)
pid_running() {
  local st
  kill -0 "$1" 2>/dev/null || return 1
  st="$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null || true)"
  [ "$st" != "Z" ]
}

load_state() {
  [ -f "$STATE_FILE" ] || die "no state file $STATE_FILE (run: $0 start)"
  # shellcheck disable=SC1090
  set -a; . "$STATE_FILE"; set +a
}

pg_alive() { "$TEST_PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$TEST_PG_PORT" -U postgres -d postgres >/dev/null 2>&1; }
redis_alive() { [ "$(redis-cli -h 127.0.0.1 -p "$TEST_REDIS_PORT" ping 2>/dev/null)" = "PONG" ]; }

wait_for() { # name check-fn
  local name="$1" fn="$2" i
  for ((i = 0; i < READY_TIMEOUT * 10; i++)); do
    "$fn" && return 0
    sleep 0.1
  done
  log "$name not ready within ${READY_TIMEOUT}s"
  return 1
}

# ------------------------------------------------------------- postgres

pg_start_cmd() {
  # -w waits for startup; logs go to a file so no pipe stays held open
  as_pg "$TEST_PG_BIN/pg_ctl" start -w -s -t "$READY_TIMEOUT" \
    -D "$TEST_SERVERS_DIR/pgdata" -l "$TEST_SERVERS_DIR/postgres.log" \
    -o "-p $TEST_PG_PORT -c listen_addresses=127.0.0.1 -k $TEST_SERVERS_DIR/pgsock -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
    </dev/null >/dev/null 2>&1
}

pg_stop_cmd() { # [mode]
  local mode="${1:-fast}"
  [ -f "$TEST_SERVERS_DIR/pgdata/postmaster.pid" ] || return 0
  as_pg "$TEST_PG_BIN/pg_ctl" stop -w -s -t "$READY_TIMEOUT" -m "$mode" \
    -D "$TEST_SERVERS_DIR/pgdata" </dev/null >/dev/null 2>&1 || true
}

# ---------------------------------------------------------------- redis

redis_start_cmd() {
  redis-server --port "$TEST_REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --daemonize yes --dir "$TEST_SERVERS_DIR" --pidfile "$TEST_SERVERS_DIR/redis.pid" \
    --logfile "$TEST_SERVERS_DIR/redis.log" </dev/null >/dev/null 2>&1
}

redis_stop_cmd() {
  local pid=""
  [ -f "$TEST_SERVERS_DIR/redis.pid" ] && pid="$(cat "$TEST_SERVERS_DIR/redis.pid" 2>/dev/null || true)"
  redis-cli -h 127.0.0.1 -p "$TEST_REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
  # make sure it is gone (only the pid we started), so a restart can bind the port
  if [ -n "$pid" ]; then
    local i
    for ((i = 0; i < 100; i++)); do
      pid_running "$pid" || break
      sleep 0.1
    done
    if pid_running "$pid"; then kill -9 "$pid" 2>/dev/null || true; fi
  fi
  rm -f "$TEST_SERVERS_DIR/redis.pid"
}

# ------------------------------------------------------------- commands

cmd_start() {
  if [ -f "$STATE_FILE" ]; then
    set -a; . "$STATE_FILE"; set +a
    if [ -d "${TEST_SERVERS_DIR:-/nonexistent}" ] && { pg_alive || redis_alive; }; then
      die "servers from $STATE_FILE are still running; run '$0 stop' first or set TEST_SERVERS_STATE"
    fi
    log "removing stale state $STATE_FILE"
    cmd_stop
  fi

  ensure_packages
  TEST_PG_BIN="$(find_pg_bin)"

  local base="${TMPDIR:-/tmp}"
  # the postgres user must be able to reach the dir
  if ! { [ -d "$base" ] && as_pg test -x "$base"; }; then base=/tmp; fi
  TEST_SERVERS_DIR="$(mktemp -d "$base/spark-test-XXXXXX")"
  chmod 755 "$TEST_SERVERS_DIR"
  mkdir -p "$TEST_SERVERS_DIR/pgdata" "$TEST_SERVERS_DIR/pgsock"
  if [ "$(id -u)" -eq 0 ]; then
    # postgres writes pgdata, its socket and its log (postgres.log) here
    chown postgres:postgres "$TEST_SERVERS_DIR" "$TEST_SERVERS_DIR/pgdata" "$TEST_SERVERS_DIR/pgsock"
  fi
  chmod 700 "$TEST_SERVERS_DIR/pgdata"

  # from here on, a failure cleans up what was created
  trap 'rc=$?; if [ $rc -ne 0 ]; then log "start failed; cleaning up (logs were in $TEST_SERVERS_DIR)"; tail -n 20 "$TEST_SERVERS_DIR"/*.log >&2 2>/dev/null || true; cmd_stop; fi' EXIT

  as_pg "$TEST_PG_BIN/initdb" -D "$TEST_SERVERS_DIR/pgdata" -U postgres -A trust \
    -E UTF8 --locale=C.UTF-8 --no-sync >"$TEST_SERVERS_DIR/initdb.log" 2>&1 ||
    as_pg "$TEST_PG_BIN/initdb" -D "$TEST_SERVERS_DIR/pgdata" -U postgres -A trust \
      -E UTF8 --locale=C --no-sync >"$TEST_SERVERS_DIR/initdb.log" 2>&1 ||
    { cat "$TEST_SERVERS_DIR/initdb.log" >&2; die "initdb failed"; }
  # trust for unix socket and loopback only
  cat >"$TEST_SERVERS_DIR/pgdata/pg_hba.conf" <<'EOF'
local   all   all                 trust
host    all   all   127.0.0.1/32  trust
host    all   all   ::1/128       trust
EOF
  if [ "$(id -u)" -eq 0 ]; then chown postgres:postgres "$TEST_SERVERS_DIR/pgdata/pg_hba.conf"; fi

  # Write state early so that stop can clean up after a partial start.
  local attempt ports
  for attempt in 1 2 3 4 5; do
    ports="$(free_ports)"
    TEST_PG_PORT="${ports%% *}"
    TEST_REDIS_PORT="${ports##* }"
    write_state
    if pg_start_cmd && wait_for postgres pg_alive; then break; fi
    log "postgres did not start on port $TEST_PG_PORT (attempt $attempt)"
    pg_stop_cmd immediate
    [ "$attempt" -lt 5 ] || die "could not start postgres"
  done
  for attempt in 1 2 3 4 5; do
    if redis_start_cmd && wait_for redis redis_alive; then break; fi
    log "redis did not start on port $TEST_REDIS_PORT (attempt $attempt)"
    redis_stop_cmd
    [ "$attempt" -lt 5 ] || die "could not start redis"
    TEST_REDIS_PORT="$(free_ports)"; TEST_REDIS_PORT="${TEST_REDIS_PORT%% *}"
    write_state
  done
  trap - EXIT
  log "postgres on 127.0.0.1:$TEST_PG_PORT, redis on 127.0.0.1:$TEST_REDIS_PORT, state in $STATE_FILE"
}

write_state() {
  local tmp="$STATE_FILE.tmp.$$"
  cat >"$tmp" <<EOF
TEST_DATABASE_URL=postgres://postgres@127.0.0.1:$TEST_PG_PORT/postgres
TEST_REDIS_URL=redis://127.0.0.1:$TEST_REDIS_PORT
TEST_SERVERS_DIR=$TEST_SERVERS_DIR
TEST_PG_BIN=$TEST_PG_BIN
TEST_PG_PORT=$TEST_PG_PORT
TEST_REDIS_PORT=$TEST_REDIS_PORT
TEST_SERVERS_STATE=$STATE_FILE
TEST_SERVERS_SCRIPT=$SCRIPT_PATH
EOF
  mv -f "$tmp" "$STATE_FILE"
}

cmd_stop() {
  [ -f "$STATE_FILE" ] || return 0
  set -a; . "$STATE_FILE"; set +a
  if [ -n "${TEST_SERVERS_DIR:-}" ] && [ -d "$TEST_SERVERS_DIR" ]; then
    if [ -n "${TEST_REDIS_PORT:-}" ]; then redis_stop_cmd; fi
    if [ -n "${TEST_PG_BIN:-}" ]; then pg_stop_cmd fast; fi
    # last resort: the postmaster we started, by its pid
    local pid=""
    [ -f "$TEST_SERVERS_DIR/pgdata/postmaster.pid" ] &&
      pid="$(head -n1 "$TEST_SERVERS_DIR/pgdata/postmaster.pid" 2>/dev/null || true)"
    if [ -n "$pid" ] && pid_running "$pid" && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = postgres ]; then kill -9 "$pid" 2>/dev/null || true; fi
    case "$TEST_SERVERS_DIR" in
      */spark-test-*) rm -rf -- "$TEST_SERVERS_DIR" ;;
      *) log "not removing unexpected dir $TEST_SERVERS_DIR" ;;
    esac
  fi
  rm -f -- "$STATE_FILE"
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  env) cat "$STATE_FILE" ;;
  status) load_state; pg_alive && redis_alive ;;
  pg-stop)
    load_state
    case "${2:-fast}" in fast | immediate | smart) ;; *) die "pg-stop mode must be fast|immediate|smart" ;; esac
    pg_stop_cmd "${2:-fast}"
    ;;
  pg-start) load_state; pg_alive || { pg_start_cmd || true; wait_for postgres pg_alive; } ;;
  redis-stop) load_state; redis_stop_cmd ;;
  redis-start) load_state; redis_alive || { redis_start_cmd; wait_for redis redis_alive; } ;;
  *)
    echo "usage: $0 start|stop|env|status|pg-stop [fast|immediate]|pg-start|redis-stop|redis-start" >&2
    exit 2
    ;;
esac
