"""The regtest network fixtures, shared by tests/regtest and tests/contract.

Registered as a plain pytest plugin: the conftest.py of each of those directories calls
``config.pluginmanager.import_plugin("tests.regtest.network_plugin")``, which loads it once
(nothing else may import this module, or pytest could not rewrite its asserts). So the session
fixture has one definition and one cache: a session that runs both directories starts one
network, and a session in which no test requests it (the fast suite, ``-m "not regtest"``)
starts none.

The binaries come from scripts/build-regtest.sh (a cold build takes minutes; later
runs find them in ~/.cache/lngate/regtest). Without Go and without built binaries
the tests are skipped, unless LNGATE_REQUIRE_REGTEST=1 (CI), which makes that an
error: a CI that silently skips its only real-node tests is no test.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from lngate.regtest import Network, down, up

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "scripts" / "build-regtest.sh"
BUILD_TIMEOUT_S = 45 * 60
GO_MISSING_EXIT = 127


def _unavailable(reason: str) -> None:
    if os.environ.get("LNGATE_REQUIRE_REGTEST") == "1":
        pytest.fail(f"LNGATE_REQUIRE_REGTEST=1 but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def regtest_bin_dir() -> Path:
    """lnd, lncli, btcd and btcctl, built once and cached across sessions."""
    from_env = os.environ.get("LNGATE_REGTEST_BIN")
    if from_env:
        return Path(from_env)
    done = subprocess.run(
        ["bash", str(BUILD_SCRIPT)],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
        check=False,
    )
    if done.returncode == GO_MISSING_EXIT:
        _unavailable("the Go toolchain is not installed, so lnd and btcd cannot be built")
    if done.returncode != 0:
        tail = "\n".join(done.stderr.splitlines()[-40:])
        pytest.fail(f"{BUILD_SCRIPT} failed ({done.returncode}):\n{tail}", pytrace=False)
    return Path(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def regtest(
    regtest_bin_dir: Path, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Network]:
    """A running network: btcd, and lnd exchange <-> alice <-> bob with channels."""
    state_dir = tmp_path_factory.mktemp("regtest")
    # On failure `up` stops what it started and keeps the logs itself.
    up(state_dir, regtest_bin_dir)
    yield Network.load(state_dir)
    failed = request.session.testsfailed > 0
    down(state_dir, keep_logs=failed)
    if failed:
        print(f"\nregtest logs kept in {state_dir / 'logs'}")
