"""What the operators' gauges show: the books, the last reconciliation, the halt, and deposits
and withdrawals by status, read in one transaction at scrape time; and, for a watch-only node,
whether its remote signer answers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lngate.domain.money import MSAT_PER_SAT
from lngate.lightning.lnd.signer import SignerProbe
from lngate.services import halt
from lngate.services.ports import UnitOfWork
from lngate.services.solvency import books
from lngate.store import deposits, system_state, withdrawals
from lngate.store.db import Tx


@dataclass(frozen=True, slots=True)
class LastReconciliation:
    node_assets_msat: int
    hot_float_msat: int  # on-chain confirmed and channel local balance
    shortfall_msat: int  # required minus assets; negative is a surplus
    liquidity_warnings: int


@dataclass(frozen=True, slots=True)
class BooksSnapshot:
    liabilities_msat: int
    cold_msat: int
    pending_withdrawals_msat: int
    withdrawals_halted: bool
    last_reconciliation: LastReconciliation | None
    deposits_by_status: dict[str, int]
    withdrawals_by_status: dict[str, int]


class Monitoring:
    """The figures behind ``/metrics``, read at scrape time (off the event loop: sync)."""

    def __init__(self, uow: UnitOfWork, signer: SignerProbe | None) -> None:
        self._uow = uow
        self._signer = signer

    def books_sync(self) -> BooksSnapshot:
        return self._uow.read_sync(books_snapshot)

    def signer_reachable_sync(self) -> bool | None:
        """Whether the node's remote signer answers now; None for a node without one."""
        return None if self._signer is None else self._signer.check().reachable


def books_snapshot(tx: Tx) -> BooksSnapshot:
    bk = books(tx)
    last = system_state.reports(tx, 1)
    return BooksSnapshot(
        liabilities_msat=bk.liabilities_msat,
        cold_msat=bk.cold_msat,
        pending_withdrawals_msat=bk.pending_withdrawals_msat,
        withdrawals_halted=halt.halted(tx) is not None,
        last_reconciliation=_last_reconciliation(last[0]["report"]) if last else None,
        deposits_by_status=deposits.count_by_status(tx),
        withdrawals_by_status=withdrawals.count_by_status(tx),
    )


def _last_reconciliation(report: dict[str, Any]) -> LastReconciliation:
    node = report["node"]
    return LastReconciliation(
        node_assets_msat=node["assets_msat"],
        hot_float_msat=node["onchain_confirmed_sat"] * MSAT_PER_SAT + node["channel_local_msat"],
        shortfall_msat=report["shortfall_msat"],
        liquidity_warnings=len(report["warnings"]),
    )
