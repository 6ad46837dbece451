"""Reconciliation of the books against the node: what lngate owes against what it holds.

    required = liabilities (users and merchants, holds not yet posted included)
             + fee revenue - routing and on-chain fee expenses
    assets   = node (on-chain, channel local balance, outgoing HTLCs in flight) + cold storage
             + held HTLCs (orders credited before their HTLC is settled, see services.orders)
    shortfall = required - assets

A shortfall beyond the tolerance (plus any shortfall an operator has acknowledged), or any broken
ledger invariant, halts withdrawals. Funds the node held before lngate booked anything (its opening
balance) show as a surplus, never as a shortfall.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lngate.domain.ledger import LIABILITY_KINDS, AccountKind
from lngate.domain.money import MSAT_PER_SAT
from lngate.lightning.node import Balances, Node
from lngate.services import halt
from lngate.services.ports import Clock, UnitOfWork
from lngate.services.reconciliation import Check, LedgerReport, check_ledger
from lngate.store import orders, system_state
from lngate.store.db import Tx
from lngate.store.ledger import all_accounts

log = logging.getLogger(__name__)

CLOCK_SLACK_MS = 5_000  # processes' clocks differ a little: count recent settlements generously


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


@dataclass(frozen=True, slots=True)
class NodeAssets:
    onchain_confirmed_sat: int
    onchain_unconfirmed_sat: int
    channel_local_msat: int
    channel_remote_msat: int
    pending_htlcs_msat: int
    assets_msat: int

    @classmethod
    def of(cls, b: Balances) -> NodeAssets:
        return cls(
            b.onchain_confirmed_sat,
            b.onchain_unconfirmed_sat,
            b.channel_local_msat,
            b.channel_remote_msat,
            b.pending_htlcs_msat,
            node_assets_msat(b),
        )


@dataclass(frozen=True, slots=True)
class ReconciliationReport:
    """One check of the books against the node, as stored (``schemas.ReconciliationReport``)."""

    ok: bool
    ledger: LedgerReport
    liabilities_msat: int
    fee_revenue_msat: int
    expenses_msat: int
    required_msat: int
    node: NodeAssets
    cold_msat: int
    assets_msat: int
    shortfall_msat: int
    shortfall_allowed_msat: int
    pending_withdrawals_msat: int
    held_htlcs_msat: int  # orders credited whose HTLC the node had not settled yet
    warnings: tuple[str, ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "ledger": self.ledger.as_json(),
            "liabilities_msat": self.liabilities_msat,
            "fee_revenue_msat": self.fee_revenue_msat,
            "expenses_msat": self.expenses_msat,
            "required_msat": self.required_msat,
            "node": {
                "onchain_confirmed_sat": self.node.onchain_confirmed_sat,
                "onchain_unconfirmed_sat": self.node.onchain_unconfirmed_sat,
                "channel_local_msat": self.node.channel_local_msat,
                "channel_remote_msat": self.node.channel_remote_msat,
                "pending_htlcs_msat": self.node.pending_htlcs_msat,
                "assets_msat": self.node.assets_msat,
            },
            "cold_msat": self.cold_msat,
            "held_htlcs_msat": self.held_htlcs_msat,
            "assets_msat": self.assets_msat,
            "shortfall_msat": self.shortfall_msat,
            "shortfall_allowed_msat": self.shortfall_allowed_msat,
            "pending_withdrawals_msat": self.pending_withdrawals_msat,
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> ReconciliationReport:
        """A stored report read back."""
        ledger = body["ledger"]
        checks = tuple(Check(c["name"], c["ok"], c["detail"]) for c in ledger["checks"])
        return cls(
            ok=body["ok"],
            ledger=LedgerReport(checks),
            liabilities_msat=body["liabilities_msat"],
            fee_revenue_msat=body["fee_revenue_msat"],
            expenses_msat=body["expenses_msat"],
            required_msat=body["required_msat"],
            node=NodeAssets(**body["node"]),
            cold_msat=body["cold_msat"],
            assets_msat=body["assets_msat"],
            shortfall_msat=body["shortfall_msat"],
            shortfall_allowed_msat=body["shortfall_allowed_msat"],
            pending_withdrawals_msat=body["pending_withdrawals_msat"],
            warnings=tuple(body["warnings"]),
            held_htlcs_msat=body.get("held_htlcs_msat", 0),  # reports stored before Pay
        )


@dataclass(frozen=True, slots=True)
class Reconciliation(ReconciliationReport):
    """A check just made: its stored report's id, and whether withdrawals are halted now
    (``schemas.Reconciliation``)."""

    id: int
    withdrawals_halted: bool

    def as_json(self) -> dict[str, Any]:
        body = ReconciliationReport.as_json(self)
        body["id"] = self.id
        body["withdrawals_halted"] = self.withdrawals_halted
        return body


class Solvency:
    """Reconciliation: the ledger's invariants, and what lngate owes against what the node and
    cold storage hold. Each full check is stored as a report; a failed one halts withdrawals
    (audited, in the same transaction)."""

    def __init__(
        self,
        uow: UnitOfWork,
        node: Node,
        *,
        tolerance_msat: int,
        inbound_floor_msat: int,
        clock: Clock,
    ) -> None:
        self._uow = uow
        self._node = node
        self._tolerance_msat = tolerance_msat
        self._inbound_floor_msat = inbound_floor_msat
        self._clock = clock

    async def reconcile(self, *, actor: str = "reconciliation") -> Reconciliation:
        """One full check; NodeError when the node cannot say what it holds (then nothing is
        stored)."""
        asked_at_ms = self._clock.now_ms()  # before the node answers: see credited_unsettled
        balances = await self._node.balances()
        report = await self._uow.write(lambda tx: self._check(tx, balances, actor, asked_at_ms))
        for warning in report.warnings:
            log.warning("liquidity: %s", warning)
        return report

    def _check(self, tx: Tx, balances: Balances, actor: str, asked_at_ms: int) -> Reconciliation:
        ledger = check_ledger(tx)
        bk = books(tx)
        held = orders.credited_unsettled_msat(tx, settled_since_ms=asked_at_ms - CLOCK_SLACK_MS)
        assets = node_assets_msat(balances) + bk.cold_msat + held
        shortfall = bk.required_msat - assets
        allowed = halt.acknowledged_shortfall_msat(tx) + self._tolerance_msat
        report = ReconciliationReport(
            ok=ledger.ok and shortfall <= allowed,
            ledger=ledger,
            liabilities_msat=bk.liabilities_msat,
            fee_revenue_msat=bk.fee_revenue_msat,
            expenses_msat=bk.expenses_msat,
            required_msat=bk.required_msat,
            node=NodeAssets.of(balances),
            cold_msat=bk.cold_msat,
            assets_msat=assets,
            shortfall_msat=shortfall,
            shortfall_allowed_msat=allowed,
            pending_withdrawals_msat=bk.pending_withdrawals_msat,
            warnings=tuple(liquidity_warnings(bk, balances, self._inbound_floor_msat)),
            held_htlcs_msat=held,
        )
        report_id = system_state.add_report(tx, report.ok, shortfall, report.as_json())
        if not report.ok:
            why = (
                "ledger invariant broken"
                if not ledger.ok
                else (f"shortfall of {shortfall} msat (allowed {allowed})")
            )
            reason = f"reconciliation failed: {why}"
            if halt.halt(tx, reason=reason, actor=actor, at_ms=self._clock.now_ms()):
                log.error("withdrawals halted: %s", why)
        return Reconciliation(
            **{f: getattr(report, f) for f in _REPORT_FIELDS},
            id=report_id,
            withdrawals_halted=halt.halted(tx) is not None,
        )


_REPORT_FIELDS = tuple(f.name for f in dataclasses.fields(ReconciliationReport))
