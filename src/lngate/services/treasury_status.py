"""The treasury at a glance: the hot float (on chain and in channels) against its cap and
target, what a sweep would move now, and the cold-storage totals. Read only."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from lngate.domain.ledger import AccountKind
from lngate.domain.treasury import TreasuryPolicy, sweep_amount_sat
from lngate.lightning.node import Node
from lngate.services.onchain_books import BookedClose
from lngate.services.ports import UnitOfWork
from lngate.store import treasury as store
from lngate.store.db import Tx
from lngate.store.ledger import get_account

STATUS_CLOSES_MAX = 100

# The records' fields are the wire's (``schemas.Treasury`` validates a report as it is), and
# their order is the order ``lngate treasury status`` prints.


@dataclass(frozen=True, slots=True)
class TreasuryOnchain:
    confirmed_sat: int
    unconfirmed_sat: int
    cap_sat: int
    would_sweep_sat: int


@dataclass(frozen=True, slots=True)
class TreasuryChannels:
    local_msat: int
    remote_msat: int
    pending_htlcs_msat: int
    target_local_sat: int


@dataclass(frozen=True, slots=True)
class TreasuryCold:
    ledger_balance_msat: int
    addresses_free: int
    addresses_pending: int
    addresses_used: int
    pending_sweep_address: str | None
    sweeps: int
    swept_sat: int
    sweep_fees_sat: int
    channel_closes: int
    channel_closes_sat: int
    channel_funding_fees_sat: int


@dataclass(frozen=True, slots=True)
class TreasuryReport:
    onchain: TreasuryOnchain
    channels: TreasuryChannels
    cold: TreasuryCold
    channel_closes: tuple[BookedClose, ...]  # the most recent, newest first

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "channel_closes": [asdict(c) for c in self.channel_closes]}


class TreasuryStatus:
    """Reports the treasury: the node's balances (``node`` must be able to read the wallet)
    beside the books' cold account and the cold addresses' totals."""

    def __init__(
        self,
        uow: UnitOfWork,
        node: Node,
        policy: TreasuryPolicy,
        system_accounts: Mapping[str, int],
    ) -> None:
        self._uow = uow
        self._node = node
        self._policy = policy
        self._cold_account = system_accounts[AccountKind.COLD.value]

    async def report(self) -> TreasuryReport:
        balances = await self._node.balances()
        # One snapshot: the totals and the recent closes agree with each other.
        cold, closes = await self._uow.read(
            lambda tx: (self._cold(tx), store.booked_closes(tx, limit=STATUS_CLOSES_MAX))
        )
        policy = self._policy
        return TreasuryReport(
            onchain=TreasuryOnchain(
                confirmed_sat=balances.onchain_confirmed_sat,
                unconfirmed_sat=balances.onchain_unconfirmed_sat,
                cap_sat=policy.hot_onchain_cap_sat,
                would_sweep_sat=sweep_amount_sat(balances.onchain_confirmed_sat, policy),
            ),
            channels=TreasuryChannels(
                local_msat=balances.channel_local_msat,
                remote_msat=balances.channel_remote_msat,
                pending_htlcs_msat=balances.pending_htlcs_msat,
                target_local_sat=policy.hot_channel_target_sat,
            ),
            cold=cold,
            channel_closes=tuple(
                BookedClose(
                    r.channel_point or "", r.close_txid or "", r.address, r.close_amount_sat or 0
                )
                for r in closes
            ),
        )

    def _cold(self, tx: Tx) -> TreasuryCold:
        account = get_account(tx, self._cold_account)
        assert account is not None
        # An asset: what was debited to it less what was credited.
        balance_msat = account.balance.debits_posted_msat - account.balance.credits_posted_msat
        counts = store.counts(tx)
        pending = store.pending_sweep(tx)
        sweeps = store.sweep_totals(tx)
        closes = store.close_totals(tx)
        return TreasuryCold(
            ledger_balance_msat=balance_msat,
            addresses_free=counts.free,
            addresses_pending=counts.pending,
            addresses_used=counts.used,
            pending_sweep_address=pending.address if pending else None,
            sweeps=sweeps.count,
            swept_sat=sweeps.amount_sat,
            sweep_fees_sat=sweeps.fee_sat,
            channel_closes=closes.count,
            channel_closes_sat=closes.amount_sat,
            channel_funding_fees_sat=closes.funding_fees_sat,
        )
