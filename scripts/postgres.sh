#!/usr/bin/env bash
# Install (Debian's postgresql package) and run a throw-away PostgreSQL for the test suite.
#   scripts/postgres.sh start   -> prints the database URL on stdout
#   scripts/postgres.sh stop
set -euo pipefail

PORT="${LNGATE_PG_PORT:-54329}"
PGDATA="${LNGATE_PG_DIR:-/tmp/lngate-pg-$PORT}"
URL="postgresql://postgres@127.0.0.1:$PORT/postgres"

find_bin() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  [ -n "$dir" ] && [ -x "$dir/pg_ctl" ] && echo "$dir"
}

install_postgres() {
  if [ -z "$(find_bin)" ]; then
    echo "installing Debian's postgresql package" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq postgresql >&2
  fi
}

as_postgres() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start() {
  install_postgres
  local bin; bin=$(find_bin)
  if as_postgres "$bin/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then
    echo "$URL"; return
  fi
  if [ ! -f "$PGDATA/PG_VERSION" ]; then
    mkdir -p "$PGDATA"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$PGDATA"
    as_postgres "$bin/initdb" -D "$PGDATA" -U postgres --auth=trust -E UTF8 >/dev/null
  fi
  # Loopback only, enough connections for the concurrency tests. Tests trade durability for
  # speed; benchmarks (LNGATE_PG_DURABLE=1) keep PostgreSQL's durable defaults.
  local opts="-p $PORT -k /tmp -c listen_addresses=127.0.0.1 -c max_connections=300"
  if [ "${LNGATE_PG_DURABLE:-0}" != 1 ]; then
    opts="$opts -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
  fi
  as_postgres "$bin/pg_ctl" -D "$PGDATA" -l "$PGDATA/server.log" -w -t 60 start -o "$opts" >&2
  echo "$URL"
}

stop() {
  local bin; bin=$(find_bin) || return 0
  as_postgres "$bin/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null 2>&1 || true
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
