"""Payouts: the payment worker's use case, approved -> sending -> succeeded | failed.

Each method is one step of the lifecycle and opens its own transactions through the unit of
work; between the steps the worker calls the node and owns the loop and the crash points.

- ``claim`` commits ``sending`` before the node is asked to pay, so a crash after the call is
  found again; it refuses (and says why in the withdrawal's note) while withdrawals are halted,
  the signer is away, the node lacks outbound liquidity, or the user is at their in-flight cap.
- ``record_outcome`` acts only on a final answer of the node: SUCCEEDED posts the hold, FAILED
  voids it. ``fail_unsent`` is for a payment the node provably never made. Nothing else
  releases a hold: a payment that may still succeed keeps it.
- Several workers may run (PostgreSQL): claims and attempts are conditional updates, so one
  withdrawal is claimed once, sent once per attempt, and finished once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from lngate.domain.errors import NodeBadResponse
from lngate.domain.withdrawals import WithdrawalPolicy, WithdrawalStatus
from lngate.lightning.bolt11 import decode_bolt11
from lngate.lightning.node import Node, Payment, PaymentStatus
from lngate.services import halt
from lngate.services.ports import Clock, UnitOfWork
from lngate.services.withdrawal_settlement import InternalSettlement, fail_op, succeed_op
from lngate.services.withdrawals import IN_FLIGHT_CAP_NOTE, claim_op, over_in_flight_cap
from lngate.store import withdrawals as store
from lngate.store.db import Tx
from lngate.store.withdrawals import Withdrawal

if TYPE_CHECKING:
    from lngate.lightning.lnd.signer import SignerProbe

__all__ = [
    "CLAIM_BATCH",
    "IN_FLIGHT_CAP_NOTE",
    "LIQUIDITY_NOTE",
    "SIGNER_AWAY_NOTE",
    "SIGNER_CHECK_MAX_AGE_S",
    "TRACK_BATCH",
    "PayoutRound",
    "Payouts",
    "Withdrawal",
]

CLAIM_BATCH = 50  # approved withdrawals offered per round
TRACK_BATCH = 500  # withdrawals in flight listed per round
OUTBOUND_MAX_AGE_S = 1.0  # one channel listing per second at most
LIQUIDITY_NOTE = "waiting: not enough outbound liquidity on the node"
# A watch-only node shuts down when it cannot reach its signer to sign, and the payment it was
# starting then stays IN_FLIGHT on it with no HTLC anywhere (lnd #5152): never send then.
SIGNER_AWAY_NOTE = "waiting: the node's remote signer is unreachable"
SIGNER_CHECK_MAX_AGE_S = 0.5  # claims in one round share a check of the signer


@dataclass(frozen=True, slots=True)
class PayoutRound:
    """The work of one round, read in one snapshot: the approved withdrawals that may be claimed
    now (per user only the oldest they may still put in flight, oldest first across users), and
    the withdrawals in flight (oldest first)."""

    claimable: tuple[Withdrawal, ...]
    in_flight: tuple[Withdrawal, ...]


class Payouts:
    """The payment worker's steps over ``node`` (the spending credential): what to do next,
    the claim, the internal settlement, a new attempt and the outcome, each in its own
    transactions. ``signer``: a watch-only node's remote signer, checked before each claim."""

    def __init__(
        self,
        uow: UnitOfWork,
        node: Node,
        policy: WithdrawalPolicy,
        system_accounts: Mapping[str, int],
        clock: Clock,
        *,
        signer: SignerProbe | None = None,
        internal: InternalSettlement | None = None,
    ) -> None:
        self._uow = uow
        self._node = node
        self._policy = policy
        self._system_accounts = system_accounts
        self._clock = clock
        self._signer = signer
        self._internal = internal or InternalSettlement(uow, node, system_accounts)
        self._outbound: tuple[float, int] | None = None  # (when, msat) of the last listing

    @property
    def policy(self) -> WithdrawalPolicy:
        return self._policy

    def invoice_expired(self, w: Withdrawal) -> bool:
        """Whether ``w``'s invoice has expired, so that it can never be paid now."""
        return decode_bolt11(w.bolt11).expires_at * 1000 < self._clock.now_ms()

    def attempted_within(self, w: Withdrawal, seconds: float) -> bool:
        """Whether ``w``'s latest attempt was made less than ``seconds`` ago."""
        return self._clock.now_ms() - w.updated_at_ms < seconds * 1000

    async def next_round(self) -> PayoutRound:
        """What is claimable and what is in flight, in one read transaction."""

        def read(tx: Tx) -> PayoutRound:
            claimable = store.claimable(
                tx, per_user_max=self._policy.user_sending_max_count, limit=CLAIM_BATCH
            )
            in_flight = store.with_status(tx, WithdrawalStatus.SENDING, TRACK_BATCH)
            return PayoutRound(tuple(claimable), tuple(in_flight))

        return await self._uow.read(read)

    async def claim(self, w: Withdrawal) -> Withdrawal | None:
        """approved -> sending, committed before the node is asked to pay: the claimed record
        (its attempt counted), or None if it must wait, with the reason in its note."""
        reason = await self._reason_to_wait(w)
        if reason is not None:
            await self._note(w, reason)
            return None
        claimed = await self._uow.write(claim_op(w.id, self._policy))
        if claimed is not None and not w.internal:
            self._outbound = None  # it just changed
        return claimed

    async def _reason_to_wait(self, w: Withdrawal) -> str | None:
        state = await self._uow.read(halt.halted)
        if state is not None:
            return f"waiting: withdrawals are halted ({state.reason})"
        if w.internal:
            return None  # it never leaves our node
        if not await self._signer_reachable():
            return SIGNER_AWAY_NOTE
        if w.amount_msat + w.fee_reserve_msat > await self._outbound_msat():
            return LIQUIDITY_NOTE
        count, total_msat = await self._uow.read(lambda tx: store.sending_totals(tx, w.user_id))
        if over_in_flight_cap(self._policy, w, count, total_msat):
            return IN_FLIGHT_CAP_NOTE
        return None

    async def _signer_reachable(self) -> bool:
        if self._signer is None:
            return True  # the node holds its own keys
        return (await self._signer.acheck(SIGNER_CHECK_MAX_AGE_S)).reachable

    async def _outbound_msat(self) -> int:
        """What the node can send now: the local balance of its active channels (cached
        briefly). An inactive channel's balance cannot leave: sent while lnd (re)connects its
        channels, as right after it starts, a payment fails at once with insufficient_balance,
        where waiting a moment would have paid it."""
        now = time.monotonic()
        if self._outbound is None or now - self._outbound[0] > OUTBOUND_MAX_AGE_S:
            channels = await self._node.list_channels()
            self._outbound = (now, sum(c.local_balance_msat for c in channels if c.active))
        return self._outbound[1]

    async def _note(self, w: Withdrawal, note: str) -> None:
        """Tell the user why it waits; written once, not on every round."""
        if w.note != note:
            await self._uow.write(_set_note_op(w.id, note))

    async def settle_internally(self, w: Withdrawal) -> None:
        """sending -> succeeded | failed for an invoice of our own node: no Lightning payment."""
        await self._internal.settle(w)

    async def next_attempt(self, w: Withdrawal) -> Withdrawal | None:
        """The right to send ``w`` again (the node has no record of it): the record of the new
        attempt, or None when another worker won this attempt number (our view is stale)."""
        if await self._uow.write(_next_attempt_op(w)):
            return replace(w, attempts=w.attempts + 1)
        return None

    async def record_outcome(self, w: Withdrawal, payment: Payment) -> WithdrawalStatus | None:
        """Finish ``w`` from the node's answer about its payment: SUCCEEDED posts the hold (for
        the routing fee paid, the rest of the reserve released), FAILED voids it. The status
        this call moved it to; None if the answer is not final (the hold stays) or the
        withdrawal was finished already, or sent again since (a newer attempt may succeed)."""
        if payment.status is PaymentStatus.SUCCEEDED:
            if payment.preimage is None:
                raise NodeBadResponse("the node reported success without a preimage")
            op = succeed_op(w, payment.fee_msat, payment.preimage, self._system_accounts)
            return WithdrawalStatus.SUCCEEDED if await self._uow.write(op) else None
        if payment.status is PaymentStatus.FAILED:
            reason = payment.failure_reason.value if payment.failure_reason else "failed"
            finished = await self._uow.write(fail_op(w, f"payment failed: {reason}"))
            return WithdrawalStatus.FAILED if finished else None
        return None

    async def fail_unsent(self, w: Withdrawal, reason: str) -> bool:
        """sending -> failed, holds voided, for a payment the node provably never made: it has
        no record of it, and refused it or can never pay it now. True if this call failed it
        (False: finished already, or sent again since)."""
        return await self._uow.write(fail_op(w, reason))


def _set_note_op(withdrawal_id: str, note: str) -> Callable[[Tx], None]:
    def op(tx: Tx) -> None:
        store.set_note(tx, withdrawal_id, note)

    return op


def _next_attempt_op(w: Withdrawal) -> Callable[[Tx], bool]:
    # Only the worker that wins this attempt number sends: two workers that both found the
    # payment unknown to the node never both send it.
    def op(tx: Tx) -> bool:
        return store.next_attempt(tx, w.id, w.attempts)

    return op
