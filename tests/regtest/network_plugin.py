"""The regtest network fixtures, shared by tests/regtest and tests/contract.

Registered as a plain pytest plugin: the conftest.py of each of those directories calls
``config.pluginmanager.import_plugin("tests.regtest.network_plugin")``, which loads it once
(nothing else may import this module, or pytest could not rewrite its asserts). So the session
fixture has one definition and one cache: a session that runs both directories starts one
network per mode, and a session in which no test requests it (the fast suite,
``-m "not regtest"``) starts none.

Two modes (`lngate.regtest.MODES`): ``standalone`` (every lnd holds its seed) and
``remote-signer`` (the exchange is watch-only; a ``signer`` lnd holds its seed). Every test
that uses the network runs in each mode: ``regtest_mode`` is a session-scoped parameter, so
pytest runs all tests of one mode, tears that network down, then brings up the other.
LNGATE_REGTEST_MODES=remote-signer (comma-separated) runs a subset, for a quicker loop while
developing. ``@pytest.mark.regtest_modes("remote-signer")`` limits a test to the modes named.
The contract suite asks for the network from inside its ``harness`` fixture
(``request.getfixturevalue``), which pytest allows only for a parameter the test already has:
so a test that uses ``harness`` is given ``regtest_mode`` too, and its simnet half, which does
not depend on the mode, runs once.

The binaries come from scripts/build-regtest.sh (a cold build takes minutes; later
runs find them in ~/.cache/lngate/regtest). Without Go and without built binaries
the tests are skipped, unless LNGATE_REQUIRE_REGTEST=1 (CI), which makes that an
error: a CI that silently skips its only real-node tests is no test.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lngate.regtest import MODES, Network, down, up

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "scripts" / "build-regtest.sh"
BUILD_TIMEOUT_S = 45 * 60
GO_MISSING_EXIT = 127
# Fixtures through which a test reaches the network without naming ``regtest`` itself.
INDIRECT_USERS = ("harness",)


def _unavailable(reason: str) -> None:
    if os.environ.get("LNGATE_REQUIRE_REGTEST") == "1":
        pytest.fail(f"LNGATE_REQUIRE_REGTEST=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def _selected_modes() -> tuple[str, ...]:
    raw = os.environ.get("LNGATE_REGTEST_MODES", "")
    chosen = tuple(m.strip() for m in raw.split(",") if m.strip()) or MODES
    unknown = set(chosen) - set(MODES)
    if unknown:
        raise pytest.UsageError(
            f"LNGATE_REGTEST_MODES: unknown mode(s) {sorted(unknown)}; known: {', '.join(MODES)}"
        )
    return chosen


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "regtest_modes(*modes): run this regtest test only in these network modes "
        f"({', '.join(MODES)})",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    names = metafunc.fixturenames
    if "regtest" not in names and not any(n in names for n in INDIRECT_USERS):
        return
    modes = _selected_modes()
    marker = metafunc.definition.get_closest_marker("regtest_modes")
    if marker is not None:
        modes = tuple(m for m in modes if m in marker.args)
    if "regtest_mode" not in names:
        names.append("regtest_mode")  # the indirect users ask for the network lazily
    # An empty list makes pytest skip the test ("got empty parameter set"), as it should.
    metafunc.parametrize("regtest_mode", modes, indirect=True, scope="session")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test given ``regtest_mode`` only because of its fixtures, and not marked regtest
    (the contract suite's simnet half), runs in one mode, not in each."""
    first = _selected_modes()[0]
    kept, dropped = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        mode = callspec.params.get("regtest_mode") if callspec is not None else None
        if mode not in (None, first) and item.get_closest_marker("regtest") is None:
            dropped.append(item)
        else:
            kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


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
def regtest_mode(request: pytest.FixtureRequest) -> str:
    """The network mode of this test: ``standalone`` or ``remote-signer``."""
    mode: str = getattr(request, "param", MODES[0])
    return mode


@pytest.fixture(scope="session")
def regtest(
    regtest_bin_dir: Path,
    regtest_mode: str,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Iterator[Network]:
    """A running network: btcd, and lnd exchange <-> alice <-> bob with channels (in
    remote-signer mode the exchange watch-only, its seed on a fourth lnd, ``signer``)."""
    state_dir = tmp_path_factory.mktemp(f"regtest-{regtest_mode}")
    failed_before = request.session.testsfailed
    began = time.monotonic()
    # On failure `up` stops what it started and keeps the logs itself.
    up(state_dir, regtest_bin_dir, mode=regtest_mode)
    network = Network.load(state_dir)
    yield network
    failed = request.session.testsfailed > failed_before
    down(state_dir, keep_logs=failed)
    # Shown with -s or -rA; scripts/test.sh prints the --durations table either way.
    print(
        f"\nregtest {regtest_mode}: up in {network.up_seconds:.0f}s, "
        f"{time.monotonic() - began:.0f}s from up to down"
    )
    if failed:
        print(f"regtest logs kept in {state_dir / 'logs'}")
