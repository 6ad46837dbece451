"""The payment worker: drives approved -> sending -> succeeded | failed.

It keeps the loop, the scheduling and the node's payments; every write and read is a step of
the ``Payouts`` use case (``lngate.services.payouts``), which opens its own transactions.

- ``sending`` is committed before the node is called, so a crash after the call is found again.
- After any doubt (a crash, a timeout, an unknown answer) it asks the node (``track_payment``)
  and acts only on what the node says: SUCCEEDED posts the hold; FAILED (terminal, nothing in
  flight) voids it; IN_FLIGHT waits; UNKNOWN (the node never saw it) sends again, which is safe
  because a node never pays one payment hash twice, or fails it once the invoice has expired
  and so can never be paid.
- Several workers may run (PostgreSQL): claims are conditional updates, so one withdrawal is
  claimed once, and finishing is exactly-once too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from prometheus_client import Histogram

from lngate.crashpoints import crash_point
from lngate.domain.errors import NodeError
from lngate.lightning import errors as node_errors
from lngate.lightning.bolt11 import decode_bolt11
from lngate.lightning.node import Node, Payment, PaymentStatus
from lngate.services.payouts import (
    SIGNER_AWAY_NOTE,
    SIGNER_CHECK_MAX_AGE_S,
    TRACK_BATCH,
    Payouts,
    Withdrawal,
)
from lngate.services.ports import Wakeup

# The signer note and its pace live in the use case; named here too, for who watches the worker.
__all__ = ["SIGNER_AWAY_NOTE", "SIGNER_CHECK_MAX_AGE_S", "PaymentWorker"]

log = logging.getLogger(__name__)

MAX_SEND_ATTEMPTS = 10
MIN_ROUND_S = 0.01
# A payment unknown to the node is sent again only this long after the latest attempt began
# (sending twice is safe, as nodes pay a hash once, but pointless while one is on its way).
RESEND_AFTER_S = 3.0
PAY_WAIT_S = 5.0
# Refusals that happen before any HTLC leaves: the payment was never made.
REFUSED_BEFORE_SENDING = (
    node_errors.NoRoute,
    node_errors.InsufficientBalance,
    node_errors.InvoiceExpired,
    node_errors.InvalidNodeRequest,
    node_errors.PermissionDenied,
)


class PaymentWorker:
    """Pays with ``node`` (the spending credential, the same ``payouts`` was built over) what
    ``payouts`` lets it claim. ``wakeup``: fired by this process when there is new work.
    ``latency``: the histogram of request-to-finish times, by final status."""

    def __init__(
        self,
        payouts: Payouts,
        node: Node,
        wakeup: Wakeup,
        *,
        latency: Histogram | None = None,
        poll_s: float = 0.5,
        concurrency: int = 16,
        track_every_s: float = 1.0,
    ) -> None:
        if not 1 <= concurrency <= 256:
            raise ValueError("concurrency must be between 1 and 256")
        self._payouts = payouts
        self._node = node
        self._wakeup = wakeup
        self._latency = latency
        self._poll_s = poll_s
        self._slots = asyncio.Semaphore(concurrency)
        self._busy: set[str] = set()  # withdrawals this worker is handling right now
        self._track_every_s = track_every_s
        self._tracked_at: dict[str, float] = {}  # in-flight payments: ask the node at this pace

    async def run(self, stop: asyncio.Event) -> None:
        tasks: set[asyncio.Task[None]] = set()

        def spawn(work: Coroutine[Any, Any, None]) -> None:
            task = asyncio.create_task(work)
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        try:
            while not stop.is_set():
                queues, in_flight = await self._work()
                for w in in_flight:
                    spawn(self._handle(w, self._resolve))
                for queue in queues:
                    spawn(self._claim_in_order(queue, spawn))
                # New withdrawals in this process wake it at once; in flight ones are asked
                # about every poll, and work queued by other processes is found the same way.
                await self._wakeup.wait(self._poll_s)
                await asyncio.sleep(MIN_ROUND_S)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def run_until_idle(self, timeout_s: float = 30) -> None:
        """Tests and benchmarks: work until nothing is approved or sending (or the timeout)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            queues, in_flight = await self._work()
            if not queues and not in_flight and not self._busy:
                return
            payments: list[Coroutine[Any, Any, None]] = []
            await asyncio.gather(
                *(self._handle(w, self._resolve) for w in in_flight),
                *(self._claim_in_order(queue, payments.append) for queue in queues),
            )
            await asyncio.gather(*payments)
            await asyncio.sleep(0.01)

    async def _work(self) -> tuple[list[list[Withdrawal]], list[Withdrawal]]:
        """What to do this round: per user, the approved withdrawals they may put in flight now,
        in their order (fair: however long one user's queue, everyone's head is here); and the
        payments in flight that are due to be asked about."""
        work = await self._payouts.next_round()
        queues: dict[str, list[Withdrawal]] = {}
        for w in work.claimable:
            queues.setdefault(w.user_id, []).append(w)
        now = time.monotonic()
        due = []
        for w in work.in_flight:
            if w.id in self._busy or now - self._tracked_at.get(w.id, 0.0) < self._track_every_s:
                continue
            self._tracked_at[w.id] = now
            due.append(w)
        if len(self._tracked_at) > 4 * TRACK_BATCH:  # forget the finished ones
            flying = {w.id for w in work.in_flight}
            self._tracked_at = {k: v for k, v in self._tracked_at.items() if k in flying}
        return list(queues.values()), due

    async def _handle(
        self, w: Withdrawal, step: Callable[[Withdrawal], Coroutine[Any, Any, None]]
    ) -> None:
        """Run one step for ``w``, unless this worker is already on it."""
        if w.id in self._busy:
            return
        self._busy.add(w.id)
        await self._guarded(w, step)

    async def _guarded(
        self, w: Withdrawal, step: Callable[[Withdrawal], Coroutine[Any, Any, None]]
    ) -> None:
        """Run ``step`` for ``w`` (already marked busy) in a slot, then mark it free. A step that
        fails decides nothing: the withdrawal keeps its status and hold for the next round."""
        try:
            async with self._slots:
                await step(w)
        except NodeError as exc:
            log.warning("withdrawal %s: node error %s; will ask again", w.id, exc)
        except Exception:
            # A bug or a database outage: logged loudly; the next round picks it up again.
            log.exception("withdrawal %s: unexpected error; will try again", w.id)
        finally:
            self._busy.discard(w.id)

    async def _claim_in_order(
        self, queue: list[Withdrawal], spawn: Callable[[Coroutine[Any, Any, None]], object]
    ) -> None:
        """Claim one user's withdrawals oldest first, stopping at the first that must wait: a
        user's later withdrawal never overtakes an earlier one. Each claimed one is then sent
        on its own (still marked busy, so no tracking round races its first attempt), and the
        next claim does not wait for the payment."""
        for w in queue:
            if w.id in self._busy:
                return
            self._busy.add(w.id)
            claimed = None
            try:
                crash_point("before_claim")
                claimed = await self._payouts.claim(w)
            except NodeError as exc:
                log.warning("withdrawal %s: node error %s; will try again", w.id, exc)
            except Exception:
                log.exception("withdrawal %s: unexpected error claiming it", w.id)
            if claimed is None:
                self._busy.discard(w.id)
                return
            spawn(self._guarded(claimed, self._start))

    async def _start(self, w: Withdrawal) -> None:
        """The first attempt of a claimed withdrawal (``sending`` is committed)."""
        crash_point("after_sending_recorded")
        if w.internal:
            await self._payouts.settle_internally(w)
        else:
            await self._pay(w)

    async def _pay(self, w: Withdrawal) -> None:
        amountless = decode_bolt11(w.bolt11).amount_msat is None
        try:
            # Our wait is bounded, not the payment: a held payment keeps going on the node and
            # is tracked on later rounds, so held invoices cannot tie up this worker's slots.
            payment = await asyncio.wait_for(
                self._node.pay(
                    w.bolt11,
                    amount_msat=w.amount_msat if amountless else None,
                    fee_limit_msat=w.fee_reserve_msat,  # never more than the reserve held
                    timeout_s=self._payouts.policy.payment_timeout_s,
                ),
                PAY_WAIT_S,
            )
        except TimeoutError:
            log.info("withdrawal %s: still in flight after %.0fs; tracking it", w.id, PAY_WAIT_S)
            return
        except REFUSED_BEFORE_SENDING as exc:
            log.info("withdrawal %s refused by the node: %s", w.id, exc)
            crash_point("after_node_answered")
            await self._resolve(w, refused=exc.message)
            return
        except node_errors.AlreadyPaid:
            await self._resolve(w)
            return
        crash_point("after_node_answered")
        await self._apply(w, payment)

    def _observe(self, w: Withdrawal, status: str) -> None:
        if self._latency is not None:
            latency_s = max(0.0, time.time() - w.created_at_ms / 1000)
            self._latency.labels(status).observe(latency_s)

    async def _resolve(self, w: Withdrawal, refused: str | None = None) -> None:
        """Ask the node what became of the payment, and act on that only."""
        if w.internal:
            await self._payouts.settle_internally(w)
            return
        payment = await self._node.track_payment(bytes.fromhex(w.payment_hash))
        if payment.status is not PaymentStatus.UNKNOWN:
            await self._apply(w, payment)
            return
        expired = self._payouts.invoice_expired(w)
        recent = self._payouts.attempted_within(w, RESEND_AFTER_S)
        if refused is None and not expired and recent:
            return  # the latest attempt may not have reached the node yet: ask again later
        if refused is not None or expired:
            # The node has no record of it and refused it (or can never pay it now): the
            # payment was never made, so releasing the hold is safe.
            reason = refused or "the invoice expired before it could be paid"
            await self._payouts.fail_unsent(w, reason)
        elif w.attempts < MAX_SEND_ATTEMPTS:
            # Only the worker that wins this attempt number sends; the loser's view is stale.
            again = await self._payouts.next_attempt(w)
            if again is not None:
                await self._pay(again)
        else:
            log.error("withdrawal %s: unknown to the node after %d attempts", w.id, w.attempts)

    async def _apply(self, w: Withdrawal, payment: Payment) -> None:
        """Act on the node's answer: final ones finish the withdrawal, UNKNOWN asks again (and
        may resend); IN_FLIGHT: the hold stays, and the next round asks again."""
        if payment.status is PaymentStatus.UNKNOWN:
            await self._resolve(w)
            return
        finished = await self._payouts.record_outcome(w, payment)
        if finished is not None:
            self._observe(w, finished.value)
