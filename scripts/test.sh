#!/usr/bin/env bash
# Quick start, part two: install everything and run the whole test suite on a fresh machine.
#   - the package and its pinned dependencies (.venv)
#   - PostgreSQL (Debian's package), started here: store, ledger and API tests run on both DBs
#   - btcd and lnd built from their Go modules (cached by version), for the regtest tests
#   - Debian's chromium (pinned), which the page tests drive through Playwright
# Extra arguments go to pytest, e.g. `scripts/test.sh -m "not regtest"` for the fast suite.
set -euo pipefail
cd "$(dirname "$0")/.."

started=$(date +%s)
scripts/setup.sh

LNGATE_TEST_POSTGRES_URL=$(scripts/postgres.sh start)
export LNGATE_TEST_POSTGRES_URL LNGATE_REQUIRE_POSTGRES=1
trap 'scripts/postgres.sh stop' EXIT

if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
  export PATH="$PATH:/usr/local/go/bin"
fi
LNGATE_REGTEST_BIN=$(scripts/build-regtest.sh)
export LNGATE_REGTEST_BIN LNGATE_REQUIRE_REGTEST=1

LNGATE_CHROMIUM=$(scripts/setup-browser.sh)
export LNGATE_CHROMIUM LNGATE_REQUIRE_BROWSER=1

echo "== lint and types"
.venv/bin/ruff check src tests
.venv/bin/ruff format --check src tests
.venv/bin/mypy

echo "== tests"
status=0
.venv/bin/pytest -p no:cacheprovider "$@" || status=$?
echo "== finished in $(( $(date +%s) - started ))s"
exit "$status"
