"""The order watcher: follows each open order's hold invoice on the node and hands every state
to the orders use case, which credits a held payment (then settles it) or fails it back.

Each open order gets a subscription of its own (``Node.subscribe_invoice``: LND only reports
a held HTLC per invoice), up to ``max_followed`` at once, oldest first; the rest wait for a slot
(a held HTLC waits with them, far inside its CLTV). A sweep finishes what the node still owes
(``to_settle``, ``to_cancel``: after a crash, or a node that was away) and closes expired orders,
asking the node first. New orders are found by polling, at once when this process commits.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging

from lngate.domain.errors import NodeError
from lngate.domain.orders import OrderStatus
from lngate.lightning import errors as node_errors
from lngate.lightning.node import InvoiceState, Node
from lngate.services.orders import Order, Orders
from lngate.services.ports import Wakeup

log = logging.getLogger(__name__)

BACKOFF_MAX_S = 30.0
DISCOVER_MIN_GAP_S = 0.05
SWEEP_BATCH = 200
FINAL = (InvoiceState.SETTLED, InvoiceState.CANCELED)


class OrderWatcher:
    def __init__(
        self,
        orders: Orders,
        node: Node,
        wakeup: Wakeup,
        *,
        max_followed: int = 256,
        discover_interval_s: float = 1.0,
        sweep_interval_s: float = 2.0,
    ) -> None:
        self._orders = orders
        self._node = node
        self._wakeup = wakeup
        self._max_followed = max_followed
        self._discover_interval_s = discover_interval_s
        self._sweep_interval_s = sweep_interval_s
        self._followed: dict[str, asyncio.Task[None]] = {}
        self._after_seq = 0

    async def run(self, stop: asyncio.Event) -> None:
        tasks = [asyncio.create_task(self._discover(stop)), asyncio.create_task(self._sweep(stop))]
        try:
            await stop.wait()
        finally:
            for task in [*tasks, *self._followed.values()]:
                task.cancel()
            await asyncio.gather(*tasks, *self._followed.values(), return_exceptions=True)

    async def discover_once(self) -> int:
        """Start following the open orders created since the last look (as slots allow)."""
        free = self._max_followed - len(self._followed)
        if free <= 0:
            return 0
        found = await self._orders.open_after(self._after_seq, free)
        for order in found:
            self._after_seq = max(self._after_seq, order.seq)
            if order.id not in self._followed:
                task = asyncio.create_task(self._follow(order))
                self._followed[order.id] = task
                task.add_done_callback(functools.partial(self._unfollow, order.id))
        return len(found)

    def _unfollow(self, order_id: str, _task: asyncio.Task[None]) -> None:
        self._followed.pop(order_id, None)

    async def sweep_once(self) -> int:
        finished = await self._orders.finish_htlc_work(SWEEP_BATCH)
        return finished + await self._orders.expire_due(SWEEP_BATCH)

    async def _discover(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.discover_once()
            except Exception:  # a database outage: keep watching
                log.exception("order discovery failed")
            await self._wakeup.wait(self._discover_interval_s)
            await asyncio.sleep(
                DISCOVER_MIN_GAP_S
            )  # every commit wakes it: look at most this often

    async def _sweep(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.sweep_once()
            except NodeError as exc:
                log.warning("order sweep could not reach the node: %s", exc)
            except Exception:
                log.exception("order sweep failed")
            await asyncio.sleep(self._sweep_interval_s)

    async def _follow(self, order: Order) -> None:
        """One order's invoice until it is final (or the order is closed and its invoice too)."""
        delay_s = 0.5
        payment_hash = bytes.fromhex(order.payment_hash)
        while True:
            try:
                async for invoice in self._node.subscribe_invoice(payment_hash):
                    await self._orders.on_invoice(invoice)
                    delay_s = 0.5
                    if invoice.state in FINAL:
                        return
                return
            except node_errors.InvoiceNotFound:
                log.error("order %s: its invoice is unknown to the node", order.id)
                return
            except NodeError as exc:
                log.warning("order %s: invoice stream broke (%s)", order.id, exc)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("order %s: handling its invoice failed", order.id)
            with contextlib.suppress(Exception):
                if await self._closed(order):
                    return
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, BACKOFF_MAX_S)

    async def _closed(self, order: Order) -> bool:
        """Whether following can stop: the order is no longer open (the sweep finishes it)."""
        current = await self._orders.open_after(order.seq - 1, 1)
        return not current or current[0].id != order.id or current[0].status is not OrderStatus.OPEN
