"""The invoice watcher: follows the node's invoice stream and credits settled deposits.

It resumes from the last settle index it committed (stored with each credit, in the same
transaction), so a restart misses nothing; an expiry poll asks the node about every open deposit
past its expiry, which both closes expired deposits and catches any settlement the stream missed.
The use cases, each opening its own transaction, are in ``lngate.services.deposits``; this
module is the loop around them.
"""

from __future__ import annotations

import asyncio
import logging
import time

from lngate.bootstrap import Core
from lngate.domain.errors import NodeError
from lngate.lightning.node import Invoice, InvoiceState, Node
from lngate.services.deposits import close_cancelled, credit_settled, expire_due, settle_cursor

log = logging.getLogger(__name__)

BACKOFF_MAX_S = 30.0
SWEEP_BATCH = 200


class InvoiceWatcher:
    def __init__(
        self, core: Core, node: Node, *, sweep_interval_s: float = 5.0, expiry_grace_s: float = 10.0
    ) -> None:
        self._core = core
        self._node = node
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
            if await credit_settled(self._core, invoice, from_stream=True):
                self.credited += 1
        elif invoice.state is InvoiceState.CANCELED:
            await close_cancelled(self._core, invoice)

    async def _follow(self, stop: asyncio.Event) -> None:
        delay_s = 0.5
        while not stop.is_set():
            after = await settle_cursor(self._core)
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
        cutoff_ms = int(time.time() * 1000) - self._expiry_grace_ms
        return await expire_due(self._core, self._node, cutoff_ms, SWEEP_BATCH)
