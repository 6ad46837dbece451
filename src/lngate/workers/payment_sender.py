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
from dataclasses import replace

from lngate.bootstrap import Core
from lngate.domain.errors import NodeError
from lngate.domain.withdrawals import WithdrawalPolicy, WithdrawalStatus
from lngate.lightning import errors as node_errors
from lngate.lightning.bolt11 import decode_bolt11
from lngate.lightning.node import Node, Payment, PaymentStatus
from lngate.services import halt
from lngate.services.withdrawal_settlement import fail_op, succeed_op
from lngate.services.withdrawals import WithdrawalService
from lngate.store import withdrawals as store
from lngate.store.db import Tx
from lngate.store.withdrawals import Withdrawal
from lngate.workers.crashpoints import crash_point

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
        assert 1 <= concurrency <= 256
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
        self._claim_lock = asyncio.Lock()

    async def run(self, stop: asyncio.Event) -> None:
        tasks: set[asyncio.Task[None]] = set()
        try:
            while not stop.is_set():
                for w in await self._work():
                    task = asyncio.create_task(self._handle(w))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
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
            work = await self._work()
            if not work and not self._busy:
                return
            await asyncio.gather(*(self._handle(w) for w in work))
            await asyncio.sleep(0.01)

    async def _work(self) -> list[Withdrawal]:
        def pick(tx: Tx) -> list[Withdrawal]:
            out = store.with_status(tx, WithdrawalStatus.APPROVED, CLAIM_BATCH)
            out += store.with_status(tx, WithdrawalStatus.SENDING, TRACK_BATCH)
            out += [
                w
                for w in store.with_status(tx, WithdrawalStatus.REQUESTED, CLAIM_BATCH)
                if w.internal and time.time() * 1000 - w.created_at_ms > 5_000
            ]
            return out

        now = time.monotonic()
        due = []
        for w in await self._core.read(pick):
            if w.id in self._busy:
                continue
            if w.status is WithdrawalStatus.SENDING:
                if now - self._tracked_at.get(w.id, 0.0) < self._track_every_s:
                    continue
                self._tracked_at[w.id] = now
            due.append(w)
        if len(self._tracked_at) > 4 * TRACK_BATCH:  # forget the finished ones
            sending = {w.id for w in due if w.status is WithdrawalStatus.SENDING}
            self._tracked_at = {k: v for k, v in self._tracked_at.items() if k in sending}
        return due

    async def _handle(self, w: Withdrawal) -> None:
        if w.id in self._busy:
            return
        self._busy.add(w.id)
        try:
            async with self._slots:
                if w.status is WithdrawalStatus.APPROVED:
                    await self._send(w)
                elif w.status is WithdrawalStatus.SENDING:
                    await self._resolve(w)
                elif w.status is WithdrawalStatus.REQUESTED and w.internal:
                    await self._internal.settle_internally(w)  # a crash interrupted it
        except NodeError as exc:
            log.warning("withdrawal %s: node error %s; will ask again", w.id, exc)
        except Exception:
            # Nothing was decided: the withdrawal keeps its status and hold, and is picked up
            # again next round. Logged loudly, because it is a bug or a database outage.
            log.exception("withdrawal %s: unexpected error; will try again", w.id)
        finally:
            self._busy.discard(w.id)

    async def _send(self, w: Withdrawal) -> None:
        # Claims go one at a time, oldest first (tasks reach this lock in queue order and it
        # wakes waiters in turn): a user's later withdrawal never overtakes an earlier one.
        async with self._claim_lock:
            if not await self._try_claim(w):
                return
        crash_point("after_sending_recorded")
        sending = await self._core.read(lambda tx: store.by_id(tx, w.id))
        assert sending is not None
        await self._pay(sending)

    async def _try_claim(self, w: Withdrawal) -> bool:
        crash_point("before_claim")
        state = await self._core.read(halt.halted)
        if state is not None:
            await self._note(w, f"waiting: withdrawals are halted ({state.get('reason')})")
            return False
        if w.amount_msat + w.fee_reserve_msat > await self._outbound_msat():
            await self._note(w, "waiting: not enough outbound liquidity on the node")
            return False
        totals = await self._core.read(lambda tx: store.sending_totals(tx, w.user_id))
        if self._over_cap(w, *totals):
            await self._note(w, "waiting: too many of your payments are in flight")
            return False
        if not await self._core.write(lambda tx: self._claim(tx, w)):
            return False
        self._outbound = None  # it just changed
        return True

    async def _outbound_msat(self) -> int:
        """What the node can send now (cached briefly: one balance call per second at most)."""
        now = time.monotonic()
        if self._outbound is None or now - self._outbound[0] > 1.0:
            balances = await self._node.balances()
            self._outbound = (now, balances.channel_local_msat)
        return self._outbound[1]

    def _over_cap(self, w: Withdrawal, count: int, total_msat: int) -> bool:
        policy = self._policy
        return count >= policy.user_sending_max_count or (
            total_msat + w.amount_msat > policy.user_sending_max_msat
        )

    async def _note(self, w: Withdrawal, note: str) -> None:
        """Tell the user why it waits; written once, not on every round."""
        if w.note != note:
            await self._core.write(lambda tx: store.set_note(tx, w.id, note))

    def _claim(self, tx: Tx, w: Withdrawal) -> bool:
        """approved -> sending, unless halted meanwhile, or the user already has too much in
        flight (hold-invoice griefing: held HTLCs would lock up the node's liquidity)."""
        if halt.halted(tx) is not None:
            return False
        store.take_lock(tx, "withdrawal_limits")
        if self._over_cap(w, *store.sending_totals(tx, w.user_id)):
            return False  # checked again here: another worker may have claimed meanwhile
        return store.move(tx, w.id, WithdrawalStatus.APPROVED, WithdrawalStatus.SENDING, note="")

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
            assert payment.preimage is not None
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
