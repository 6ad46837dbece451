#!/usr/bin/env bash
# Quick start: install, then run lngate on its embedded defaults (SQLite + the in-process
# simnet) on http://127.0.0.1:8000. Extra arguments go to `lngate serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/lngate serve "$@"
