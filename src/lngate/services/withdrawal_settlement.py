"""The writes that end a withdrawal: each moves its status exactly once (a conditional update)
and posts or voids its holds in the same transaction, so the books and the status never differ.

Holds of a Lightning withdrawal: ``hold`` = user -> node for amount + routing fee reserve, and
``fee`` = user -> fee revenue for the exchange fee. Of an internal one: ``hold`` = user ->
recipient for the amount, and no fee; the recipient's deposit is reserved by the withdrawal
from the hold on, and only these writes close it (``InternalSettlement`` decides which, from
what our node says of the invoice).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

from lngate.crashpoints import crash_point
from lngate.domain.errors import LedgerRefused
from lngate.domain.ledger import AccountKind, TransferFlag, TransferResult, TransferSpec
from lngate.domain.withdrawals import WithdrawalStatus
from lngate.lightning import errors as node_errors
from lngate.lightning.node import Invoice, InvoiceState, Node
from lngate.services.deposits import credit_settled_op, deposit_json
from lngate.services.ports import UnitOfWork
from lngate.services.refund_follow import follow_withdrawal
from lngate.services.withdrawal_records import WithdrawalView
from lngate.store import deposits, events, users
from lngate.store import withdrawals as store
from lngate.store.db import Tx
from lngate.store.deposits import DepositStatus
from lngate.store.ledger import apply_transfer
from lngate.store.users import UserStatus
from lngate.store.withdrawals import Withdrawal

log = logging.getLogger(__name__)

DONE = (TransferResult.OK, TransferResult.EXISTS)


def withdrawal_json(w: Withdrawal) -> dict[str, Any]:
    """The API's JSON of ``w``: the body of its events."""
    return WithdrawalView.of(w).as_json()


def _apply(tx: Tx, spec: TransferSpec) -> None:
    """A write the books require: a refusal here is a broken invariant, so the whole operation
    rolls back (its savepoint) and the withdrawal keeps its status to be retried and looked at."""
    result = apply_transfer(tx, spec)
    if result not in DONE:
        raise LedgerRefused(f"{spec.id}: {result.value}")


def _post(tx: Tx, hold_id: str, amount_msat: int) -> None:
    _apply(
        tx,
        TransferSpec(
            f"{hold_id}:post",
            0,
            0,
            amount_msat,
            flag=TransferFlag.POST_PENDING,
            pending_id=hold_id,
            kind="withdrawal",
        ),
    )


def _void(tx: Tx, hold_id: str) -> None:
    _apply(
        tx,
        TransferSpec(
            f"{hold_id}:void",
            0,
            0,
            0,
            flag=TransferFlag.VOID_PENDING,
            pending_id=hold_id,
            kind="withdrawal",
        ),
    )


def _void_holds(tx: Tx, w: Withdrawal) -> None:
    _void(tx, w.hold_id)
    if w.exchange_fee_msat:
        _void(tx, w.fee_hold_id)


def _announce(tx: Tx, w_id: str, event_type: str) -> WithdrawalView:
    done = store.by_id(tx, w_id)
    if done is None:
        raise LedgerRefused(f"withdrawal {w_id} vanished inside its own transaction")
    view = WithdrawalView.of(done)
    events.append(tx, done.user_id, event_type, view.as_json())
    follow_withdrawal(tx, done.id, done.status)  # a refund it pays ends with it
    return view


def succeed_op(
    w: Withdrawal, routing_fee_msat: int, preimage: bytes, system_accounts: Mapping[str, int]
) -> Callable[[Tx], bool]:
    """sending -> succeeded: post amount + actual routing fee, release the rest of the reserve."""
    if hashlib.sha256(preimage).hexdigest() != w.payment_hash:
        raise ValueError(f"withdrawal {w.id}: the preimage does not match the payment hash")

    def op(tx: Tx) -> bool:
        fee_charged = min(routing_fee_msat, w.fee_reserve_msat)
        if not store.finish(
            tx,
            w.id,
            WithdrawalStatus.SUCCEEDED,
            routing_fee_msat=fee_charged,
            preimage_hex=preimage.hex(),
            note="",
        ):
            return False  # already finished: a second report of the same outcome
        _post(tx, w.hold_id, w.amount_msat + fee_charged)
        if w.exchange_fee_msat:
            _post(tx, w.fee_hold_id, w.exchange_fee_msat)
        excess = routing_fee_msat - fee_charged
        if excess > 0:
            # The node paid more than the fee limit allowed: the exchange bears it, on the books.
            log.error(
                "withdrawal %s: routing fee %d above reserve %d",
                w.id,
                routing_fee_msat,
                w.fee_reserve_msat,
            )
            _apply(
                tx,
                TransferSpec(
                    f"withdrawal:{w.id}:excess_fee",
                    system_accounts[AccountKind.ROUTING_FEE_EXPENSE.value],
                    system_accounts[AccountKind.NODE.value],
                    excess,
                    kind="routing_fee",
                ),
            )
        _announce(tx, w.id, "withdrawal.succeeded")
        return True

    return op


def fail_op(w: Withdrawal, reason: str) -> Callable[[Tx], bool]:
    """sending -> failed: only for a payment that can no longer succeed, and only if ``w``'s
    attempt is still the latest (another worker may have sent it again since). Voids every
    hold."""

    def op(tx: Tx) -> bool:
        if not store.finish(
            tx,
            w.id,
            WithdrawalStatus.FAILED,
            routing_fee_msat=None,
            preimage_hex=None,
            note=reason,
            attempt=w.attempts,
        ):
            return False
        _void_holds(tx, w)
        _announce(tx, w.id, "withdrawal.failed")
        return True

    return op


def reject_op(withdrawal_id: str, reason: str) -> Callable[[Tx], WithdrawalView | None]:
    """review | approved -> rejected (an operator's decision, for anything not yet sent to the
    node): the holds are voided and an internal withdrawal's deposit is released."""

    def op(tx: Tx) -> WithdrawalView | None:
        w = store.by_id(tx, withdrawal_id)
        if w is None:
            return None
        moved = any(
            store.move(tx, w.id, waiting, WithdrawalStatus.REJECTED, note=reason)
            for waiting in (WithdrawalStatus.REVIEW, WithdrawalStatus.APPROVED)
        )
        if not moved:
            return None
        _void_holds(tx, w)
        if w.internal:
            deposits.release(tx, w.payment_hash, w.id)
        return _announce(tx, w.id, "withdrawal.rejected")

    return op


def settle_internal_op(w: Withdrawal, system_accounts: Mapping[str, int]) -> Callable[[Tx], bool]:
    """sending -> succeeded for an internal withdrawal, once our node has cancelled the invoice:
    post the hold (it credits the recipient) and settle the reserved deposit, exactly once. If
    the deposit or its owner can no longer take the money, the withdrawal fails instead (the
    invoice is dead on the node, so the deposit closes as cancelled)."""
    fail = fail_internal_op(w, "", system_accounts, invoice_cancelled=True)

    def op(tx: Tx) -> bool:
        deposit = deposits.by_hash(tx, w.payment_hash)
        if (
            deposit is None
            or deposit.status is not DepositStatus.OPEN
            or (deposit.reserved_by != w.id)
        ):
            return fail(tx, "the recipient's invoice is no longer open")
        recipient = users.user_by_id(tx, deposit.user_id)
        if recipient is None or recipient.status is UserStatus.FROZEN:
            return fail(tx, "the recipient's account is frozen")
        if not store.finish(
            tx,
            w.id,
            WithdrawalStatus.SUCCEEDED,
            routing_fee_msat=0,
            preimage_hex=None,
            note="settled internally",
        ):
            return False  # another worker finished it
        if not deposits.settle_reserved(tx, w.payment_hash, w.id, w.amount_msat):
            raise LedgerRefused(f"deposit {deposit.id} changed under its reservation")
        _post(tx, w.hold_id, w.amount_msat)
        settled = deposits.by_hash(tx, w.payment_hash)
        if settled is not None:
            events.append(tx, settled.user_id, "deposit.settled", deposit_json(settled))
        _announce(tx, w.id, "withdrawal.succeeded")
        return True

    return op


def fail_internal_op(
    w: Withdrawal,
    default_reason: str,
    system_accounts: Mapping[str, int],
    *,
    invoice_cancelled: bool = False,
    paid_from_outside: Invoice | None = None,
) -> Callable[..., bool]:
    """sending -> failed for an internal withdrawal: void the hold and release the deposit. If
    our node cancelled the invoice, the deposit is closed as cancelled; if the invoice was paid
    from outside, that payment is credited to the deposit (once) in the same transaction."""
    credit = (
        None
        if paid_from_outside is None
        else credit_settled_op(
            paid_from_outside, system_accounts[AccountKind.NODE.value], from_stream=False
        )
    )

    def op(tx: Tx, reason: str = default_reason) -> bool:
        if not store.finish(
            tx,
            w.id,
            WithdrawalStatus.FAILED,
            routing_fee_msat=None,
            preimage_hex=None,
            note=reason,
            attempt=w.attempts,
        ):
            return False
        _void_holds(tx, w)
        if invoice_cancelled and deposits.mark_closed(
            tx, w.payment_hash, DepositStatus.CANCELLED, reserved_by=w.id
        ):
            closed = deposits.by_hash(tx, w.payment_hash)
            if closed is not None:
                events.append(tx, closed.user_id, "deposit.cancelled", deposit_json(closed))
        deposits.release(tx, w.payment_hash, w.id)
        if credit is not None:
            credit(tx)
        _announce(tx, w.id, "withdrawal.failed")
        return True

    return op


class InternalSettlement:
    """sending -> succeeded | failed for a withdrawal to an invoice of our own node, acting only
    on what the node says of the invoice: no Lightning payment is made. Used by the request
    (settled at once) and by the payment worker (after a crash, or a node that was away)."""

    def __init__(self, uow: UnitOfWork, node: Node, system_accounts: Mapping[str, int]) -> None:
        self._uow = uow
        self._node = node
        self._accounts = system_accounts

    async def settle(self, w: Withdrawal) -> None:
        """Cancel the invoice first, so it can never also be paid from outside (LNbits #2159,
        blink #1295); once the node has it cancelled, the recipient is credited, once. A node
        that cannot be reached or times out leaves the withdrawal ``sending`` for the worker to
        ask again (the cancel may have happened); every other outcome finishes it."""
        payment_hash = bytes.fromhex(w.payment_hash)
        accounts = self._accounts
        try:
            invoice = await self._node.lookup_invoice(payment_hash)
            if invoice.state is InvoiceState.OPEN:
                crash_point("internal_before_cancel")
                invoice = await self._cancel(payment_hash)
                crash_point("internal_after_cancel")
        except (node_errors.InvoiceNotFound, node_errors.PermissionDenied) as exc:
            # The node has no such invoice, or refused to touch it: nothing was cancelled and
            # no money moved, so releasing the hold is safe (and retrying would never end).
            reason = f"our node could not cancel the invoice: {exc.message}"
            await self._uow.write(fail_internal_op(w, reason, accounts))
            return
        if invoice.state is InvoiceState.OPEN:
            # The node answered the cancel but kept the invoice open: the same, said quietly.
            reason = "our node did not cancel the invoice"
            await self._uow.write(fail_internal_op(w, reason, accounts))
        elif invoice.state is InvoiceState.CANCELED:
            await self._uow.write(settle_internal_op(w, accounts))
        elif invoice.state is InvoiceState.SETTLED:
            reason = "the invoice was paid from outside"
            await self._uow.write(fail_internal_op(w, reason, accounts, paid_from_outside=invoice))
        elif invoice.state is InvoiceState.ACCEPTED:
            reason = "the invoice is being paid from outside"
            await self._uow.write(fail_internal_op(w, reason, accounts))

    async def _cancel(self, payment_hash: bytes) -> Invoice:
        # Refused because it was paid from outside meanwhile: the lookup below says how.
        with contextlib.suppress(node_errors.AlreadyPaid, node_errors.InvalidNodeRequest):
            await self._node.cancel_invoice(payment_hash)
        return await self._node.lookup_invoice(payment_hash)
