"""Orders and refunds in the database. Every state change is one conditional UPDATE, so two
processes (the watcher and a balance payment, say) racing for an order change it once."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from lngate.domain.orders import HtlcState, OrderStatus, PaidVia, RefundStatus
from lngate.domain.users import Role, UserStatus
from lngate.store.db import Params, Row, Tx


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

_O_COLUMNS = ", ".join(f"o.{name.strip()}" for name in _COLUMNS.split(","))


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


def _metadata_json(o: Order) -> str:
    return json.dumps(o.metadata, separators=(",", ":"), ensure_ascii=False)


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
            "md": _metadata_json(o),
        },
    )


# PostgreSQL: many new orders in one statement. An order is inserted only if its merchant is a
# merchant and not frozen, and only if nothing conflicts (the merchant's merchant_order_id
# taken, by another order or by one earlier in the same statement); the statement answers the
# ids it inserted, and each order it left out takes the one-by-one path, which says why.
INSERT_MANY_SQL = (
    "WITH v AS (SELECT * FROM unnest(:ids::text[], :merchants::text[], :merchant_order_ids::text[],"
    " :request_hashes::text[], :amounts::bigint[], :fees::bigint[], :descriptions::text[],"
    " :bolt11s::text[], :hashes::text[], :statuses::text[], :htlc_states::text[],"
    " :created::bigint[], :expires::bigint[], :redirects::text[], :metadata::text[])"
    " WITH ORDINALITY AS v (id, merchant_user_id, merchant_order_id, request_hash, amount_msat,"
    " fee_msat, description, bolt11, payment_hash, status, htlc_state, created_at_ms,"
    " expires_at_ms, redirect_url, metadata, n)),"
    " inserted AS (INSERT INTO orders (id, merchant_user_id, merchant_order_id, request_hash,"
    " amount_msat, fee_msat, description, bolt11, payment_hash, status, htlc_state,"
    " created_at_ms, expires_at_ms, redirect_url, metadata)"
    " SELECT v.id, v.merchant_user_id, v.merchant_order_id, v.request_hash, v.amount_msat,"
    " v.fee_msat, v.description, v.bolt11, v.payment_hash, v.status, v.htlc_state,"
    " v.created_at_ms, v.expires_at_ms, v.redirect_url, v.metadata"
    " FROM v JOIN users u ON u.id = v.merchant_user_id"
    f" WHERE u.role = '{Role.MERCHANT.value}' AND u.status <> '{UserStatus.FROZEN.value}'"
    " ORDER BY v.n ON CONFLICT DO NOTHING RETURNING id)"
    " SELECT id FROM inserted"
)


def insert_many_statement(new: list[Order]) -> tuple[str, Params]:
    """The statement that inserts ``new`` (see ``INSERT_MANY_SQL``); its rows are the ids."""
    return INSERT_MANY_SQL, {
        "ids": [o.id for o in new],
        "merchants": [o.merchant_user_id for o in new],
        "merchant_order_ids": [o.merchant_order_id for o in new],
        "request_hashes": [o.request_hash for o in new],
        "amounts": [o.amount_msat for o in new],
        "fees": [o.fee_msat for o in new],
        "descriptions": [o.description for o in new],
        "bolt11s": [o.bolt11 for o in new],
        "hashes": [o.payment_hash for o in new],
        "statuses": [o.status.value for o in new],
        "htlc_states": [o.htlc_state.value for o in new],
        "created": [o.created_at_ms for o in new],
        "expires": [o.expires_at_ms for o in new],
        "redirects": [o.redirect_url for o in new],
        "metadata": [_metadata_json(o) for o in new],
    }


def merchant_and_order(
    tx: Tx, merchant_user_id: str, merchant_order_id: str
) -> tuple[tuple[Role, UserStatus] | None, Order | None]:
    """The merchant's (role, status), None if no such user, and its order of
    ``merchant_order_id``, if any: in one statement."""
    row = tx.one(
        f"SELECT u.role, u.status, {_O_COLUMNS} FROM users u LEFT JOIN orders o"
        " ON o.merchant_user_id = u.id AND o.merchant_order_id = :mo WHERE u.id = :m",
        {"m": merchant_user_id, "mo": merchant_order_id},
    )
    if row is None:
        return None, None
    user = (Role(row[0]), UserStatus(row[1]))
    return user, None if row[2] is None else _order(row[2:])


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
