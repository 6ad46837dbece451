"""Deposit records: one invoice of our node per deposit, keyed by payment hash."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from lngate.domain.errors import InvariantBroken
from lngate.store.db import Row, Tx
from lngate.store.ledger import now_ms


class DepositStatus(enum.StrEnum):
    OPEN = "open"
    SETTLED = "settled"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class Deposit:
    id: str
    user_id: str
    payment_hash: str  # hex
    bolt11: str
    payee: str
    amount_msat: int | None
    amount_paid_msat: int | None
    memo: str
    source: str
    status: DepositStatus
    created_at_ms: int
    expires_at_ms: int
    settled_at_ms: int | None
    reserved_by: str | None = None  # the internal withdrawal paying it, while one does


_COLUMNS = (
    "id, user_id, payment_hash, bolt11, payee, amount_msat, amount_paid_msat, memo, source, "
    "status, created_at_ms, expires_at_ms, settled_at_ms, reserved_by"
)


def _deposit(r: Row) -> Deposit:
    return Deposit(
        str(r[0]),
        str(r[1]),
        str(r[2]),
        str(r[3]),
        str(r[4]),
        None if r[5] is None else int(r[5]),
        None if r[6] is None else int(r[6]),
        str(r[7]),
        str(r[8]),
        DepositStatus(r[9]),
        int(r[10]),
        int(r[11]),
        None if r[12] is None else int(r[12]),
        None if r[13] is None else str(r[13]),
    )


def insert(tx: Tx, d: Deposit) -> None:
    tx.execute(
        f"INSERT INTO deposits ({_COLUMNS}) VALUES "
        "(:id, :u, :h, :b, :p, :a, NULL, :m, :s, :st, :c, :e, NULL, NULL)",
        {
            "id": d.id,
            "u": d.user_id,
            "h": d.payment_hash,
            "b": d.bolt11,
            "p": d.payee,
            "a": d.amount_msat,
            "m": d.memo,
            "s": d.source,
            "st": d.status.value,
            "c": d.created_at_ms,
            "e": d.expires_at_ms,
        },
    )


def by_id(tx: Tx, deposit_id: str) -> Deposit | None:
    row = tx.one(f"SELECT {_COLUMNS} FROM deposits WHERE id = :id", {"id": deposit_id})
    return None if row is None else _deposit(row)


def by_hash(tx: Tx, payment_hash_hex: str) -> Deposit | None:
    row = tx.one(
        f"SELECT {_COLUMNS} FROM deposits WHERE payment_hash = :h", {"h": payment_hash_hex}
    )
    return None if row is None else _deposit(row)


def page_for_user(
    tx: Tx, user_id: str, *, before_seq: int | None, limit: int
) -> list[tuple[int, Deposit]]:
    """(seq, deposit) pairs, newest first; seq is the paging cursor."""
    rows = tx.all(
        f"SELECT seq, {_COLUMNS} FROM deposits WHERE user_id = :u AND seq < :b "
        "ORDER BY seq DESC LIMIT :l",
        {"u": user_id, "b": before_seq if before_seq is not None else 2**62, "l": limit},
    )
    return [(int(r[0]), _deposit(r[1:])) for r in rows]


def open_past_expiry(tx: Tx, cutoff_ms: int, limit: int) -> list[Deposit]:
    """Open deposits past expiry that nobody else owns: a deposit reserved by an internal
    withdrawal is closed by that withdrawal's settlement, not by the expiry poll."""
    rows = tx.all(
        f"SELECT {_COLUMNS} FROM deposits WHERE status = :s AND expires_at_ms < :c "
        "AND reserved_by IS NULL ORDER BY expires_at_ms LIMIT :l",
        {"s": DepositStatus.OPEN.value, "c": cutoff_ms, "l": limit},
    )
    return [_deposit(r) for r in rows]


def mark_settled(tx: Tx, payment_hash_hex: str, amount_paid_msat: int) -> bool:
    """Exactly once: only a deposit that is not yet settled moves to settled."""
    return (
        tx.execute(
            "UPDATE deposits SET status = :settled, amount_paid_msat = :a, settled_at_ms = :t "
            "WHERE payment_hash = :h AND status IN (:open, :expired)",
            {
                "settled": DepositStatus.SETTLED.value,
                "a": amount_paid_msat,
                "t": now_ms(),
                "h": payment_hash_hex,
                "open": DepositStatus.OPEN.value,
                "expired": DepositStatus.EXPIRED.value,
            },
        )
        == 1
    )


def mark_closed(
    tx: Tx, payment_hash_hex: str, status: DepositStatus, *, reserved_by: str | None = None
) -> bool:
    """open -> expired | cancelled. A reserved deposit is closed only by the withdrawal that
    reserved it (``reserved_by``); everyone else (the watcher, the poll) leaves it alone."""
    if status not in (DepositStatus.EXPIRED, DepositStatus.CANCELLED):
        raise InvariantBroken(f"an open deposit cannot close as {status}")
    owner = "reserved_by IS NULL" if reserved_by is None else "reserved_by = :r"
    return (
        tx.execute(
            f"UPDATE deposits SET status = :s WHERE payment_hash = :h AND status = :open "
            f"AND {owner}",
            {
                "s": status.value,
                "h": payment_hash_hex,
                "open": DepositStatus.OPEN.value,
                "r": reserved_by,
            },
        )
        == 1
    )


def reserve(tx: Tx, payment_hash_hex: str, withdrawal_id: str) -> bool:
    """An internal withdrawal takes the open deposit it pays; False if it is not open or is
    already taken (two payers of one invoice: one wins)."""
    return (
        tx.execute(
            "UPDATE deposits SET reserved_by = :w WHERE payment_hash = :h AND status = :open "
            "AND reserved_by IS NULL",
            {"w": withdrawal_id, "h": payment_hash_hex, "open": DepositStatus.OPEN.value},
        )
        == 1
    )


def release(tx: Tx, payment_hash_hex: str, withdrawal_id: str) -> None:
    """The withdrawal gave up the deposit (rejected, failed): it is an ordinary deposit again."""
    tx.execute(
        "UPDATE deposits SET reserved_by = NULL WHERE payment_hash = :h AND reserved_by = :w",
        {"h": payment_hash_hex, "w": withdrawal_id},
    )


def settle_reserved(tx: Tx, payment_hash_hex: str, withdrawal_id: str, amount_msat: int) -> bool:
    """open -> settled by the internal withdrawal that reserved it, exactly once; never a
    deposit that is no longer open."""
    return (
        tx.execute(
            "UPDATE deposits SET status = :settled, amount_paid_msat = :a, settled_at_ms = :t "
            "WHERE payment_hash = :h AND status = :open AND reserved_by = :w",
            {
                "settled": DepositStatus.SETTLED.value,
                "a": amount_msat,
                "t": now_ms(),
                "h": payment_hash_hex,
                "open": DepositStatus.OPEN.value,
                "w": withdrawal_id,
            },
        )
        == 1
    )


def record_unmatched(
    tx: Tx, payment_hash_hex: str, amount_paid_msat: int, settle_index: int
) -> None:
    exists = tx.scalar(
        "SELECT 1 FROM unmatched_payments WHERE payment_hash = :h", {"h": payment_hash_hex}
    )
    if not exists:
        tx.execute(
            "INSERT INTO unmatched_payments (payment_hash, amount_paid_msat, settle_index, "
            "seen_at_ms) VALUES (:h, :a, :i, :t)",
            {"h": payment_hash_hex, "a": amount_paid_msat, "i": settle_index, "t": now_ms()},
        )


def cursor(tx: Tx, name: str) -> int:
    return int(tx.scalar("SELECT value FROM worker_cursors WHERE name = :n", {"n": name}) or 0)


def advance_cursor(tx: Tx, name: str, value: int) -> None:
    """Move a cursor forward only (a replayed, older position never moves it back)."""
    changed = tx.execute(
        "UPDATE worker_cursors SET value = CASE WHEN value < :v THEN :v ELSE value END "
        "WHERE name = :n",
        {"n": name, "v": value},
    )
    if changed == 0:
        tx.execute(
            "INSERT INTO worker_cursors (name, value) VALUES (:n, :v)", {"n": name, "v": value}
        )


def count_by_status(tx: Tx) -> dict[str, int]:
    return {
        str(s): int(n) for s, n in tx.all("SELECT status, COUNT(*) FROM deposits GROUP BY status")
    }
