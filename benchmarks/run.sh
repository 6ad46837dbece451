#!/usr/bin/env bash
# Every benchmark, as published in the README: transfers (service layer and HTTP, SQLite and
# PostgreSQL), deposit credit latency and withdrawals on simnet. Installs wrk (Debian) if missing
# and starts a durable PostgreSQL (fsync on, unlike the test one) on its own port.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if ! command -v wrk >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk
fi
export LNGATE_PG_PORT=54349 LNGATE_PG_DIR=/tmp/lngate-pg-bench LNGATE_PG_DURABLE=1
LNGATE_BENCH_POSTGRES_URL=$(scripts/postgres.sh start)
export LNGATE_BENCH_POSTGRES_URL
trap 'scripts/postgres.sh stop' EXIT
.venv/bin/lngate bench "$@"
