"""Withdrawal records. Every status change is a conditional update from the expected status,
so two workers (or a worker and an operator) can never both move the same withdrawal."""

from __future__ import annotations

from dataclasses import dataclass

from lngate.domain.errors import InvariantBroken
from lngate.domain.withdrawals import ACTIVE, WithdrawalStatus
from lngate.store.db import Dialect, Row, Tx
from lngate.store.ledger import now_ms
from lngate.store.users import UserStatus


@dataclass(frozen=True, slots=True)
class Withdrawal:
    seq: int
    id: str
    user_id: str
    bolt11: str
    payment_hash: str  # hex
    payee: str
    destination: str | None
    amount_msat: int
    exchange_fee_msat: int
    fee_reserve_msat: int
    routing_fee_msat: int | None
    preimage: str | None
    status: WithdrawalStatus
    internal: bool
    note: str
    attempts: int
    created_at_ms: int
    updated_at_ms: int
    sent_at_ms: int | None
    finished_at_ms: int | None

    @property
    def hold_id(self) -> str:
        return f"withdrawal:{self.id}:hold"

    @property
    def fee_hold_id(self) -> str:
        return f"withdrawal:{self.id}:fee"


_COLUMNS = (
    "seq, id, user_id, bolt11, payment_hash, payee, destination, amount_msat, exchange_fee_msat, "
    "fee_reserve_msat, routing_fee_msat, preimage, status, internal, note, attempts, "
    "created_at_ms, updated_at_ms, sent_at_ms, finished_at_ms"
)


def _opt_int(v: object) -> int | None:
    return None if v is None else int(v)  # type: ignore[call-overload]


def _withdrawal(r: Row) -> Withdrawal:
    return Withdrawal(
        int(r[0]),
        str(r[1]),
        str(r[2]),
        str(r[3]),
        str(r[4]),
        str(r[5]),
        r[6],
        int(r[7]),
        int(r[8]),
        int(r[9]),
        _opt_int(r[10]),
        r[11],
        WithdrawalStatus(r[12]),
        bool(r[13]),
        str(r[14]),
        int(r[15]),
        int(r[16]),
        int(r[17]),
        _opt_int(r[18]),
        _opt_int(r[19]),
    )


def insert(tx: Tx, w: Withdrawal) -> None:
    tx.execute(
        "INSERT INTO withdrawals (id, user_id, bolt11, payment_hash, payee, destination, "
        "amount_msat, exchange_fee_msat, fee_reserve_msat, status, internal, note, "
        "created_at_ms, updated_at_ms) VALUES (:id, :u, :b, :h, :p, :d, :a, :f, :r, :s, :i, :n, "
        ":t, :t)",
        {
            "id": w.id,
            "u": w.user_id,
            "b": w.bolt11,
            "h": w.payment_hash,
            "p": w.payee,
            "d": w.destination,
            "a": w.amount_msat,
            "f": w.exchange_fee_msat,
            "r": w.fee_reserve_msat,
            "s": w.status.value,
            "i": int(w.internal),
            "n": w.note,
            "t": w.created_at_ms,
        },
    )


def by_id(tx: Tx, withdrawal_id: str) -> Withdrawal | None:
    row = tx.one(f"SELECT {_COLUMNS} FROM withdrawals WHERE id = :id", {"id": withdrawal_id})
    return None if row is None else _withdrawal(row)


def active_with_hash(tx: Tx, payment_hash_hex: str) -> Withdrawal | None:
    row = tx.one(
        f"SELECT {_COLUMNS} FROM withdrawals WHERE payment_hash = :h "
        "AND status NOT IN ('failed', 'rejected')",
        {"h": payment_hash_hex},
    )
    return None if row is None else _withdrawal(row)


def page_for_user(tx: Tx, user_id: str, *, before_seq: int | None, limit: int) -> list[Withdrawal]:
    rows = tx.all(
        f"SELECT {_COLUMNS} FROM withdrawals WHERE user_id = :u AND seq < :b "
        "ORDER BY seq DESC LIMIT :l",
        {"u": user_id, "b": before_seq if before_seq is not None else 2**62, "l": limit},
    )
    return [_withdrawal(r) for r in rows]


def with_status(
    tx: Tx, status: WithdrawalStatus, limit: int, *, skip_locked: bool = False
) -> list[Withdrawal]:
    """Oldest first. On PostgreSQL ``skip_locked`` lets several workers pick disjoint rows."""
    lock = " FOR UPDATE SKIP LOCKED" if skip_locked and tx.dialect is Dialect.POSTGRES else ""
    rows = tx.all(
        f"SELECT {_COLUMNS} FROM withdrawals WHERE status = :s ORDER BY seq LIMIT :l{lock}",
        {"s": status.value, "l": limit},
    )
    return [_withdrawal(r) for r in rows]


def claimable(tx: Tx, *, per_user_max: int, limit: int) -> list[Withdrawal]:
    """The approved withdrawals the payment worker may claim now, fairly: of each user only the
    oldest ones they may still put in flight (``per_user_max`` less what is sending), none of a
    frozen user; oldest first across users. One user's long queue never hides anyone else's,
    and a user's later withdrawal is never offered before an earlier one."""
    columns = ", ".join(f"q.{c.strip()}" for c in _COLUMNS.split(","))
    rows = tx.all(
        f"WITH q AS (SELECT {_COLUMNS}, ROW_NUMBER() OVER (PARTITION BY user_id ORDER BY seq) "
        "AS place FROM withdrawals WHERE status = :approved), "
        "flying AS (SELECT user_id, COUNT(*) AS n FROM withdrawals WHERE status = :sending "
        "GROUP BY user_id) "
        f"SELECT {columns} FROM q JOIN users u ON u.id = q.user_id "
        "LEFT JOIN flying f ON f.user_id = q.user_id "
        "WHERE u.status <> :frozen AND q.place + COALESCE(f.n, 0) <= :cap "
        "ORDER BY q.seq LIMIT :l",
        {
            "approved": WithdrawalStatus.APPROVED.value,
            "sending": WithdrawalStatus.SENDING.value,
            "frozen": UserStatus.FROZEN.value,
            "cap": per_user_max,
            "l": limit,
        },
    )
    return [_withdrawal(r) for r in rows]


def earlier_approved(tx: Tx, user_id: str, seq: int) -> bool:
    """Whether the user has an approved withdrawal older than ``seq`` (it goes first)."""
    return (
        tx.scalar(
            "SELECT 1 FROM withdrawals WHERE user_id = :u AND status = :s AND seq < :q LIMIT 1",
            {"u": user_id, "s": WithdrawalStatus.APPROVED.value, "q": seq},
        )
        is not None
    )


def move(
    tx: Tx,
    withdrawal_id: str,
    from_status: WithdrawalStatus,
    to_status: WithdrawalStatus,
    *,
    note: str | None = None,
) -> bool:
    """Change status only if it is still ``from_status``; True if this call changed it."""
    t = now_ms()
    extra = ""
    if to_status is WithdrawalStatus.SENDING:
        extra = ", sent_at_ms = :t, attempts = attempts + 1"
    return (
        tx.execute(
            "UPDATE withdrawals SET status = :to, updated_at_ms = :t, "
            f"note = COALESCE(:n, note){extra} WHERE id = :id AND status = :from",
            {
                "to": to_status.value,
                "from": from_status.value,
                "t": t,
                "n": note,
                "id": withdrawal_id,
            },
        )
        == 1
    )


def finish(
    tx: Tx,
    withdrawal_id: str,
    to_status: WithdrawalStatus,
    *,
    routing_fee_msat: int | None,
    preimage_hex: str | None,
    note: str,
    attempt: int | None = None,
) -> bool:
    """sending -> succeeded | failed, exactly once. A failure names the ``attempt`` it is about:
    it only counts while that is still the latest attempt (a newer one may yet succeed)."""
    if to_status not in (WithdrawalStatus.SUCCEEDED, WithdrawalStatus.FAILED):
        raise InvariantBroken(f"a withdrawal cannot finish as {to_status}")
    if to_status is WithdrawalStatus.FAILED and attempt is None:
        raise InvariantBroken("a failure must name the attempt it is about")
    t = now_ms()
    latest = "" if attempt is None else " AND attempts = :attempt"
    return (
        tx.execute(
            "UPDATE withdrawals SET status = :to, routing_fee_msat = :f, preimage = :p, note = :n, "
            "updated_at_ms = :t, finished_at_ms = :t WHERE id = :id AND status = :sending" + latest,
            {
                "attempt": attempt,
                "to": to_status.value,
                "f": routing_fee_msat,
                "p": preimage_hex,
                "n": note,
                "t": t,
                "id": withdrawal_id,
                "sending": WithdrawalStatus.SENDING.value,
            },
        )
        == 1
    )


def set_note(tx: Tx, withdrawal_id: str, note: str) -> None:
    tx.execute("UPDATE withdrawals SET note = :n WHERE id = :id", {"n": note, "id": withdrawal_id})


def note_approved(tx: Tx, user_id: str, note: str) -> None:
    """Tell the user why all their approved withdrawals wait."""
    tx.execute(
        "UPDATE withdrawals SET note = :n WHERE user_id = :u AND status = :s AND note <> :n",
        {"n": note, "u": user_id, "s": WithdrawalStatus.APPROVED.value},
    )


def sum_since(tx: Tx, since_ms: int, user_id: str | None = None) -> int:
    """Total of active withdrawals created since ``since_ms``: one user's, internal ones
    included (the 24 h limit is the user's, wherever the money goes), or everyone's that leave
    the node (the exchange's velocity limit is about the hot wallet)."""
    statuses = ", ".join(f"'{s.value}'" for s in sorted(ACTIVE))
    where = f"created_at_ms >= :since AND status IN ({statuses})"
    params: dict[str, object] = {"since": since_ms}
    if user_id is not None:
        where += " AND user_id = :u"
        params["u"] = user_id
    else:
        where += " AND internal = 0"
    return int(
        tx.scalar(f"SELECT COALESCE(SUM(amount_msat), 0) FROM withdrawals WHERE {where}", params)
    )


def sending_totals(tx: Tx, user_id: str) -> tuple[int, int]:
    """(count, total msat) of the user's withdrawals in flight."""
    row = tx.one(
        "SELECT COUNT(*), COALESCE(SUM(amount_msat), 0) FROM withdrawals "
        "WHERE user_id = :u AND status = :s",
        {"u": user_id, "s": WithdrawalStatus.SENDING.value},
    )
    assert row is not None
    return int(row[0]), int(row[1])


def take_lock(tx: Tx, name: str) -> None:
    """Serialise a check-then-write across processes: a no-op update takes the row lock on
    PostgreSQL (SQLite's write transaction already excludes every other writer)."""
    taken = tx.execute("UPDATE locks SET taken = taken + 1 WHERE name = :n", {"n": name})
    if taken != 1:
        raise InvariantBroken(f"lock row {name!r} is missing")


def next_attempt(tx: Tx, withdrawal_id: str, seen_attempts: int) -> bool:
    """Claim the right to send again: only one worker wins each attempt number, so two workers
    that both found the payment unknown to the node never both send it."""
    return (
        tx.execute(
            "UPDATE withdrawals SET attempts = attempts + 1, updated_at_ms = :t "
            "WHERE id = :id AND status = :sending AND attempts = :seen",
            {
                "t": now_ms(),
                "id": withdrawal_id,
                "sending": WithdrawalStatus.SENDING.value,
                "seen": seen_attempts,
            },
        )
        == 1
    )


def count_by_status(tx: Tx) -> dict[str, int]:
    rows = tx.all("SELECT status, COUNT(*) FROM withdrawals GROUP BY status")
    return {str(s): int(n) for s, n in rows}
