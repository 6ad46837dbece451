"""The payment worker: drives approved -> sending -> succeeded | failed.

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
from dataclasses import replace
from typing import Any

from lngate.bootstrap import Core
from lngate.crashpoints import crash_point
from lngate.domain.errors import NodeError
from lngate.domain.withdrawals import WithdrawalPolicy, WithdrawalStatus
from lngate.lightning import errors as node_errors
from lngate.lightning.bolt11 import decode_bolt11
from lngate.lightning.node import Node, Payment, PaymentStatus
from lngate.services import halt
from lngate.services.withdrawal_settlement import fail_op, succeed_op
from lngate.services.withdrawals import (
    IN_FLIGHT_CAP_NOTE,
    WithdrawalService,
    claim_op,
    over_in_flight_cap,
)
from lngate.store import withdrawals as store
from lngate.store.db import Tx
from lngate.store.withdrawals import Withdrawal

log = logging.getLogger(__name__)

CLAIM_BATCH = 50
TRACK_BATCH = 500
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
    def __init__(
        self,
        core: Core,
        node: Node,
        *,
        poll_s: float = 0.5,
        concurrency: int = 16,
        track_every_s: float = 1.0,
    ) -> None:
        if not 1 <= concurrency <= 256:
            raise ValueError("concurrency must be between 1 and 256")
        self._core = core
        self._node = node
        self._policy: WithdrawalPolicy = core.config.withdrawals
        self._poll_s = poll_s
        self._slots = asyncio.Semaphore(concurrency)
        self._busy: set[str] = set()  # withdrawals this worker is handling right now
        self._track_every_s = track_every_s
        self._tracked_at: dict[str, float] = {}  # in-flight payments: ask the node at this pace
        self._internal = WithdrawalService(core, node)
        self._outbound: tuple[float, int] | None = None

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
                await self._core.withdrawal_work.wait(self._poll_s)
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

        def pick(tx: Tx) -> tuple[list[Withdrawal], list[Withdrawal]]:
            per_user = self._policy.user_sending_max_count
            claimable = store.claimable(tx, per_user_max=per_user, limit=CLAIM_BATCH)
            return claimable, store.with_status(tx, WithdrawalStatus.SENDING, TRACK_BATCH)

        claimable, sending = await self._core.read(pick)
        queues: dict[str, list[Withdrawal]] = {}
        for w in claimable:
            queues.setdefault(w.user_id, []).append(w)
        now = time.monotonic()
        due = []
        for w in sending:
            if w.id in self._busy or now - self._tracked_at.get(w.id, 0.0) < self._track_every_s:
                continue
            self._tracked_at[w.id] = now
            due.append(w)
        if len(self._tracked_at) > 4 * TRACK_BATCH:  # forget the finished ones
            flying = {w.id for w in sending}
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
                claimed = await self._try_claim(w)
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
            await self._internal.settle_internally(w)
        else:
            await self._pay(w)

    async def _try_claim(self, w: Withdrawal) -> Withdrawal | None:
        crash_point("before_claim")
        state = await self._core.read(halt.halted)
        if state is not None:
            await self._note(w, f"waiting: withdrawals are halted ({state.get('reason')})")
            return None
        if not w.internal:
            if w.amount_msat + w.fee_reserve_msat > await self._outbound_msat():
                await self._note(w, "waiting: not enough outbound liquidity on the node")
                return None
            totals = await self._core.read(lambda tx: store.sending_totals(tx, w.user_id))
            if over_in_flight_cap(self._policy, w, *totals):
                await self._note(w, IN_FLIGHT_CAP_NOTE)
                return None
        claimed = await self._core.write(claim_op(w.id, self._policy))
        if claimed is not None and not w.internal:
            self._outbound = None  # it just changed
        return claimed

    async def _outbound_msat(self) -> int:
        """What the node can send now (cached briefly: one balance call per second at most)."""
        now = time.monotonic()
        if self._outbound is None or now - self._outbound[0] > 1.0:
            balances = await self._node.balances()
            self._outbound = (now, balances.channel_local_msat)
        return self._outbound[1]

    async def _note(self, w: Withdrawal, note: str) -> None:
        """Tell the user why it waits; written once, not on every round."""
        if w.note != note:
            await self._core.write(lambda tx: store.set_note(tx, w.id, note))

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
                    timeout_s=self._policy.payment_timeout_s,
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
        latency_s = max(0.0, time.time() - w.created_at_ms / 1000)
        self._core.metrics.withdrawal_latency.labels(status).observe(latency_s)

    async def _resolve(self, w: Withdrawal, refused: str | None = None) -> None:
        """Ask the node what became of the payment, and act on that only."""
        if w.internal:
            await self._internal.settle_internally(w)
            return
        payment = await self._node.track_payment(bytes.fromhex(w.payment_hash))
        if payment.status is not PaymentStatus.UNKNOWN:
            await self._apply(w, payment)
            return
        expired = decode_bolt11(w.bolt11).expires_at < time.time()
        recent = time.time() * 1000 - w.updated_at_ms < RESEND_AFTER_S * 1000
        if refused is None and not expired and recent:
            return  # the latest attempt may not have reached the node yet: ask again later
        if refused is not None or expired:
            # The node has no record of it and refused it (or can never pay it now): the
            # payment was never made, so releasing the hold is safe.
            reason = refused or "the invoice expired before it could be paid"
            await self._core.write(fail_op(w, reason))
        elif w.attempts < MAX_SEND_ATTEMPTS:
            # Only the worker that wins this attempt number sends; the loser's view is stale.
            if await self._core.write(lambda tx: store.next_attempt(tx, w.id, w.attempts)):
                await self._pay(replace(w, attempts=w.attempts + 1))
        else:
            log.error("withdrawal %s: unknown to the node after %d attempts", w.id, w.attempts)

    async def _apply(self, w: Withdrawal, payment: Payment) -> None:
        if payment.status is PaymentStatus.SUCCEEDED:
            if payment.preimage is None:
                raise node_errors.InvalidNodeRequest("the node reported success without a preimage")
            op = succeed_op(w, payment.fee_msat, payment.preimage, self._core.system_accounts)
            if await self._core.write(op):
                self._observe(w, "succeeded")
        elif payment.status is PaymentStatus.FAILED:
            reason = payment.failure_reason.value if payment.failure_reason else "failed"
            if await self._core.write(fail_op(w, f"payment failed: {reason}")):
                self._observe(w, "failed")
        elif payment.status is PaymentStatus.UNKNOWN:
            await self._resolve(w)
        # IN_FLIGHT: the hold stays; the next round asks again.
