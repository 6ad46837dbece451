"""Orders and refunds in the database. Every state change is one conditional UPDATE, so two
processes (the watcher and a balance payment, say) racing for an order change it once."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from lngate.domain.orders import HtlcState, OrderStatus, PaidVia, RefundStatus
from lngate.store.db import Row, Tx


@dataclass(frozen=True, slots=True)
class Order:
    seq: int
    id: str
    merchant_user_id: str
    merchant_order_id: str
    request_hash: str
    amount_msat: int
    fee_msat: int
    description: str
    bolt11: str
    payment_hash: str  # hex
    status: OrderStatus
    htlc_state: HtlcState
    paid_via: PaidVia | None
    amount_paid_msat: int | None
    payer_user_id: str | None
    paid_by_withdrawal_id: str | None
    created_at_ms: int
    expires_at_ms: int
    paid_at_ms: int | None
    closed_at_ms: int | None
    refunded_msat: int
    refunds_reserved_msat: int
    redirect_url: str | None
    metadata: dict[str, Any]


_COLUMNS = (
    "seq, id, merchant_user_id, merchant_order_id, request_hash, amount_msat, fee_msat, "
    "description, bolt11, payment_hash, status, htlc_state, paid_via, amount_paid_msat, "
    "payer_user_id, paid_by_withdrawal_id, created_at_ms, expires_at_ms, paid_at_ms, "
    "closed_at_ms, refunded_msat, refunds_reserved_msat, redirect_url, metadata"
)


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _order(r: Row) -> Order:
    return Order(
        seq=int(r[0]),
        id=str(r[1]),
        merchant_user_id=str(r[2]),
        merchant_order_id=str(r[3]),
        request_hash=str(r[4]),
        amount_msat=int(r[5]),
        fee_msat=int(r[6]),
        description=str(r[7]),
        bolt11=str(r[8]),
        payment_hash=str(r[9]),
        status=OrderStatus(r[10]),
        htlc_state=HtlcState(r[11]),
        paid_via=None if r[12] is None else PaidVia(r[12]),
        amount_paid_msat=_opt_int(r[13]),
        payer_user_id=_opt_str(r[14]),
        paid_by_withdrawal_id=_opt_str(r[15]),
        created_at_ms=int(r[16]),
        expires_at_ms=int(r[17]),
        paid_at_ms=_opt_int(r[18]),
        closed_at_ms=_opt_int(r[19]),
        refunded_msat=int(r[20]),
        refunds_reserved_msat=int(r[21]),
        redirect_url=_opt_str(r[22]),
        metadata=json.loads(str(r[23])),
    )


def insert(tx: Tx, o: Order) -> None:
    tx.execute(
        "INSERT INTO orders (id, merchant_user_id, merchant_order_id, request_hash, amount_msat,"
        " fee_msat, description, bolt11, payment_hash, status, htlc_state, created_at_ms,"
        " expires_at_ms, redirect_url, metadata) VALUES (:id, :m, :mo, :rh, :a, :f, :d, :b, :h,"
        " :s, :hs, :c, :e, :r, :md)",
        {
            "id": o.id,
            "m": o.merchant_user_id,
            "mo": o.merchant_order_id,
            "rh": o.request_hash,
            "a": o.amount_msat,
            "f": o.fee_msat,
            "d": o.description,
            "b": o.bolt11,
            "h": o.payment_hash,
            "s": o.status.value,
            "hs": o.htlc_state.value,
            "c": o.created_at_ms,
            "e": o.expires_at_ms,
            "r": o.redirect_url,
            "md": json.dumps(o.metadata, separators=(",", ":"), ensure_ascii=False),
        },
    )


def by_id(tx: Tx, order_id: str) -> Order | None:
    row = tx.one(f"SELECT {_COLUMNS} FROM orders WHERE id = :id", {"id": order_id})
    return None if row is None else _order(row)


def by_hash(tx: Tx, payment_hash_hex: str) -> Order | None:
    row = tx.one(f"SELECT {_COLUMNS} FROM orders WHERE payment_hash = :h", {"h": payment_hash_hex})
    return None if row is None else _order(row)


def is_order_hash(tx: Tx, payment_hash_hex: str) -> bool:
    return (
        tx.one("SELECT 1 FROM orders WHERE payment_hash = :h", {"h": payment_hash_hex}) is not None
    )


def by_merchant_order_id(tx: Tx, merchant_user_id: str, merchant_order_id: str) -> Order | None:
    row = tx.one(
        f"SELECT {_COLUMNS} FROM orders WHERE merchant_user_id = :m AND merchant_order_id = :mo",
        {"m": merchant_user_id, "mo": merchant_order_id},
    )
    return None if row is None else _order(row)


def page_for_merchant(
    tx: Tx,
    merchant_user_id: str,
    *,
    status: OrderStatus | None,
    merchant_order_id: str | None,
    before_seq: int | None,
    limit: int,
) -> list[Order]:
    """Newest first; seq is the paging cursor."""
    where = ["merchant_user_id = :m", "seq < :b"]
    params: dict[str, Any] = {
        "m": merchant_user_id,
        "b": before_seq if before_seq is not None else 2**62,
        "l": limit,
    }
    if status is not None:
        where.append("status = :s")
        params["s"] = status.value
    if merchant_order_id is not None:
        where.append("merchant_order_id = :mo")
        params["mo"] = merchant_order_id
    rows = tx.all(
        f"SELECT {_COLUMNS} FROM orders WHERE {' AND '.join(where)} ORDER BY seq DESC LIMIT :l",
        params,
    )
    return [_order(r) for r in rows]


def open_after(tx: Tx, after_seq: int, limit: int) -> list[Order]:
    """Open orders created after ``after_seq``, oldest first (the watcher's discovery)."""
    rows = tx.all(
        f"SELECT {_COLUMNS} FROM orders WHERE status = :s AND seq > :a ORDER BY seq LIMIT :l",
        {"s": OrderStatus.OPEN.value, "a": after_seq, "l": limit},
    )
    return [_order(r) for r in rows]


def open_past_expiry(tx: Tx, cutoff_ms: int, limit: int) -> list[Order]:
    rows = tx.all(
        f"SELECT {_COLUMNS} FROM orders WHERE status = :s AND expires_at_ms <= :c "
        "ORDER BY expires_at_ms LIMIT :l",
        {"s": OrderStatus.OPEN.value, "c": cutoff_ms, "l": limit},
    )
    return [_order(r) for r in rows]


def with_htlc_work(tx: Tx, limit: int) -> list[Order]:
    """Orders whose invoice the node still has to settle or cancel."""
    rows = tx.all(
        f"SELECT {_COLUMNS} FROM orders WHERE htlc_state IN (:a, :b) ORDER BY seq LIMIT :l",
        {"a": HtlcState.TO_SETTLE.value, "b": HtlcState.TO_CANCEL.value, "l": limit},
    )
    return [_order(r) for r in rows]


def credited_unsettled_msat(tx: Tx, *, settled_since_ms: int) -> int:
    """What merchants were credited for HTLCs the node holds but has not settled yet (money on
    its way into the channels, an asset the node does not show yet), plus those settled since
    ``settled_since_ms`` (when the node's balances were read: they may not show them). Counting
    one twice only ever errs toward a surplus."""
    value = tx.scalar(
        "SELECT COALESCE(SUM(amount_paid_msat), 0) FROM orders WHERE paid_via = :v AND"
        " (htlc_state = :s OR (htlc_state = :done AND htlc_done_at_ms >= :t))",
        {
            "v": PaidVia.LIGHTNING.value,
            "s": HtlcState.TO_SETTLE.value,
            "done": HtlcState.SETTLED.value,
            "t": settled_since_ms,
        },
    )
    return int(value or 0)


def mark_paid(
    tx: Tx,
    order_id: str,
    *,
    via: PaidVia,
    amount_paid_msat: int,
    htlc_state: HtlcState,
    paid_at_ms: int,
    payer_user_id: str | None = None,
    withdrawal_id: str | None = None,
) -> bool:
    """open -> paid, exactly once."""
    return (
        tx.execute(
            "UPDATE orders SET status = :paid, paid_via = :v, amount_paid_msat = :a,"
            " htlc_state = :hs, paid_at_ms = :t, payer_user_id = :p, paid_by_withdrawal_id = :w"
            " WHERE id = :id AND status = :open",
            {
                "paid": OrderStatus.PAID.value,
                "v": via.value,
                "a": amount_paid_msat,
                "hs": htlc_state.value,
                "t": paid_at_ms,
                "p": payer_user_id,
                "w": withdrawal_id,
                "id": order_id,
                "open": OrderStatus.OPEN.value,
            },
        )
        == 1
    )


def mark_closed(tx: Tx, order_id: str, status: OrderStatus, *, closed_at_ms: int) -> bool:
    """open -> expired | cancelled, exactly once; the node's invoice is then to be cancelled."""
    return (
        tx.execute(
            "UPDATE orders SET status = :s, htlc_state = :hs, closed_at_ms = :t"
            " WHERE id = :id AND status = :open",
            {
                "s": status.value,
                "hs": HtlcState.TO_CANCEL.value,
                "t": closed_at_ms,
                "id": order_id,
                "open": OrderStatus.OPEN.value,
            },
        )
        == 1
    )


def move_htlc(
    tx: Tx, order_id: str, from_state: HtlcState, to_state: HtlcState, *, at_ms: int
) -> bool:
    return (
        tx.execute(
            "UPDATE orders SET htlc_state = :to, htlc_done_at_ms = :t"
            " WHERE id = :id AND htlc_state = :fr",
            {"to": to_state.value, "t": at_ms, "id": order_id, "fr": from_state.value},
        )
        == 1
    )


def reserve_refund(tx: Tx, order_id: str, amount_msat: int) -> bool:
    """Take ``amount_msat`` of what a paid order may still refund; False if that would exceed
    its amount. One guarded UPDATE: concurrent refunds can never sum past the amount."""
    return (
        tx.execute(
            "UPDATE orders SET refunds_reserved_msat = refunds_reserved_msat + :a"
            " WHERE id = :id AND status = :paid"
            " AND refunds_reserved_msat + :a <= amount_msat",
            {"a": amount_msat, "id": order_id, "paid": OrderStatus.PAID.value},
        )
        == 1
    )


def refund_succeeded(tx: Tx, order_id: str, amount_msat: int) -> None:
    """A reserved refund landed: it counts as refunded; the whole amount makes it refunded."""
    tx.execute(
        "UPDATE orders SET refunded_msat = refunded_msat + :a,"
        " status = CASE WHEN refunded_msat + :a >= amount_msat THEN :refunded ELSE status END"
        " WHERE id = :id",
        {"a": amount_msat, "id": order_id, "refunded": OrderStatus.REFUNDED.value},
    )


def refund_failed(tx: Tx, order_id: str, amount_msat: int) -> None:
    """A reserved refund failed: what it reserved may be refunded again."""
    tx.execute(
        "UPDATE orders SET refunds_reserved_msat = refunds_reserved_msat - :a WHERE id = :id",
        {"a": amount_msat, "id": order_id},
    )


def balance_paid_since(tx: Tx, payer_user_id: str, since_ms: int) -> int:
    """What a user paid for orders from their balance since ``since_ms`` (withdrawals to an
    order's invoice are counted with the withdrawals): it counts toward the daily limit."""
    value = tx.scalar(
        "SELECT COALESCE(SUM(amount_msat), 0) FROM orders WHERE payer_user_id = :p"
        " AND paid_at_ms >= :t AND paid_via = :v AND paid_by_withdrawal_id IS NULL",
        {"p": payer_user_id, "t": since_ms, "v": PaidVia.BALANCE.value},
    )
    return int(value or 0)


# --- refunds ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Refund:
    seq: int
    id: str
    order_id: str
    merchant_user_id: str
    amount_msat: int
    reason: str
    destination: str
    status: RefundStatus
    withdrawal_id: str | None
    created_at_ms: int
    finished_at_ms: int | None


_REFUND_COLUMNS = (
    "seq, id, order_id, merchant_user_id, amount_msat, reason, destination, status, "
    "withdrawal_id, created_at_ms, finished_at_ms"
)


def _refund(r: Row) -> Refund:
    return Refund(
        seq=int(r[0]),
        id=str(r[1]),
        order_id=str(r[2]),
        merchant_user_id=str(r[3]),
        amount_msat=int(r[4]),
        reason=str(r[5]),
        destination=str(r[6]),
        status=RefundStatus(r[7]),
        withdrawal_id=_opt_str(r[8]),
        created_at_ms=int(r[9]),
        finished_at_ms=_opt_int(r[10]),
    )


def insert_refund(tx: Tx, r: Refund) -> None:
    tx.execute(
        "INSERT INTO refunds (id, order_id, merchant_user_id, amount_msat, reason, destination,"
        " status, withdrawal_id, created_at_ms, finished_at_ms) VALUES"
        " (:id, :o, :m, :a, :r, :d, :s, :w, :c, :f)",
        {
            "id": r.id,
            "o": r.order_id,
            "m": r.merchant_user_id,
            "a": r.amount_msat,
            "r": r.reason,
            "d": r.destination,
            "s": r.status.value,
            "w": r.withdrawal_id,
            "c": r.created_at_ms,
            "f": r.finished_at_ms,
        },
    )


def refund_by_id(tx: Tx, refund_id: str) -> Refund | None:
    row = tx.one(f"SELECT {_REFUND_COLUMNS} FROM refunds WHERE id = :id", {"id": refund_id})
    return None if row is None else _refund(row)


def refund_by_withdrawal(tx: Tx, withdrawal_id: str) -> Refund | None:
    row = tx.one(
        f"SELECT {_REFUND_COLUMNS} FROM refunds WHERE withdrawal_id = :w", {"w": withdrawal_id}
    )
    return None if row is None else _refund(row)


def refunds_of(tx: Tx, order_id: str) -> list[Refund]:
    rows = tx.all(
        f"SELECT {_REFUND_COLUMNS} FROM refunds WHERE order_id = :o ORDER BY seq", {"o": order_id}
    )
    return [_refund(r) for r in rows]


def finish_refund(tx: Tx, refund_id: str, status: RefundStatus, *, finished_at_ms: int) -> bool:
    """pending -> succeeded | failed, exactly once."""
    return (
        tx.execute(
            "UPDATE refunds SET status = :s, finished_at_ms = :t WHERE id = :id AND status = :p",
            {
                "s": status.value,
                "t": finished_at_ms,
                "id": refund_id,
                "p": RefundStatus.PENDING.value,
            },
        )
        == 1
    )
