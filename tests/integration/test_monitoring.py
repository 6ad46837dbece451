"""The operators' gauges read the books, the last reconciliation and the counts by status."""

from __future__ import annotations

from lngate.bootstrap import Core, open_node
from lngate.services.monitoring import books_snapshot
from lngate.services.solvency import reconcile
from tests.conftest import funded_user


def test_a_fresh_book_shows_what_users_are_owed_and_no_reconciliation(core: Core) -> None:
    funded_user(core, "alice", 123_000)

    snap = core.read_sync(books_snapshot)

    assert snap.liabilities_msat == 123_000
    assert snap.pending_withdrawals_msat == 0
    assert snap.withdrawals_halted is False
    assert snap.last_reconciliation is None
    assert snap.deposits_by_status == {} and snap.withdrawals_by_status == {}


async def test_the_last_reconciliation_gives_the_node_figures(core: Core) -> None:
    funded_user(core, "alice", 123_000)
    node = open_node(core.config, spending=True)
    try:
        report = await reconcile(core, node)
    finally:
        await node.close()

    last = core.read_sync(books_snapshot).last_reconciliation

    assert last is not None
    assert last.node_assets_msat == report["node"]["assets_msat"]
    assert last.shortfall_msat == report["shortfall_msat"]
    assert last.liquidity_warnings == len(report["warnings"])
    node_figures = report["node"]
    assert last.hot_float_msat == (
        node_figures["onchain_confirmed_sat"] * 1000 + node_figures["channel_local_msat"]
    )
