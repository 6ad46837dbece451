"""The operators' review of withdrawals: the queue, and approving or rejecting one that waits.

Every decision is audited in the transaction that makes it, whoever makes it (the admin API or
the command line), so no entry point writes an audit record itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from lngate.domain.errors import InvalidRequest
from lngate.domain.withdrawals import WithdrawalStatus
from lngate.services.ports import UnitOfWork, Wakeup
from lngate.services.withdrawal_records import WithdrawalView
from lngate.services.withdrawal_settlement import reject_op
from lngate.store import audit, users
from lngate.store import withdrawals as store
from lngate.store.db import Tx

QUEUE_MAX = 500


@dataclass(frozen=True, slots=True)
class ReviewItem:
    """A withdrawal waiting for an operator, with whose it is (the console's queue)."""

    withdrawal: WithdrawalView
    username: str


class WithdrawalReview:
    """What an operator decides about withdrawals: ``review -> approved`` (the payment worker
    then sends it) and ``review | approved -> rejected`` (the holds are released)."""

    def __init__(self, uow: UnitOfWork, wakeup: Wakeup) -> None:
        self._uow = uow
        self._wakeup = wakeup  # the payment worker of this process, told of approved work

    async def queue(
        self, status: WithdrawalStatus = WithdrawalStatus.REVIEW, limit: int = 200
    ) -> list[WithdrawalView]:
        """Withdrawals in ``status`` (by default those waiting for an operator), oldest first."""
        return await self._uow.read(_queue_op(status, limit))

    async def review_items(self, limit: int = 200) -> list[ReviewItem]:
        """The withdrawals waiting for review, oldest first, each with its user's name."""
        return await self._uow.read(_review_items_op(limit))

    def queue_sync(
        self, status: WithdrawalStatus = WithdrawalStatus.REVIEW, limit: int = 200
    ) -> list[WithdrawalView]:
        return self._uow.read_sync(_queue_op(status, limit))

    async def approve(self, withdrawal_id: str, actor: str, reason: str) -> WithdrawalView | None:
        """review -> approved, audited; None if no such withdrawal waits for review."""
        done = await self._uow.write(_approve_op(withdrawal_id, actor, reason))
        if done is not None:
            self._wakeup.fire()
        return done

    def approve_sync(self, withdrawal_id: str, actor: str, reason: str) -> WithdrawalView | None:
        done = self._uow.write_sync(_approve_op(withdrawal_id, actor, reason))
        if done is not None:
            self._wakeup.fire()
        return done

    async def reject(self, withdrawal_id: str, actor: str, reason: str) -> WithdrawalView | None:
        """review | approved -> rejected, holds voided, audited; None if no such withdrawal
        waits (in review, or approved and not yet sent)."""
        return await self._uow.write(_reject_op(withdrawal_id, actor, reason))

    def reject_sync(self, withdrawal_id: str, actor: str, reason: str) -> WithdrawalView | None:
        return self._uow.write_sync(_reject_op(withdrawal_id, actor, reason))


def _queue_op(status: WithdrawalStatus, limit: int) -> Callable[[Tx], list[WithdrawalView]]:
    if not 1 <= limit <= QUEUE_MAX:
        raise InvalidRequest(f"limit must be between 1 and {QUEUE_MAX}")

    def op(tx: Tx) -> list[WithdrawalView]:
        return [WithdrawalView.of(w) for w in store.with_status(tx, status, limit)]

    return op


def _review_items_op(limit: int) -> Callable[[Tx], list[ReviewItem]]:
    if not 1 <= limit <= QUEUE_MAX:
        raise InvalidRequest(f"limit must be between 1 and {QUEUE_MAX}")

    def op(tx: Tx) -> list[ReviewItem]:
        items = []
        for w in store.with_status(tx, WithdrawalStatus.REVIEW, limit):
            user = users.user_by_id(tx, w.user_id)
            items.append(ReviewItem(WithdrawalView.of(w), user.username if user else w.user_id))
        return items

    return op


def _approve_op(
    withdrawal_id: str, actor: str, reason: str
) -> Callable[[Tx], WithdrawalView | None]:
    def op(tx: Tx) -> WithdrawalView | None:
        if not store.move(
            tx,
            withdrawal_id,
            WithdrawalStatus.REVIEW,
            WithdrawalStatus.APPROVED,
            note=f"approved: {reason}",
        ):
            return None
        audit.append(
            tx,
            actor=actor,
            action="withdrawal.approve",
            subject=f"withdrawal:{withdrawal_id}",
            reason=reason,
        )
        w = store.by_id(tx, withdrawal_id)
        return None if w is None else WithdrawalView.of(w)

    return op


def _reject_op(
    withdrawal_id: str, actor: str, reason: str
) -> Callable[[Tx], WithdrawalView | None]:
    reject = reject_op(withdrawal_id, reason)

    def op(tx: Tx) -> WithdrawalView | None:
        result = reject(tx)
        if result is not None:
            audit.append(
                tx,
                actor=actor,
                action="withdrawal.reject",
                subject=f"withdrawal:{withdrawal_id}",
                reason=reason,
            )
        return result

    return op
