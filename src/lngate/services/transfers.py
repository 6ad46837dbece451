"""Instant internal transfers between two users of the ledger."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lngate.domain.errors import AccountFrozen, InsufficientFunds, InvalidRequest, LedgerRefused
from lngate.domain.ledger import TransferResult, TransferSpec
from lngate.domain.money import parse_amount_msat
from lngate.services.accounts import iso_ms, require_user
from lngate.services.idempotent import run_once
from lngate.store import events, users
from lngate.store.db import Tx
from lngate.store.ledger import apply_transfer, now_ms
from lngate.store.users import UserStatus

MEMO_MAX_CHARS = 640


def validate_memo(memo: Any) -> str:
    if memo is None:
        return ""
    if not isinstance(memo, str) or len(memo) > MEMO_MAX_CHARS:
        raise InvalidRequest(f"memo must be a string of at most {MEMO_MAX_CHARS} characters")
    return memo


def apply_or_raise(tx: Tx, spec: TransferSpec) -> TransferResult:
    """Apply a transfer; refusals become typed errors. OK and EXISTS are returned."""
    result = apply_transfer(tx, spec)
    if result is TransferResult.EXCEEDS_CREDITS:
        raise InsufficientFunds("the available balance does not cover this transfer")
    if result not in (TransferResult.OK, TransferResult.EXISTS):
        raise LedgerRefused(f"the ledger refused the transfer: {result.value}")
    return result


def transfer_op(
    sender_id: str,
    to_username: str,
    amount_msat: int,
    memo: str,
    *,
    idempotency_key: str,
    request_hash: str,
    max_amount_msat: int,
) -> Callable[[Tx], dict[str, Any]]:
    """A write operation moving ``amount_msat`` from the sender to ``to_username``, once per
    Idempotency-Key. Validation that needs no database happens now, before anything queues."""
    parse_amount_msat(amount_msat)
    if amount_msat > max_amount_msat:
        raise InvalidRequest(f"amount_msat must not exceed {max_amount_msat} for a transfer")
    memo = validate_memo(memo)

    def move(tx: Tx) -> dict[str, Any]:
        sender = users.user_by_id(tx, sender_id)
        assert sender is not None, "an authenticated caller exists"
        if sender.status is UserStatus.FROZEN:
            raise AccountFrozen("this account is frozen")
        recipient = require_user(tx, to_username)
        if recipient.id == sender.id:
            raise InvalidRequest("cannot transfer to yourself")
        if recipient.status is UserStatus.FROZEN:
            raise AccountFrozen(f"{to_username} cannot receive transfers now")
        # The id derives from the key: a concurrent duplicate in another process meets EXISTS.
        transfer_id = f"xfer:{sender.id}:{idempotency_key}"
        spec = TransferSpec(
            transfer_id, sender.account_id, recipient.account_id, amount_msat, memo=memo
        )
        result = apply_or_raise(tx, spec)
        receipt = {
            "id": transfer_id,
            "from": sender.username,
            "to": recipient.username,
            "amount_msat": amount_msat,
            "memo": memo,
            "status": "completed",
            "created_at": iso_ms(now_ms()),
        }
        if result is TransferResult.OK:
            events.append(tx, sender.id, "transfer.sent", receipt)
            events.append(tx, recipient.id, "transfer.received", receipt)
        return receipt

    def op(tx: Tx) -> dict[str, Any]:
        return run_once(tx, sender_id, idempotency_key, request_hash, move)

    return op
