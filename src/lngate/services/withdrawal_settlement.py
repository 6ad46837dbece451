"""The writes that end a withdrawal: each moves its status exactly once (a conditional update)
and posts or voids its holds in the same transaction, so the books and the status never differ.

Holds of a Lightning withdrawal: ``hold`` = user -> node for amount + routing fee reserve, and
``fee`` = user -> fee revenue for the exchange fee. Of an internal one: ``hold`` = user ->
recipient for the amount, and no fee.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from typing import Any

from lngate.domain.ledger import AccountKind, TransferFlag, TransferResult, TransferSpec
from lngate.domain.withdrawals import WithdrawalStatus
from lngate.services.accounts import iso_ms
from lngate.services.deposits import deposit_json
from lngate.store import deposits, events
from lngate.store import withdrawals as store
from lngate.store.db import Tx
from lngate.store.ledger import apply_transfer
from lngate.store.withdrawals import Withdrawal

log = logging.getLogger(__name__)


def withdrawal_json(w: Withdrawal) -> dict[str, Any]:
    return {
        "id": w.id,
        "status": w.status.value,
        "bolt11": w.bolt11,
        "payment_hash": w.payment_hash,
        "destination": w.destination,
        "amount_msat": w.amount_msat,
        "exchange_fee_msat": w.exchange_fee_msat,
        "fee_reserve_msat": w.fee_reserve_msat,
        "routing_fee_msat": w.routing_fee_msat,
        "preimage": w.preimage,
        "internal": w.internal,
        "note": w.note,
        "created_at": iso_ms(w.created_at_ms),
        "finished_at": iso_ms(w.finished_at_ms) if w.finished_at_ms else None,
    }


def _post(tx: Tx, hold_id: str, amount_msat: int) -> None:
    result = apply_transfer(
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
    assert result in (TransferResult.OK, TransferResult.EXISTS), f"post {hold_id}: {result}"


def _void(tx: Tx, hold_id: str) -> None:
    result = apply_transfer(
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
    assert result in (TransferResult.OK, TransferResult.EXISTS), f"void {hold_id}: {result}"


def _announce(tx: Tx, w_id: str, event_type: str) -> dict[str, Any]:
    done = store.by_id(tx, w_id)
    assert done is not None
    body = withdrawal_json(done)
    events.append(tx, done.user_id, event_type, body)
    return body


def succeed_op(
    w: Withdrawal, routing_fee_msat: int, preimage: bytes, system_accounts: dict[str, int]
) -> Callable[[Tx], bool]:
    """sending -> succeeded: post amount + actual routing fee, release the rest of the reserve."""
    assert hashlib.sha256(preimage).hexdigest() == w.payment_hash, "preimage does not match"

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
            spec = TransferSpec(
                f"withdrawal:{w.id}:excess_fee",
                system_accounts[AccountKind.ROUTING_FEE_EXPENSE.value],
                system_accounts[AccountKind.NODE.value],
                excess,
                kind="routing_fee",
            )
            assert apply_transfer(tx, spec) in (TransferResult.OK, TransferResult.EXISTS)
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
        _void(tx, w.hold_id)
        if w.exchange_fee_msat:
            _void(tx, w.fee_hold_id)
        _announce(tx, w.id, "withdrawal.failed")
        return True

    return op


def reject_op(withdrawal_id: str, reason: str) -> Callable[[Tx], dict[str, Any] | None]:
    """review -> rejected (an operator's decision): the holds are voided."""

    def op(tx: Tx) -> dict[str, Any] | None:
        w = store.by_id(tx, withdrawal_id)
        if w is None or not store.move(
            tx, w.id, WithdrawalStatus.REVIEW, WithdrawalStatus.REJECTED, note=reason
        ):
            return None
        _void(tx, w.hold_id)
        if w.exchange_fee_msat:
            _void(tx, w.fee_hold_id)
        return _announce(tx, w.id, "withdrawal.rejected")

    return op


def settle_internal_op(w: Withdrawal) -> Callable[[Tx], bool]:
    """requested -> succeeded for an internal withdrawal, once our node has cancelled the
    invoice: post the hold (it credits the recipient) and close the deposit as settled. It
    passes through ``sending`` inside this one transaction: nobody ever sees it there."""

    def op(tx: Tx) -> bool:
        if not store.move(tx, w.id, WithdrawalStatus.REQUESTED, WithdrawalStatus.SENDING):
            return False
        assert store.finish(
            tx,
            w.id,
            WithdrawalStatus.SUCCEEDED,
            routing_fee_msat=0,
            preimage_hex=None,
            note="settled internally",
        )
        _post(tx, w.hold_id, w.amount_msat)
        assert deposits.mark_settled(tx, w.payment_hash, w.amount_msat), "deposit not open"
        deposit = deposits.by_hash(tx, w.payment_hash)
        assert deposit is not None
        events.append(tx, deposit.user_id, "deposit.settled", deposit_json(deposit))
        _announce(tx, w.id, "withdrawal.succeeded")
        return True

    return op


def refuse_internal_op(w: Withdrawal, reason: str) -> Callable[[Tx], bool]:
    """requested -> failed for an internal withdrawal whose invoice was paid from outside."""

    def op(tx: Tx) -> bool:
        if not store.move(tx, w.id, WithdrawalStatus.REQUESTED, WithdrawalStatus.SENDING):
            return False
        assert store.finish(
            tx,
            w.id,
            WithdrawalStatus.FAILED,
            routing_fee_msat=None,
            preimage_hex=None,
            note=reason,
            attempt=w.attempts + 1,  # the move to sending above counted one
        )
        _void(tx, w.hold_id)
        _announce(tx, w.id, "withdrawal.failed")
        return True

    return op
