"""``SimnetNode``: one simnet node behind the async ``Node`` port."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

from lngate.lightning.bolt11 import decode_bolt11
from lngate.lightning.node import (
    HOLD_INVOICE_CLTV,
    Balances,
    Channel,
    ClosedChannel,
    DecodedInvoice,
    Invoice,
    InvoiceState,
    NodeInfo,
    OnchainTx,
    Payment,
    PaymentStatus,
)
from lngate.lightning.simnet.network import EXCHANGE, SimnetNetwork

POLL_INTERVAL_S = 0.02  # cross-process: how often a subscription or a waiting pay looks again
REPLAY_PAGE = 100
SUBSCRIPTION_POLL_S = 0.05  # how often the invoice poller looks for commits
SUBSCRIPTION_REREAD_S = 2.0
MAX_TIMEOUT_S = 3600

log = logging.getLogger(__name__)


class SimnetNode:
    """The node ``name`` of a ``SimnetNetwork``. Calls are short SQLite transactions run
    directly on the event loop; faults of the node (offline, slow) apply to every call."""

    def __init__(
        self, network: SimnetNetwork, name: str = EXCHANGE, *, owns_network: bool = False
    ) -> None:
        self.network = network
        self.name = name
        self._owns_network = owns_network
        self._pollers: dict[asyncio.AbstractEventLoop, _InvoicePoller] = {}

    @classmethod
    def open(cls, state_dir: Path, name: str = EXCHANGE) -> SimnetNode:
        """A node over its own ``SimnetNetwork`` of ``state_dir`` (closed with the node)."""
        return cls(SimnetNetwork(state_dir), name, owns_network=True)

    async def _enter(self) -> None:
        delay_ms = self.network.check_online(self.name)
        if delay_ms:
            await asyncio.sleep(delay_ms / 1000)

    async def get_info(self) -> NodeInfo:
        await self._enter()
        return self.network.info(self.name)

    async def create_invoice(
        self,
        amount_msat: int | None,
        *,
        memo: str | None = None,
        description_hash: bytes | None = None,
        expiry_s: int = 3600,
    ) -> Invoice:
        await self._enter()
        return self.network.create_invoice(
            self.name,
            amount_msat,
            memo=memo,
            description_hash=description_hash,
            expiry_s=expiry_s,
        )

    async def create_hold_invoice(
        self,
        payment_hash: bytes,
        amount_msat: int,
        *,
        memo: str | None = None,
        expiry_s: int,
        cltv_expiry: int = HOLD_INVOICE_CLTV,
    ) -> Invoice:
        await self._enter()
        return self.network.create_hold_invoice(
            self.name,
            payment_hash,
            amount_msat,
            memo=memo,
            expiry_s=expiry_s,
            cltv_expiry=cltv_expiry,
        )

    async def settle_invoice(self, preimage: bytes) -> None:
        await self._enter()
        self.network.settle_invoice(self.name, preimage)

    async def lookup_invoice(self, payment_hash: bytes) -> Invoice:
        await self._enter()
        return self.network.lookup_invoice(self.name, payment_hash)

    async def cancel_invoice(self, payment_hash: bytes) -> None:
        await self._enter()
        self.network.cancel_invoice(self.name, payment_hash)

    async def subscribe_invoices(self, after_settle_index: int = 0) -> AsyncIterator[Invoice]:
        """Replay settled invoices after ``after_settle_index``, then follow the update log:
        polled every ``POLL_INTERVAL_S`` (other processes) and woken at once by this
        process's own writes."""
        await self._enter()
        seq = self.network.last_invoice_update()  # updates after this are live ones
        last_settle_index = after_settle_index
        while True:  # replay, page by page; bounded by the settled invoices that exist
            page = self.network.settled_invoices_after(self.name, last_settle_index, REPLAY_PAGE)
            for invoice in page:
                last_settle_index = invoice.settle_index
                yield invoice
            if len(page) < REPLAY_PAGE:
                break
        while True:  # live: a subscription never ends on its own
            self.network.tick()
            updates = self.network.invoice_updates_after(self.name, seq, REPLAY_PAGE)
            for event_seq, invoice in updates:
                seq = event_seq
                if invoice.state is InvoiceState.SETTLED:
                    if invoice.settle_index <= last_settle_index:
                        continue  # already replayed
                    last_settle_index = invoice.settle_index
                yield invoice
            if not updates:
                await self.network.wait_for_change(POLL_INTERVAL_S)
                self.network.check_online(self.name)

    async def subscribe_invoice(self, payment_hash: bytes) -> AsyncIterator[Invoice]:
        """Yields the invoice whenever it differs from the last one yielded, until it is final.

        A server follows hundreds of open orders at once, and one invoice a second may be
        made: each subscription must cost next to nothing while its invoice does not change.
        So it reads its invoice, then sleeps until this node's ``_InvoicePoller`` (one per event
        loop) sees its (state, amount paid) move, or ``SUBSCRIPTION_REREAD_S`` passes (an
        expiry is a change nobody writes until a read ticks it)."""
        await self._enter()
        follower = _Follower(payment_hash)
        poller = self._poller()
        poller.add(follower)
        try:
            last: Invoice | None = None
            while True:  # ends at a final state; a lookup raises once the node goes offline
                invoice = self.network.lookup_invoice(self.name, payment_hash)
                follower.seen = (invoice.state.value, invoice.amount_paid_msat)
                follower.moved.clear()
                if invoice != last:
                    last = invoice
                    yield invoice
                if invoice.state in (InvoiceState.SETTLED, InvoiceState.CANCELED):
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(follower.moved.wait(), SUBSCRIPTION_REREAD_S)
        finally:
            poller.discard(follower)

    def _poller(self) -> _InvoicePoller:
        loop = asyncio.get_running_loop()
        poller = self._pollers.get(loop)
        if poller is None:
            poller = self._pollers[loop] = _InvoicePoller(
                self.network, on_idle=lambda: self._pollers.pop(loop, None)
            )
        return poller

    async def decode(self, bolt11: str) -> DecodedInvoice:
        await self._enter()
        return decode_bolt11(bolt11)

    async def pay(
        self,
        bolt11: str,
        *,
        amount_msat: int | None = None,
        fee_limit_msat: int,
        timeout_s: int = 60,
    ) -> Payment:
        await self._enter()
        payment = self.network.pay(
            self.name, bolt11, amount_msat=amount_msat, fee_limit_msat=fee_limit_msat
        )
        deadline = asyncio.get_running_loop().time() + min(max(timeout_s, 0), MAX_TIMEOUT_S)
        while payment.status is PaymentStatus.IN_FLIGHT:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                break
            await self.network.wait_for_change(min(POLL_INTERVAL_S, remaining))
            payment = self.network.track_payment(self.name, payment.payment_hash)
        return payment

    async def track_payment(self, payment_hash: bytes) -> Payment:
        await self._enter()
        return self.network.track_payment(self.name, payment_hash)

    async def balances(self) -> Balances:
        await self._enter()
        return self.network.balances(self.name)

    async def new_address(self) -> str:
        await self._enter()
        return self.network.new_address(self.name)

    async def send_onchain(self, address: str, amount_sat: int, sat_per_vbyte: int) -> str:
        await self._enter()
        return self.network.send_onchain(self.name, address, amount_sat, sat_per_vbyte)

    async def list_onchain_transactions(self) -> list[OnchainTx]:
        await self._enter()
        return self.network.list_onchain_transactions(self.name)

    async def open_channel(
        self, peer: str, amount_sat: int, *, push_sat: int = 0, close_address: str | None = None
    ) -> str:
        await self._enter()
        return self.network.open_channel(
            self.name, peer, amount_sat, push_sat=push_sat, close_address=close_address
        )

    async def list_channels(self) -> list[Channel]:
        await self._enter()
        return self.network.list_channels(self.name)

    async def list_closed_channels(self) -> list[ClosedChannel]:
        await self._enter()
        return self.network.list_closed_channels(self.name)

    async def close(self) -> None:
        if self._owns_network:
            self.network.close()


@dataclass(eq=False)
class _Follower:
    """One ``subscribe_invoice``: the (state, amount paid) it last read, and its wake-up."""

    payment_hash: bytes
    seen: tuple[str, int] | None = None
    moved: asyncio.Event = field(default_factory=asyncio.Event)


class _InvoicePoller:
    """Every ``SUBSCRIPTION_POLL_S``, if anything was committed to the network since its last
    look (``change_marker``), reads the (state, amount paid) of every followed invoice in one
    query and wakes the subscriptions whose invoice moved: a few hundred idle subscriptions
    cost one task, not a few hundred polling ones. It runs while it has followers."""

    def __init__(self, network: SimnetNetwork, *, on_idle: Callable[[], object]) -> None:
        self._network = network
        self._on_idle = on_idle
        self._followers: set[_Follower] = set()
        self._marker: tuple[int, int] | None = None
        self._task: asyncio.Task[None] | None = None

    def add(self, follower: _Follower) -> None:
        self._followers.add(follower)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def discard(self, follower: _Follower) -> None:
        self._followers.discard(follower)

    async def _run(self) -> None:
        try:
            while self._followers:
                await asyncio.sleep(SUBSCRIPTION_POLL_S)
                marker = self._network.change_marker()
                if marker == self._marker or not self._followers:
                    continue
                followers = list(self._followers)
                try:
                    hashes = list({f.payment_hash for f in followers})
                    states = self._network.invoice_states(hashes)
                except sqlite3.Error:  # a busy store: the next look tries again
                    log.warning("simnet invoice poll failed", exc_info=True)
                    continue
                self._marker = marker
                for follower in followers:
                    if states.get(follower.payment_hash) != follower.seen:
                        follower.moved.set()
        finally:  # no followers left, or the loop is shutting down
            self._task = None
            self._on_idle()
