"""The invoice watcher: follows the node's invoice stream and credits settled deposits.

It resumes from the last settle index it committed (stored with each credit, in the same
transaction), so a restart misses nothing; an expiry poll asks the node about every open deposit
past its expiry, which both closes expired deposits and catches any settlement the stream missed.
The use cases, each opening its own transaction, are ``lngate.services.deposits.Deposits``;
this module is the loop around them.
"""

from __future__ import annotations

import asyncio
import logging

from lngate.domain.errors import NodeError
from lngate.lightning.node import Invoice, InvoiceState, Node
from lngate.services.clock import SYSTEM_CLOCK
from lngate.services.deposits import Deposits
from lngate.services.ports import Clock

log = logging.getLogger(__name__)

BACKOFF_MAX_S = 30.0
SWEEP_BATCH = 200


class InvoiceWatcher:
    """Follows ``node``'s invoice stream into ``deposits``; ``deposits`` asks its own node
    (the same one, or another credential of it) about expired ones."""

    def __init__(
        self,
        deposits: Deposits,
        node: Node,
        *,
        clock: Clock = SYSTEM_CLOCK,
        sweep_interval_s: float = 5.0,
        expiry_grace_s: float = 10.0,
    ) -> None:
        self._deposits = deposits
        self._node = node
        self._clock = clock
        self._sweep_interval_s = sweep_interval_s
        self._expiry_grace_ms = int(expiry_grace_s * 1000)
        self.credited = 0

    async def run(self, stop: asyncio.Event) -> None:
        tasks = [asyncio.create_task(self._follow(stop)), asyncio.create_task(self._sweep(stop))]
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def handle(self, invoice: Invoice) -> None:
        """One update from the invoice stream."""
        if invoice.state is InvoiceState.SETTLED:
            if await self._deposits.credit_settled(invoice, from_stream=True):
                self.credited += 1
        elif invoice.state is InvoiceState.CANCELED:
            await self._deposits.close_cancelled(invoice)

    async def _follow(self, stop: asyncio.Event) -> None:
        delay_s = 0.5
        while not stop.is_set():
            after = await self._deposits.settle_cursor()
            try:
                async for invoice in self._node.subscribe_invoices(after):
                    await self.handle(invoice)
                    delay_s = 0.5
            except NodeError as exc:
                log.warning("invoice stream interrupted (%s); resuming in %.1fs", exc, delay_s)
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, BACKOFF_MAX_S)

    async def _sweep(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.sweep_once()
            except NodeError as exc:
                log.warning("expiry sweep could not reach the node: %s", exc)
            await asyncio.sleep(self._sweep_interval_s)

    async def sweep_once(self) -> int:
        """Ask the node about open deposits past expiry; returns how many changed."""
        cutoff_ms = self._clock.now_ms() - self._expiry_grace_ms
        return await self._deposits.expire_due(cutoff_ms, SWEEP_BATCH)
