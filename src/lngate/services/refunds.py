"""Refunds of paid orders: to the payer's balance at once (an order paid from a balance, no
destination given), or out over Lightning as a withdrawal from the merchant's balance (limits,
review and crash safety as for any withdrawal; the refund follows it, ``refund_follow``).

What an order may still refund is reserved by one guarded UPDATE in the refund's own
transaction, so concurrent refunds never sum past what was paid."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lngate.domain.errors import (
    AccountFrozen,
    InsufficientFunds,
    InvalidRequest,
    InvariantBroken,
    LedgerRefused,
    NotFound,
    RefundExceedsPaid,
)
from lngate.domain.ledger import TransferResult, TransferSpec
from lngate.domain.money import parse_amount_msat
from lngate.domain.orders import (
    ORDER_ID,
    OrderStatus,
    PaidVia,
    RefundStatus,
    check_reason,
    new_refund_id,
)
from lngate.lightning import errors as node_errors
from lngate.lightning.bolt11 import decode_bolt11
from lngate.services.idempotent import replayed, run_once
from lngate.services.order_records import RefundView
from lngate.services.ports import Clock, UnitOfWork
from lngate.services.refund_follow import announce_refund, refund_view
from lngate.services.withdrawals import WithdrawalRequests
from lngate.store import orders as store
from lngate.store import users
from lngate.store.db import Tx
from lngate.store.ledger import apply_transfer
from lngate.store.orders import Order, Refund
from lngate.store.users import UserStatus
from lngate.store.withdrawals import Withdrawal

BALANCE = "balance"


class Refunds:
    """A merchant's refunds of its paid orders (``create``, ``of_order``)."""

    def __init__(
        self,
        uow: UnitOfWork,
        withdrawals: WithdrawalRequests,
        system_accounts: Mapping[str, int],
        clock: Clock,
    ) -> None:
        self._uow = uow
        self._withdrawals = withdrawals
        self._accounts = system_accounts
        self._clock = clock

    async def create(
        self,
        merchant_id: str,
        order_id: str,
        *,
        amount_msat: Any,
        reason: Any = None,
        bolt11: Any = None,
        lightning_address: Any = None,
        idempotency: tuple[str, str],
    ) -> RefundView:
        amount = parse_amount_msat(amount_msat)
        why = check_reason(reason)
        if bolt11 is not None and lightning_address is not None:
            raise InvalidRequest("give at most one of bolt11 or lightning_address")
        key, req_hash = idempotency
        previous = await self._uow.read(lambda tx: replayed(tx, merchant_id, key, req_hash))
        if previous is not None:
            return await self._answer(merchant_id, previous)
        order = await self._uow.read(lambda tx: _refundable(tx, merchant_id, order_id, amount))
        if bolt11 is None and lightning_address is None:
            if order.paid_via is not PaidVia.BALANCE:
                raise InvalidRequest(
                    "this order was paid over Lightning: give a bolt11 or lightning_address "
                    "to refund to"
                )
            return await self._to_balance(merchant_id, order, amount, why, key, req_hash)
        destination = str(bolt11 if bolt11 is not None else lightning_address)

        def in_hold(tx: Tx, w: Withdrawal) -> None:
            if w.amount_msat != amount:
                raise InvalidRequest("the invoice's amount differs from amount_msat")
            if not store.reserve_refund(tx, order.id, amount):
                raise _exceeds(tx, order.id)
            store.insert_refund(
                tx,
                Refund(
                    seq=0,
                    id=new_refund_id(),
                    order_id=order.id,
                    merchant_user_id=merchant_id,
                    amount_msat=amount,
                    reason=why,
                    destination=destination,
                    status=RefundStatus.PENDING,
                    withdrawal_id=w.id,
                    created_at_ms=w.created_at_ms,
                    finished_at_ms=None,
                ),
            )

        withdrawal = await self._withdrawals.request(
            merchant_id,
            bolt11=bolt11,
            lightning_address=lightning_address,
            amount_msat=None if bolt11 is not None and _states_amount(bolt11) else amount,
            idempotency=(key, req_hash),
            in_hold=in_hold,
        )
        return await self._uow.read(lambda tx: _by_withdrawal(tx, withdrawal.id))

    async def of_order(self, merchant_id: str, order_id: str) -> tuple[RefundView, ...]:
        def read(tx: Tx) -> tuple[RefundView, ...]:
            _owned(tx, merchant_id, order_id)
            return tuple(refund_view(r) for r in store.refunds_of(tx, order_id))

        return await self._uow.read(read)

    async def _to_balance(
        self, merchant_id: str, order: Order, amount: int, why: str, key: str, req_hash: str
    ) -> RefundView:
        now = self._clock.now_ms()

        def op(tx: Tx) -> dict[str, Any]:
            if not store.reserve_refund(tx, order.id, amount):
                raise _exceeds(tx, order.id)
            merchant = users.user_by_id(tx, merchant_id)
            payer = users.user_by_id(tx, order.payer_user_id or "")
            if merchant is None or payer is None:
                raise InvariantBroken(f"order {order.id}: its merchant or payer is gone")
            if merchant.status is UserStatus.FROZEN:
                raise AccountFrozen("this account is frozen")
            if payer.status is UserStatus.FROZEN:
                raise AccountFrozen("the payer's account cannot receive now")
            refund_id = new_refund_id()
            spec = TransferSpec(
                f"refund:{refund_id}", merchant.account_id, payer.account_id, amount, kind="refund"
            )
            result = apply_transfer(tx, spec)
            if result is TransferResult.EXCEEDS_CREDITS:
                raise InsufficientFunds("the available balance does not cover this refund")
            if result is not TransferResult.OK:
                raise LedgerRefused(f"the ledger refused the refund: {result.value}")
            store.insert_refund(
                tx,
                Refund(
                    seq=0,
                    id=refund_id,
                    order_id=order.id,
                    merchant_user_id=merchant_id,
                    amount_msat=amount,
                    reason=why,
                    destination=BALANCE,
                    status=RefundStatus.SUCCEEDED,
                    withdrawal_id=None,
                    created_at_ms=now,
                    finished_at_ms=now,
                ),
            )
            store.refund_succeeded(tx, order.id, amount)
            return {"refund_id": announce_refund(tx, refund_id, now).id}

        body = await self._uow.write(lambda tx: run_once(tx, merchant_id, key, req_hash, op))
        return await self._answer(merchant_id, body)

    async def _answer(self, merchant_id: str, stored: dict[str, Any]) -> RefundView:
        """The refund a stored idempotent response names, as it is now."""

        def read(tx: Tx) -> RefundView:
            if "refund_id" in stored:
                refund = store.refund_by_id(tx, str(stored["refund_id"]))
            else:  # a withdrawal's response: the refund it pays
                refund = store.refund_by_withdrawal(tx, str(stored.get("id", "")))
            if refund is None or refund.merchant_user_id != merchant_id:
                raise InvalidRequest("this Idempotency-Key was used for another request")
            return refund_view(refund)

        return await self._uow.read(read)


def _owned(tx: Tx, merchant_id: str, order_id: str) -> Order:
    order = store.by_id(tx, order_id) if ORDER_ID.fullmatch(order_id) else None
    if order is None or order.merchant_user_id != merchant_id:
        raise NotFound("no such order")
    return order


def _refundable(tx: Tx, merchant_id: str, order_id: str, amount: int) -> Order:
    order = _owned(tx, merchant_id, order_id)
    if order.status is not OrderStatus.PAID:
        raise RefundExceedsPaid(
            f"this order is {order.status.value}: only a paid order can be refunded"
            if order.status is not OrderStatus.REFUNDED
            else "this order is refunded in full already"
        )
    if order.refunds_reserved_msat + amount > order.amount_msat:
        raise _exceeds(tx, order.id)
    return order


def _exceeds(tx: Tx, order_id: str) -> RefundExceedsPaid:
    order = store.by_id(tx, order_id)
    left = 0 if order is None else order.amount_msat - order.refunds_reserved_msat
    return RefundExceedsPaid(f"refunds would exceed what was paid: {left} msat can be refunded")


def _by_withdrawal(tx: Tx, withdrawal_id: str) -> RefundView:
    refund = store.refund_by_withdrawal(tx, withdrawal_id)
    if refund is None:
        raise InvariantBroken(f"withdrawal {withdrawal_id} pays no refund")
    return refund_view(refund)


def _states_amount(bolt11: Any) -> bool:
    """Whether the invoice names its amount (then amount_msat must not be passed on)."""
    if not isinstance(bolt11, str):
        return False
    text = bolt11.strip()
    if text.lower().startswith("lightning:"):
        text = text[len("lightning:") :]
    try:
        return decode_bolt11(text).amount_msat is not None
    except node_errors.InvalidInvoice:
        return False  # the withdrawal's own check answers the error
