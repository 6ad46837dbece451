"""Reconciliation of the books against the node: what lngate owes against what it holds.

    required = liabilities (users and merchants, holds not yet posted included)
             + fee revenue - routing and on-chain fee expenses
    assets   = node (on-chain, channel local balance, outgoing HTLCs in flight) + cold storage
    shortfall = required - assets

A shortfall beyond the tolerance (plus any shortfall an operator has acknowledged), or any broken
ledger invariant, halts withdrawals. Funds the node held before lngate booked anything (its opening
balance) show as a surplus, never as a shortfall.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from lngate.bootstrap import Core
from lngate.domain.ledger import LIABILITY_KINDS, AccountKind
from lngate.domain.money import MSAT_PER_SAT
from lngate.lightning.node import Balances, Node
from lngate.services import halt
from lngate.services.reconciliation import check_ledger
from lngate.store import system_state
from lngate.store.db import Tx
from lngate.store.ledger import all_accounts

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Books:
    liabilities_msat: int
    fee_revenue_msat: int
    expenses_msat: int
    cold_msat: int
    pending_withdrawals_msat: int

    @property
    def required_msat(self) -> int:
        return self.liabilities_msat + self.fee_revenue_msat - self.expenses_msat


def books(tx: Tx) -> Books:
    liabilities = fee_revenue = expenses = cold = 0
    for account in all_accounts(tx):
        b = account.balance
        if account.kind in LIABILITY_KINDS:
            liabilities += b.credits_posted_msat - b.debits_posted_msat
        elif account.kind is AccountKind.FEE_REVENUE:
            fee_revenue += b.credits_posted_msat - b.debits_posted_msat
        elif account.kind in (AccountKind.ROUTING_FEE_EXPENSE, AccountKind.ONCHAIN_FEE_EXPENSE):
            expenses += b.debits_posted_msat - b.credits_posted_msat
        elif account.kind is AccountKind.COLD:
            cold += b.debits_posted_msat - b.credits_posted_msat
    pending = tx.scalar(
        "SELECT COALESCE(SUM(amount_msat + fee_reserve_msat), 0) FROM withdrawals "
        "WHERE status IN ('approved', 'sending') AND internal = 0"
    )
    return Books(liabilities, fee_revenue, expenses, cold, int(pending))


def node_assets_msat(b: Balances) -> int:
    onchain_msat = (b.onchain_confirmed_sat + b.onchain_unconfirmed_sat) * MSAT_PER_SAT
    return (
        onchain_msat
        + b.channel_local_msat
        + b.pending_htlcs_msat
        + (b.channel_pending_open_local_msat)
    )


def liquidity_warnings(bk: Books, b: Balances, inbound_floor_msat: int) -> list[str]:
    warnings = []
    if b.channel_local_msat < bk.pending_withdrawals_msat:
        warnings.append(
            f"outbound liquidity {b.channel_local_msat} msat is below pending withdrawals "
            f"{bk.pending_withdrawals_msat} msat"
        )
    if b.channel_remote_msat < inbound_floor_msat:
        warnings.append(
            f"inbound liquidity {b.channel_remote_msat} msat is below the floor "
            f"{inbound_floor_msat} msat"
        )
    return warnings


async def reconcile(core: Core, node: Node, *, actor: str = "reconciliation") -> dict[str, Any]:
    """One full check: stored as a report; halts withdrawals when it fails."""
    balances = await node.balances()

    def check(tx: Tx) -> dict[str, Any]:
        ledger = check_ledger(tx)
        bk = books(tx)
        assets = node_assets_msat(balances) + bk.cold_msat
        shortfall = bk.required_msat - assets
        allowed = halt.acknowledged_shortfall_msat(tx) + core.config.reconcile_tolerance_msat
        solvent = shortfall <= allowed
        report: dict[str, Any] = {
            "ok": ledger.ok and solvent,
            "ledger": ledger.as_json(),
            "liabilities_msat": bk.liabilities_msat,
            "fee_revenue_msat": bk.fee_revenue_msat,
            "expenses_msat": bk.expenses_msat,
            "required_msat": bk.required_msat,
            "node": {
                "onchain_confirmed_sat": balances.onchain_confirmed_sat,
                "onchain_unconfirmed_sat": balances.onchain_unconfirmed_sat,
                "channel_local_msat": balances.channel_local_msat,
                "channel_remote_msat": balances.channel_remote_msat,
                "pending_htlcs_msat": balances.pending_htlcs_msat,
                "assets_msat": node_assets_msat(balances),
            },
            "cold_msat": bk.cold_msat,
            "assets_msat": assets,
            "shortfall_msat": shortfall,
            "shortfall_allowed_msat": allowed,
            "pending_withdrawals_msat": bk.pending_withdrawals_msat,
            "warnings": liquidity_warnings(bk, balances, core.config.inbound_floor_msat),
        }
        report["id"] = system_state.add_report(tx, report["ok"], shortfall, report)
        if not report["ok"]:
            why = (
                "ledger invariant broken"
                if not ledger.ok
                else (f"shortfall of {shortfall} msat (allowed {allowed})")
            )
            if halt.halt(tx, reason=f"reconciliation failed: {why}", actor=actor):
                log.error("withdrawals halted: %s", why)
        report["withdrawals_halted"] = halt.halted(tx) is not None
        return report

    report = await core.write(check)
    for warning in report["warnings"]:
        log.warning("liquidity: %s", warning)
    return report
