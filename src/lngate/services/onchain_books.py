"""The on-chain books of the channels lngate opened to cold close addresses: a cooperative
close paid our side on chain to cold storage, and the funding transaction paid a miner's fee.

Ledger signs as for a sweep (see services/cold_storage.py)::

    close:<closing txid>         debit cold                 credit node   settled_sat * 1000
    channel_fee:<funding txid>   debit onchain_fee_expense  credit node   fee_sat * 1000

Both ids derive from a txid, and each booking first marks its address row conditionally, so
booking twice (by one worker or several) moves nothing the second time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from lngate.domain.errors import InvariantBroken
from lngate.domain.ledger import AccountKind, TransferSpec
from lngate.domain.money import MSAT_PER_SAT
from lngate.domain.treasury import ColdPurpose, require_booked
from lngate.lightning.node import ClosedChannel, CloseType, Node, OnchainTx
from lngate.services.ports import Clock, UnitOfWork
from lngate.store import treasury as store
from lngate.store.db import Tx
from lngate.store.ledger import apply_transfer

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BookedClose:
    channel_point: str
    closing_txid: str
    address: str  # the cold address the close paid
    amount_sat: int  # our side, now in cold storage

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class BookedFundingFee:
    channel_point: str
    funding_txid: str
    fee_sat: int


class OnchainBooks:
    """Books what the channels opened to cold close addresses moved on chain, once each:
    cooperative closes (node -> cold) and funding fees (node -> on-chain fee expense).

    ``node`` must be able to read the wallet (closed channels, on-chain transactions)."""

    def __init__(
        self, uow: UnitOfWork, node: Node, system_accounts: Mapping[str, int], clock: Clock
    ) -> None:
        self._uow = uow
        self._node = node
        self._accounts = system_accounts
        self._clock = clock

    async def book_closed_channels(self) -> list[BookedClose]:
        """Book every cooperative close, final on chain, of a channel lngate opened to a cold
        close address: our settled balance went to that cold address. Returns what this call
        booked.

        Only cooperative closes are booked. A force close (ours or the peer's, or a breach)
        pays our side to the node's own wallet, not to the upfront shutdown address: the node's
        on-chain balance counts it there, so nothing moved to cold storage. A canceled or
        abandoned funding never left the wallet either."""
        unclosed = await self._uow.read(lambda tx: store.channel_rows(tx, unclosed=True))
        if not unclosed:
            return []
        by_point = {row.channel_point: row for row in unclosed}
        booked = []
        for closed in await self._node.list_closed_channels():
            row = by_point.get(closed.channel_point)
            if row is None or closed.close_type is not CloseType.COOPERATIVE:
                continue  # not ours to book (see above), or booked already
            if closed.close_address is not None and closed.close_address != row.address:
                # The upfront shutdown script makes this impossible; never book what cold did
                # not receive.
                log.error(
                    "channel %s closed to %s, not to its cold address %s: not booked",
                    closed.channel_point,
                    closed.close_address,
                    row.address,
                )
                continue
            op = record_close_op(row.address, closed, self._accounts, self._clock)
            if await self._uow.write(op):
                log.info(
                    "booked cooperative close %s of %s: %d sat to cold %s",
                    closed.closing_txid,
                    closed.channel_point,
                    closed.settled_balance_sat,
                    row.address,
                )
                booked.append(
                    BookedClose(
                        closed.channel_point,
                        closed.closing_txid,
                        row.address,
                        closed.settled_balance_sat,
                    )
                )
        return booked

    async def book_funding_fees(self) -> list[BookedFundingFee]:
        """Book the funding fee of every channel lngate opened (to a cold close address) whose
        funding transaction the wallet lists, confirmed, with a fee it can prove."""
        rows = await self._uow.read(lambda tx: store.channel_rows(tx, fee_unbooked=True))
        if not rows:
            return []
        txs = {t.txid: t for t in await self._node.list_onchain_transactions()}
        booked = []
        for row in rows:
            assert row.channel_point is not None and row.amount_sat is not None
            funding_txid = row.channel_point.split(":", 1)[0]
            funding = txs.get(funding_txid)
            fee = None if funding is None else funding_fee_sat(funding, row.amount_sat)
            if fee is None:
                continue  # not confirmed or not listed yet, or its fee cannot be proven
            op = record_funding_fee_op(row.address, funding_txid, fee, self._accounts)
            if await self._uow.write(op):
                booked.append(BookedFundingFee(row.channel_point, funding_txid, fee))
        return booked


def funding_fee_sat(funding: OnchainTx, capacity_sat: int) -> int | None:
    """The miner's fee of a channel funding transaction, when the wallet's record of it proves
    it: confirmed, and the wallet's change is exactly minus (capacity + fee). lnd reports
    ``total_fees`` only when every input is the wallet's (btcwallet ``makeTxSummary``), and then
    ``amount`` is the wallet's change; anything else (an external input, a fee not reported)
    fails the check and nothing is booked."""
    if funding.confirmations < 1 or funding.fee_sat < 0:
        return None
    if -funding.amount_sat != capacity_sat + funding.fee_sat:
        return None
    return funding.fee_sat


def record_close_op(
    address: str, closed: ClosedChannel, accounts: Mapping[str, int], clock: Clock
) -> Callable[[Tx], bool]:
    """Book a cooperative close that paid ``address`` (a channel's cold close address): the
    address marked with the closing txid and amount, and node -> cold, in one transaction.
    Idempotent: the mark is conditional and the transfer id is the closing txid; returns
    whether this call booked it."""
    amount_sat = closed.settled_balance_sat
    if closed.close_type is not CloseType.COOPERATIVE or amount_sat < 0:
        raise InvariantBroken(f"not a cooperative close to book to cold: {closed}")
    txid = closed.closing_txid

    def op(tx: Tx) -> bool:
        row = store.by_address(tx, address)
        if row is None or row.purpose is not ColdPurpose.CHANNEL_CLOSE:
            raise InvariantBroken(f"close {txid}: {address} is no cold channel-close address")
        if row.channel_point != closed.channel_point:
            raise InvariantBroken(
                f"close {txid}: {address} belongs to channel {row.channel_point}, "
                f"not {closed.channel_point}"
            )
        if not store.mark_closed(tx, address, txid, amount_sat, clock.now_ms()):
            return False  # booked before (by this worker or another)
        if amount_sat:  # nothing of ours above the dust limit: no output, nothing to book
            # node -> cold: debit cold (asset up), credit node (asset down), as a sweep.
            spec = TransferSpec(
                f"close:{txid}",
                accounts[AccountKind.COLD.value],
                accounts[AccountKind.NODE.value],
                amount_sat * MSAT_PER_SAT,
                kind="channel_close",
                memo=closed.channel_point,
            )
            require_booked(spec.id, apply_transfer(tx, spec))
        return True

    return op


def record_funding_fee_op(
    address: str, funding_txid: str, fee_sat: int, accounts: Mapping[str, int]
) -> Callable[[Tx], bool]:
    """Book a channel's funding fee once: the address row marked, node -> fee expense."""
    if fee_sat < 0:
        raise InvariantBroken(f"funding {funding_txid}: fee_sat={fee_sat}")

    def op(tx: Tx) -> bool:
        if not store.mark_funding_fee(tx, address, fee_sat):
            return False
        if fee_sat:
            # node -> on-chain fee expense: debit the expense, credit node.
            spec = TransferSpec(
                f"channel_fee:{funding_txid}",
                accounts[AccountKind.ONCHAIN_FEE_EXPENSE.value],
                accounts[AccountKind.NODE.value],
                fee_sat * MSAT_PER_SAT,
                kind="onchain_fee",
                memo=funding_txid,
            )
            require_booked(spec.id, apply_transfer(tx, spec))
        return True

    return op
