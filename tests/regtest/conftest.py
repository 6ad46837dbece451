"""The regtest network, started once per test session: its fixtures (``regtest``,
``regtest_bin_dir``) live in tests/regtest/network_plugin.py, shared with tests/contract."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    # The regtest network fixtures (loaded once, whichever conftest asks first).
    config.pluginmanager.import_plugin("tests.regtest.network_plugin")
