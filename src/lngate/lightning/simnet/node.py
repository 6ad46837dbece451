"""``SimnetNode``: one simnet node behind the async ``Node`` port."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
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
SUBSCRIPTION_POLL_S = 0.05  # how often a subscription looks at the shared snapshot
SUBSCRIPTION_REREAD_S = 2.0
MAX_TIMEOUT_S = 3600


class SimnetNode:
    """The node ``name`` of a ``SimnetNetwork``. Calls are short SQLite transactions run
    directly on the event loop; faults of the node (offline, slow) apply to every call."""

    def __init__(
        self, network: SimnetNetwork, name: str = EXCHANGE, *, owns_network: bool = False
    ) -> None:
        self.network = network
        self.name = name
        self._owns_network = owns_network
        self._followed: Counter[bytes] = Counter()  # the invoices subscriptions follow
        # (change marker, the hashes read, their (state, amount paid)): see subscribe_invoice
        self._snapshot: (
            tuple[tuple[int, int], frozenset[bytes], dict[bytes, tuple[str, int]]] | None
        ) = None

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
        So every ``SUBSCRIPTION_POLL_S`` it looks at one shared snapshot of the (state, amount
        paid) of every followed invoice, taken again only when something was committed to the
        network (``change_marker``), and reads its own invoice only when that moved, or every
        ``SUBSCRIPTION_REREAD_S`` (an expiry is a change nobody writes until a read ticks it)."""
        await self._enter()
        loop = asyncio.get_running_loop()
        self._followed[payment_hash] += 1
        try:
            last: Invoice | None = None
            last_key: tuple[str, int] | None = None
            read_at = 0.0
            while True:  # ends at a final state; a lookup raises once the node goes offline
                key = self._followed_state(payment_hash)
                if (
                    last is None
                    or key != last_key
                    or loop.time() - read_at >= SUBSCRIPTION_REREAD_S
                ):
                    read_at = loop.time()
                    invoice = self.network.lookup_invoice(self.name, payment_hash)
                    last_key = (invoice.state.value, invoice.amount_paid_msat)
                    if invoice != last:
                        last = invoice
                        yield invoice
                    if invoice.state in (InvoiceState.SETTLED, InvoiceState.CANCELED):
                        return
                await asyncio.sleep(SUBSCRIPTION_POLL_S)
        finally:
            self._followed[payment_hash] -= 1
            if self._followed[payment_hash] <= 0:
                del self._followed[payment_hash]

    def _followed_state(self, payment_hash: bytes) -> tuple[str, int] | None:
        marker = self.network.change_marker()
        snapshot = self._snapshot
        if snapshot is None or snapshot[0] != marker or payment_hash not in snapshot[1]:
            followed = list(self._followed)
            states = self.network.invoice_states(followed)
            self._snapshot = snapshot = (marker, frozenset(followed), states)
        return snapshot[2].get(payment_hash)

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
