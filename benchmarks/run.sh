#!/usr/bin/env bash
# Every benchmark, as published in the README: transfers (service layer and HTTP, SQLite and
# PostgreSQL, and HTTP through 1, 2 and 4 API processes on PostgreSQL with the CPU each used),
# deposit credit latency and withdrawals on simnet. Installs wrk (Debian) if missing and starts
# a durable PostgreSQL (fsync and synchronous_commit on, unlike the test one) on its own port.
# Arguments go to `lngate bench`, e.g. `benchmarks/run.sh --suite transfers --no-sqlite`.
#
# It prints the load and the CPU steal (time the hypervisor gave our virtual CPUs to others)
# before and after: figures taken with a load above ~1 or much steal measured a busy host.
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

machine() {
  echo "== $1: $(uptime | sed 's/.*load/load/'); cpu % (us sy id wa st) over 3 s:" \
    "$(vmstat 3 2 | tail -n 1 | awk '{print $13, $14, $15, $16, $17}')"
}
machine before
.venv/bin/lngate bench "$@"
machine after
