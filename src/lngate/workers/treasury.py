"""The treasury worker: sweeps confirmed on-chain funds above the hot cap to cold storage, and
books what channels opened to cold close addresses moved: a cooperative close paid our side to
cold storage (node -> cold), a funding transaction paid a fee (node -> fee expense); see
``lngate.services.onchain_books``.

Crash safety, in the order of the steps:

1. The sweep address is handed out and committed before anything is sent, with this worker's
   claim on it. While it is *pending* (handed out, no sweep recorded), no other address is
   handed out for sweeping, so at most one sweep is ever in progress.
2. Every run first asks the node for transactions paying the pending address: a sweep sent
   before a crash (or an error) is found and recorded, never sent again.
3. Only when the node knows no such transaction is the pending address sent to: the guard
   ``ColdStorage.require_cold_address`` is checked right before ``send_onchain``.
4. The sweep is recorded (sweep row, address used, ledger transfers) in one transaction whose
   ids derive from the txid, so recording twice moves nothing.

Several workers (processes) may run: a claim older than ``lease_s`` may be taken over (its worker
is presumed dead); a younger one belongs to its worker and the others leave it alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass

from lngate.crashpoints import crash_point
from lngate.domain.errors import NoColdAddress, NodeError
from lngate.domain.treasury import ColdPurpose, TreasuryPolicy, sweep_amount_sat
from lngate.lightning.node import Network, Node, OnchainTx
from lngate.services.cold_storage import ColdStorage, SweepClaim
from lngate.services.onchain_books import BookedClose, OnchainBooks

log = logging.getLogger(__name__)

LEASE_S_DEFAULT = 600.0


@dataclass(frozen=True, slots=True)
class SweepResult:
    txid: str
    address: str
    amount_sat: int
    fee_sat: int
    recovered: bool  # found on chain after a crash or an error, not sent by this run


def paying(txs: list[OnchainTx], address: str) -> list[OnchainTx]:
    """Wallet transactions that sent coins out to ``address``."""
    return [t for t in txs if address in t.addresses and t.amount_sat < 0]


class TreasuryWorker:
    """Every ``interval_s`` (default: the policy's): book what channels moved, then sweep.

    ``node`` is the one that sends on chain (the spending credential); ``cold_storage`` and
    ``books`` are the use cases it drives."""

    def __init__(
        self,
        cold_storage: ColdStorage,
        books: OnchainBooks,
        node: Node,
        policy: TreasuryPolicy,
        *,
        interval_s: float | None = None,
        lease_s: float = LEASE_S_DEFAULT,
    ) -> None:
        self._cold = cold_storage
        self._books = books
        self._node = node
        self._policy = policy
        self._interval_s = policy.sweep_interval_s if interval_s is None else interval_s
        self._lease_ms = int(lease_s * 1000)
        self._token = uuid.uuid4().hex
        self._network: Network | None = None
        self.swept = 0
        self.closes_booked = 0

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                self.closes_booked += len(await self.book_once())
            except NodeError as exc:
                log.warning("treasury booking of channel closes did not run: %s", exc)
            try:
                result = await self.sweep_once()
                if result is not None:
                    self.swept += 1
            except (NodeError, NoColdAddress) as exc:
                log.warning("treasury sweep did not run: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._interval_s)

    async def book_once(self) -> list[BookedClose]:
        """Book cooperative closes to cold and channel funding fees not booked yet; returns the
        closes booked by this call."""
        await self._books.book_funding_fees()
        return await self._books.book_closed_channels()

    async def sweep_once(self) -> SweepResult | None:
        """Finish a pending sweep or start one if the hot wallet is above its cap; returns
        the sweep recorded by this call, or None."""
        claimed = await self._cold.claim_pending_sweep(self._token, self._lease_ms)
        if claimed is SweepClaim.BUSY:
            return None
        pending = None if claimed is SweepClaim.NONE else claimed
        if pending is not None:
            found = await self._record_found(pending.address)
            if found is not None:
                return found
        balances = await self._node.balances()
        amount_sat = sweep_amount_sat(balances.onchain_confirmed_sat, self._policy)
        if amount_sat == 0:
            return None
        if pending is not None:
            address = pending.address  # handed out before, never paid: send to it now
        else:
            fresh = await self._cold.allocate_sweep(self._token)
            if fresh is None:
                return None
            address = fresh.address
        crash_point("treasury_after_allocate")
        txid = await self._send(address, amount_sat)
        crash_point("treasury_after_send")
        sent = [t for t in await self._node.list_onchain_transactions() if t.txid == txid]
        if not sent:  # not listed yet: the next run finds it by its address
            log.warning("sweep %s to %s not listed by the node yet", txid, address)
            return None
        await self._cold.record_sweep(address, txid, amount_sat, sent[0].fee_sat)
        return SweepResult(txid, address, amount_sat, sent[0].fee_sat, recovered=False)

    async def _send(self, address: str, amount_sat: int) -> str:
        network = await self._node_network()
        # The one place coins leave for cold storage: the address must be a fresh cold one.
        await self._cold.require_cold_address(address, ColdPurpose.SWEEP, network)
        log.info("sweeping %d sat to cold address %s", amount_sat, address)
        return await self._node.send_onchain(address, amount_sat, self._policy.sweep_sat_per_vbyte)

    async def _record_found(self, address: str) -> SweepResult | None:
        """Record every sweep to ``address`` the node knows of (normally one)."""
        result = None
        for found in paying(await self._node.list_onchain_transactions(), address):
            amount_sat = -found.amount_sat - found.fee_sat  # amount_sat is the wallet's change
            if amount_sat <= 0:
                log.error("transaction %s to cold %s moved nothing out", found.txid, address)
                continue
            if await self._cold.record_sweep(address, found.txid, amount_sat, found.fee_sat):
                log.warning("recorded sweep %s found on chain (after a crash?)", found.txid)
            result = SweepResult(found.txid, address, amount_sat, found.fee_sat, recovered=True)
        return result

    async def _node_network(self) -> Network:
        if self._network is None:
            self._network = (await self._node.get_info()).network
        return self._network
