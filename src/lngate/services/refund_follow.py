"""A refund paid out as a withdrawal follows that withdrawal's end, in the transaction that
ends it: succeeded counts as refunded, failed or rejected gives the reserved amount back to
the order (it may be refunded again). Called by ``withdrawal_settlement`` for every final
state, so no path that finishes a withdrawal can leave its refund pending."""

from __future__ import annotations

from lngate.domain.errors import InvariantBroken
from lngate.domain.orders import RefundStatus
from lngate.domain.withdrawals import WithdrawalStatus
from lngate.services.accounts import iso_ms
from lngate.services.order_records import RefundView
from lngate.services.webhook_outbox import announce
from lngate.store import orders as store
from lngate.store.db import Tx
from lngate.store.ledger import now_ms
from lngate.store.orders import Refund


def refund_view(r: Refund) -> RefundView:
    return RefundView(
        id=r.id,
        order_id=r.order_id,
        amount_msat=r.amount_msat,
        status=r.status.value,
        destination=r.destination,
        reason=r.reason,
        withdrawal_id=r.withdrawal_id,
        created_at=iso_ms(r.created_at_ms),
        finished_at=iso_ms(r.finished_at_ms) if r.finished_at_ms else None,
    )


def announce_refund(tx: Tx, refund_id: str, at_ms: int) -> RefundView:
    refund = store.refund_by_id(tx, refund_id)
    if refund is None:
        raise InvariantBroken(f"refund {refund_id} vanished inside its own transaction")
    view = refund_view(refund)
    event = "refund.succeeded" if refund.status is RefundStatus.SUCCEEDED else "refund.failed"
    announce(tx, refund.merchant_user_id, event, view.as_json(), now_ms=at_ms)
    return view


def follow_withdrawal(tx: Tx, withdrawal_id: str, status: WithdrawalStatus) -> None:
    """The refund paid by this withdrawal (if any) ends as the withdrawal did."""
    if status not in (
        WithdrawalStatus.SUCCEEDED,
        WithdrawalStatus.FAILED,
        WithdrawalStatus.REJECTED,
    ):
        return
    refund = store.refund_by_withdrawal(tx, withdrawal_id)
    if refund is None:
        return
    at = now_ms()
    succeeded = status is WithdrawalStatus.SUCCEEDED
    outcome = RefundStatus.SUCCEEDED if succeeded else RefundStatus.FAILED
    if not store.finish_refund(tx, refund.id, outcome, finished_at_ms=at):
        return  # finished already: a replay
    if succeeded:
        store.refund_succeeded(tx, refund.order_id, refund.amount_msat)
    else:
        store.refund_failed(tx, refund.order_id, refund.amount_msat)
    announce_refund(tx, refund.id, at)
