#!/usr/bin/env bash
# Local PostgreSQL cluster for development and tests (no Docker needed).
#
#   eng/pg.sh start   <dir>   install PostgreSQL if absent, initdb once, start, create
#                             database "integrations"; prints ONE line on stdout:
#                             Host=127.0.0.1;Port=<port>;Username=integrations;Password=<pw>;Database=integrations
#                             (a second start on a running cluster only prints that line)
#   eng/pg.sh service <dir>   on a running cluster: create (or update) the service's login role
#                             integrations_service (eng/service-role.sql: a member of integrations_app,
#                             owner of nothing; password kept in <dir>/service-password) and print ONE line:
#                             Host=127.0.0.1;Port=<port>;Username=integrations_service;Password=<pw>;Database=integrations
#   eng/pg.sh stop    <dir>   stop it (fast mode); no error when it is not running
#   eng/pg.sh status  <dir>   exit 0 when running
#   eng/pg.sh destroy <dir>   stop it and delete its data
#
# Layout of <dir>: pgdata/ (the cluster), port, password, postgres.log, and the unix
# socket (only reachable by the cluster's OS user; clients use TCP on 127.0.0.1).
# Superuser "integrations", SCRAM password auth on 127.0.0.1 (generated password kept
# in <dir>/password, mode 600); the server listens on 127.0.0.1 only.
#
# Root: PostgreSQL refuses to run as root, so initdb/pg_ctl run as the "postgres" OS
# user and <dir> is chowned to it. When the postgres user cannot reach <dir> (a parent
# directory it cannot traverse), the cluster lives in /tmp/integrations-pg-<hash of dir>
# instead, and <dir>/location names it; stop/status/destroy follow that pointer.
#
# Environment: PG_BIN (a PostgreSQL bin directory; default the newest of
# /usr/lib/postgresql/*/bin, 15 preferred), INTEGRATIONS_PG_FAST=1 (fsync off etc., for
# throwaway test clusters; applies to the start that sets it), INTEGRATIONS_PG_OPTIONS (extra
# server options for that start, e.g. "-c shared_preload_libraries=pg_stat_statements").
# Progress goes to stderr; only the connection string goes to stdout.
set -euo pipefail

PG_USER_NAME=integrations
PG_DB_NAME=integrations
SERVICE_USER_NAME=integrations_service
ENG_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OS_PG_USER=postgres

log() { printf 'pg.sh: %s\n' "$*" >&2; }
die() { printf 'pg.sh: error: %s\n' "$*" >&2; exit 1; }

usage() {
  cat >&2 <<'EOF'
usage: eng/pg.sh start|service|stop|status|destroy <datadir>
EOF
  exit 2
}

is_root() { [ "$(id -u)" -eq 0 ]; }

find_pg_bin() {
  if [ -n "${PG_BIN:-}" ]; then
    [ -x "$PG_BIN/postgres" ] || die "PG_BIN=$PG_BIN has no postgres binary"
    return 0
  fi
  if [ -x /usr/lib/postgresql/15/bin/postgres ]; then
    PG_BIN=/usr/lib/postgresql/15/bin
    return 0
  fi
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -n "$d" ] && [ -x "$d/postgres" ]; then
    PG_BIN=$d
    return 0
  fi
  return 1
}

install_pg() {
  find_pg_bin && return 0
  log "PostgreSQL not found: installing the distribution's postgresql package"
  local sudo=()
  if ! is_root; then
    command -v sudo >/dev/null 2>&1 || die "PostgreSQL is not installed and this is not root (install the 'postgresql' package)"
    sudo=(sudo -n)
  fi
  # stdout of apt goes to stderr: stdout is reserved for the connection string.
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql </dev/null >&2
  find_pg_bin || die "postgresql was installed but no /usr/lib/postgresql/*/bin/postgres was found"
}

# Run a server-side command as the cluster's OS user (postgres when root), from /
# so that an unreadable cwd does not bother initdb/pg_ctl.
as_owner() {
  if is_root; then
    (cd / && runuser -u "$OS_PG_USER" -- "$@" 9>&-)
  else
    (cd / && "$@" 9>&-)
  fi
}

ensure_os_user() {
  is_root || return 0
  if ! getent passwd "$OS_PG_USER" >/dev/null; then
    log "creating OS user $OS_PG_USER"
    useradd --system --home-dir /var/lib/postgresql --shell /bin/bash "$OS_PG_USER"
  fi
}

abspath() {
  local p=$1
  case "$p" in /*) ;; *) p="$(pwd)/$p" ;; esac
  # normalise without requiring existence
  printf '%s\n' "$p" | sed -e 's#/\./#/#g' -e 's#//*#/#g' -e 's#/$##'
}

# Sets DIR (the real cluster directory) for the given user-facing datadir.
# create=1: make it (and decide on the /tmp fallback when root).
resolve_dir() {
  local given=$1 create=$2
  if [ -f "$given/location" ]; then
    DIR=$(cat "$given/location")
    [ "$create" = 1 ] && mkdir -p "$DIR"
    return 0
  fi
  DIR=$given
  [ "$create" = 1 ] || return 0
  mkdir -p "$given"
  if is_root; then
    if runuser -u "$OS_PG_USER" -- test -x "$(dirname "$given")" 2>/dev/null; then
      chown "$OS_PG_USER:" "$given"
      chmod 700 "$given"
    else
      local hash
      hash=$(printf '%s' "$given" | sha256sum | cut -c1-12)
      DIR="/tmp/integrations-pg-$hash"
      log "user $OS_PG_USER cannot reach $given: keeping the cluster in $DIR"
      mkdir -p "$DIR"
      chown "$OS_PG_USER:" "$DIR"
      chmod 700 "$DIR"
      printf '%s\n' "$DIR" >"$given/location"
    fi
  else
    chmod 700 "$given"
  fi
}

is_running() {
  [ -f "$DIR/pgdata/PG_VERSION" ] || return 1
  as_owner "$PG_BIN/pg_ctl" status -D "$DIR/pgdata" >/dev/null 2>&1
}

port_in_use() {
  # A successful connect means something listens there.
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

pick_port() {
  local p i
  for i in $(seq 1 50); do
    p=$(( 20000 + (RANDOM * 32768 + RANDOM) % 40000 ))
    if ! port_in_use "$p"; then
      echo "$p"
      return 0
    fi
  done
  die "could not find a free TCP port"
}

conn_string() {
  printf 'Host=127.0.0.1;Port=%s;Username=%s;Password=%s;Database=%s\n' \
    "$(cat "$DIR/port")" "$PG_USER_NAME" "$(cat "$DIR/password")" "$PG_DB_NAME"
}

with_lock() {
  # Serialise concurrent start/stop on the same cluster.
  exec 9>>"$DIR/.lock"
  flock -w 120 9 || die "timed out waiting for the lock on $DIR"
}

do_initdb() {
  log "initialising a new cluster in $DIR/pgdata"
  if [ ! -s "$DIR/password" ]; then
    (umask 077; head -c 24 /dev/urandom | base64 | tr -d '/+=\n' >"$DIR/password")
  fi
  is_root && chown "$OS_PG_USER:" "$DIR/password"
  chmod 600 "$DIR/password"
  rm -rf "$DIR/pgdata"
  local nosync=()
  [ "${INTEGRATIONS_PG_FAST:-0}" = 1 ] && nosync=(--no-sync)
  if ! as_owner "$PG_BIN/initdb" -D "$DIR/pgdata" -U "$PG_USER_NAME" --pwfile="$DIR/password" \
      --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C "${nosync[@]}" \
      >"$DIR/initdb.log" 2>&1; then
    cat "$DIR/initdb.log" >&2
    die "initdb failed"
  fi
  local sockdir="$DIR"
  # unix socket paths are limited to ~107 bytes: fall back to TCP only.
  if [ $(( ${#sockdir} + 16 )) -gt 100 ]; then sockdir=""; fi
  cat >>"$DIR/pgdata/postgresql.conf" <<EOF

# --- eng/pg.sh ---
listen_addresses = '127.0.0.1'
unix_socket_directories = '$sockdir'
unix_socket_permissions = 0700
max_connections = 200
EOF
}

cmd_start() {
  install_pg
  ensure_os_user
  resolve_dir "$1" 1
  with_lock

  if is_running; then
    [ -s "$DIR/port" ] && [ -s "$DIR/password" ] || die "cluster in $DIR runs but its port/password files are missing"
    log "already running on port $(cat "$DIR/port")"
    conn_string
    return 0
  fi

  if [ ! -f "$DIR/pgdata/PG_VERSION" ] || [ ! -s "$DIR/password" ]; then
    do_initdb
  fi

  local opts=()
  if [ "${INTEGRATIONS_PG_FAST:-0}" = 1 ]; then
    opts+=(-c fsync=off -c synchronous_commit=off -c full_page_writes=off)
  fi
  # Extra server options, e.g. "-c shared_preload_libraries=pg_stat_statements" to see where a benchmark's time goes.
  if [ -n "${INTEGRATIONS_PG_OPTIONS:-}" ]; then
    read -r -a extra <<<"$INTEGRATIONS_PG_OPTIONS"
    opts+=("${extra[@]}")
  fi

  local port="" attempt
  if [ -s "$DIR/port" ]; then
    port=$(cat "$DIR/port")
    if port_in_use "$port"; then
      log "previous port $port is taken: picking another"
      port=""
    fi
  fi
  for attempt in 1 2 3 4 5; do
    [ -n "$port" ] || port=$(pick_port)
    printf '%s\n' "$port" >"$DIR/port"
    is_root && chown "$OS_PG_USER:" "$DIR/port"
    log "starting PostgreSQL ($PG_BIN) on 127.0.0.1:$port, log $DIR/postgres.log"
    if as_owner "$PG_BIN/pg_ctl" start -D "$DIR/pgdata" -l "$DIR/postgres.log" -w -t 60 \
         -o "-p $port ${opts[*]:-}" >&2; then
      break
    fi
    if [ "$attempt" = 5 ]; then
      tail -n 20 "$DIR/postgres.log" >&2 2>/dev/null || true
      die "PostgreSQL did not start (see $DIR/postgres.log)"
    fi
    log "start failed (port race?): retrying with another port"
    port=""
  done

  local i
  for i in $(seq 1 60); do
    if "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$port" -d postgres; then break; fi
    [ "$i" = 60 ] && die "PostgreSQL is not ready after 30s (see $DIR/postgres.log)"
    sleep 0.5
  done

  local exists
  exists=$(PGPASSWORD=$(cat "$DIR/password") PGCONNECT_TIMEOUT=10 "$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$port" \
    -U "$PG_USER_NAME" -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$PG_DB_NAME'")
  if [ "$exists" != 1 ]; then
    log "creating database $PG_DB_NAME"
    PGPASSWORD=$(cat "$DIR/password") "$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$port" -U "$PG_USER_NAME" \
      -d postgres -c "CREATE DATABASE $PG_DB_NAME" >&2
  fi
  conn_string
}

cmd_service() {
  find_pg_bin || die "PostgreSQL is not installed (run eng/pg.sh start first)"
  resolve_dir "$1" 0
  is_running || die "no running cluster in $DIR (run eng/pg.sh start first)"
  with_lock
  if [ ! -s "$DIR/service-password" ]; then
    (umask 077; head -c 24 /dev/urandom | base64 | tr -d '/+=\n' >"$DIR/service-password")
  fi
  PGPASSWORD=$(cat "$DIR/password") PGCONNECT_TIMEOUT=10 PGOPTIONS="-c client_min_messages=warning" "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$(cat "$DIR/port")" \
    -U "$PG_USER_NAME" -d "$PG_DB_NAME" -v service_role="$SERVICE_USER_NAME" -v service_password="$(cat "$DIR/service-password")" \
    -f "$ENG_DIR/service-role.sql" >&2
  printf 'Host=127.0.0.1;Port=%s;Username=%s;Password=%s;Database=%s\n' \
    "$(cat "$DIR/port")" "$SERVICE_USER_NAME" "$(cat "$DIR/service-password")" "$PG_DB_NAME"
}

cmd_stop() {
  resolve_dir "$1" 0
  [ -f "$DIR/pgdata/PG_VERSION" ] || { log "no cluster in $DIR"; return 0; }
  find_pg_bin || { log "PostgreSQL is not installed: nothing to stop"; return 0; }
  with_lock
  if is_running; then
    log "stopping PostgreSQL in $DIR"
    as_owner "$PG_BIN/pg_ctl" stop -D "$DIR/pgdata" -m fast -w -t 60 >&2
  else
    log "not running"
  fi
}

cmd_status() {
  resolve_dir "$1" 0
  find_pg_bin || return 3
  if is_running; then
    log "running on port $(cat "$DIR/port" 2>/dev/null || echo '?') in $DIR"
    return 0
  fi
  log "not running"
  return 3
}

cmd_destroy() {
  local given=$1
  cmd_stop "$given"
  resolve_dir "$given" 0
  [ "$DIR" != "$given" ] && rm -rf "$DIR"
  rm -rf "$given"
}

[ $# -eq 2 ] || usage
datadir=$(abspath "$2")
[ -n "$datadir" ] && [ "$datadir" != / ] || die "refusing datadir '$2'"
case "$1" in
  start) cmd_start "$datadir" ;;
  service) cmd_service "$datadir" ;;
  stop) cmd_stop "$datadir" ;;
  status) cmd_status "$datadir" ;;
  destroy) cmd_destroy "$datadir" ;;
  *) usage ;;
esac
