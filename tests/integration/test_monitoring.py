"""The operators' gauges read the books, the last reconciliation and the counts by status."""

from __future__ import annotations

from lngate.bootstrap import Core, NodeRole, open_node, use_cases
from lngate.services.monitoring import Monitoring
from tests.conftest import funded_user


def test_a_fresh_book_shows_what_users_are_owed_and_no_reconciliation(core: Core) -> None:
    funded_user(core, "alice", 123_000)

    snap = Monitoring(core.uow, signer=None).books_sync()

    assert snap.liabilities_msat == 123_000
    assert snap.pending_withdrawals_msat == 0
    assert snap.withdrawals_halted is False
    assert snap.last_reconciliation is None
    assert snap.deposits_by_status == {} and snap.withdrawals_by_status == {}


def test_a_node_without_a_remote_signer_has_no_signer_gauge(core: Core) -> None:
    assert Monitoring(core.uow, signer=None).signer_reachable_sync() is None


async def test_the_last_reconciliation_gives_the_node_figures(core: Core) -> None:
    funded_user(core, "alice", 123_000)
    node = open_node(core.config, NodeRole.RECONCILER)
    try:
        cases = use_cases(core, node)
        report = await cases.solvency.reconcile()
    finally:
        await node.close()

    last = cases.monitoring.books_sync().last_reconciliation

    assert last is not None
    assert last.node_assets_msat == report.node.assets_msat
    assert last.shortfall_msat == report.shortfall_msat
    assert last.liquidity_warnings == len(report.warnings)
    assert last.hot_float_msat == (
        report.node.onchain_confirmed_sat * 1000 + report.node.channel_local_msat
    )
