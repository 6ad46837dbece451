"""The ledger in SQL: the rules of ``lngate.domain.ledger`` applied atomically in the database.

Balances change only through conditional UPDATEs whose WHERE clause states the rule, so two
writers (threads, processes, or hosts on PostgreSQL) can never both pass a balance check that
only one of them should: the database serialises the row, and the loser's UPDATE matches no row.
There is no read-then-write anywhere on this path. Call these inside ``Tx.savepoint()``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from lngate.domain.ledger import (
    AccountFlags,
    AccountKind,
    Balance,
    HoldState,
    TransferFlag,
    TransferResult,
    TransferSpec,
    check_spec_shape,
)
from lngate.domain.money import LEDGER_TOTAL_MAX_MSAT
from lngate.store.db import IntegrityError, Row, Tx


class _Refused(Exception):
    """Internal: unwinds the caller's savepoint with a named result."""

    def __init__(self, result: TransferResult) -> None:
        super().__init__(result.value)
        self.result = result


@dataclass(frozen=True, slots=True)
class Account:
    id: int
    code: str
    kind: AccountKind
    flags: AccountFlags
    balance: Balance


_ACCOUNT_COLUMNS = (
    "id, code, kind, flags, debits_pending, debits_posted, credits_pending, credits_posted"
)


def _account(row: Row) -> Account:
    return Account(
        id=int(row[0]),
        code=str(row[1]),
        kind=AccountKind(row[2]),
        flags=AccountFlags(row[3]),
        balance=Balance(*(int(v) for v in row[4:8])),
    )


def now_ms() -> int:
    return int(time.time() * 1000)


def create_account(tx: Tx, code: str, kind: AccountKind, flags: AccountFlags) -> int:
    tx.execute(
        "INSERT INTO accounts (code, kind, flags, created_at_ms) VALUES (:c, :k, :f, :t)",
        {"c": code, "k": kind.value, "f": int(flags), "t": now_ms()},
    )
    return int(tx.scalar("SELECT id FROM accounts WHERE code = :c", {"c": code}))


def ensure_account(tx: Tx, code: str, kind: AccountKind, flags: AccountFlags) -> int:
    existing = tx.scalar("SELECT id FROM accounts WHERE code = :c", {"c": code})
    if existing is not None:
        return int(existing)
    return create_account(tx, code, kind, flags)


def get_account(tx: Tx, account_id: int) -> Account | None:
    row = tx.one(f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE id = :id", {"id": account_id})
    return None if row is None else _account(row)


def get_account_by_code(tx: Tx, code: str) -> Account | None:
    row = tx.one(f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE code = :c", {"c": code})
    return None if row is None else _account(row)


def all_accounts(tx: Tx) -> list[Account]:
    return [_account(r) for r in tx.all(f"SELECT {_ACCOUNT_COLUMNS} FROM accounts ORDER BY id")]


def apply_transfer(tx: Tx, spec: TransferSpec) -> TransferResult:
    """Apply one transfer atomically (in its own savepoint); return its named result.

    A refused transfer changes nothing. A replay of an applied id returns EXISTS and moves
    nothing; the same id with other fields returns EXISTS_WITH_DIFFERENT_FIELDS.
    """
    existing = _existing(tx, spec)
    if existing is not None:
        return existing
    refused = check_spec_shape(spec)
    if refused is not None:
        return refused
    try:
        with tx.savepoint():
            if spec.flag in (TransferFlag.POST_PENDING, TransferFlag.VOID_PENDING):
                _resolve_hold(tx, spec)
            else:
                _move(tx, spec)
    except _Refused as refusal:
        return refusal.result
    except IntegrityError:
        # another process wrote the same id between our check and our insert
        return _existing(tx, spec) or TransferResult.EXISTS_WITH_DIFFERENT_FIELDS
    return TransferResult.OK


def _existing(tx: Tx, spec: TransferSpec) -> TransferResult | None:
    row = tx.one(
        "SELECT debit_account_id, credit_account_id, amount_msat, flag, pending_id "
        "FROM transfers WHERE id = :id",
        {"id": spec.id},
    )
    if row is None:
        return None
    stored = TransferSpec(
        id=spec.id,
        debit_account_id=int(row[0]),
        credit_account_id=int(row[1]),
        amount_msat=int(row[2]),
        flag=TransferFlag(row[3]),
        pending_id=row[4],
    )
    same = spec.same_request_as(stored)
    return TransferResult.EXISTS if same else TransferResult.EXISTS_WITH_DIFFERENT_FIELDS


def _insert(tx: Tx, spec: TransferSpec, debit_id: int, credit_id: int, amount_msat: int) -> None:
    hold_state = HoldState.PENDING.value if spec.flag is TransferFlag.PENDING else None
    tx.execute(
        "INSERT INTO transfers (id, debit_account_id, credit_account_id, amount_msat, flag, "
        "pending_id, hold_state, kind, memo, created_at_ms) "
        "VALUES (:id, :d, :c, :a, :f, :p, :h, :k, :m, :t)",
        {
            "id": spec.id,
            "d": debit_id,
            "c": credit_id,
            "a": amount_msat,
            "f": spec.flag.value,
            "p": spec.pending_id,
            "h": hold_state,
            "k": spec.kind,
            "m": spec.memo,
            "t": now_ms(),
        },
    )


def _move(tx: Tx, spec: TransferSpec) -> None:
    pending = spec.flag is TransferFlag.PENDING
    debit_col = "debits_pending" if pending else "debits_posted"
    credit_col = "credits_pending" if pending else "credits_posted"
    params = {"a": spec.amount_msat, "max": LEDGER_TOTAL_MAX_MSAT}
    # The no-overdraft rule and the overflow bound, checked and applied in one statement.
    debited = tx.execute(
        f"UPDATE accounts SET {debit_col} = {debit_col} + :a "
        "WHERE id = :id "
        "AND ((flags & 1) = 0 OR debits_posted + debits_pending + :a <= credits_posted) "
        "AND debits_posted + debits_pending + :a <= :max",
        {**params, "id": spec.debit_account_id},
    )
    if debited != 1:
        raise _Refused(_why_debit_failed(tx, spec))
    credited = tx.execute(
        f"UPDATE accounts SET {credit_col} = {credit_col} + :a "
        "WHERE id = :id AND credits_posted + credits_pending + :a <= :max",
        {**params, "id": spec.credit_account_id},
    )
    if credited != 1:
        exists = tx.scalar("SELECT 1 FROM accounts WHERE id = :id", {"id": spec.credit_account_id})
        raise _Refused(
            TransferResult.OVERFLOWS if exists else TransferResult.CREDIT_ACCOUNT_NOT_FOUND
        )
    _insert(tx, spec, spec.debit_account_id, spec.credit_account_id, spec.amount_msat)


def _why_debit_failed(tx: Tx, spec: TransferSpec) -> TransferResult:
    """Only called after the conditional update refused: names the reason, decides nothing."""
    row = tx.one(
        "SELECT flags, debits_posted + debits_pending + :a <= credits_posted "
        "FROM accounts WHERE id = :id",
        {"id": spec.debit_account_id, "a": spec.amount_msat},
    )
    if row is None:
        return TransferResult.DEBIT_ACCOUNT_NOT_FOUND
    if int(row[0]) & AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS and not row[1]:
        return TransferResult.EXCEEDS_CREDITS
    return TransferResult.OVERFLOWS


def _already_resolved(state: HoldState) -> TransferResult:
    if state is HoldState.POSTED:
        return TransferResult.PENDING_TRANSFER_ALREADY_POSTED
    return TransferResult.PENDING_TRANSFER_ALREADY_VOIDED


def _resolve_hold(tx: Tx, spec: TransferSpec) -> None:
    row = tx.one(
        "SELECT debit_account_id, credit_account_id, amount_msat, hold_state "
        "FROM transfers WHERE id = :p AND flag = :f",
        {"p": spec.pending_id, "f": TransferFlag.PENDING.value},
    )
    if row is None:
        raise _Refused(TransferResult.PENDING_TRANSFER_NOT_FOUND)
    debit_id, credit_id, held_msat = int(row[0]), int(row[1]), int(row[2])
    if row[3] != HoldState.PENDING.value:
        raise _Refused(_already_resolved(HoldState(row[3])))
    posting = spec.flag is TransferFlag.POST_PENDING
    if posting and spec.amount_msat > held_msat:
        raise _Refused(TransferResult.EXCEEDS_PENDING_TRANSFER_AMOUNT)
    new_state = HoldState.POSTED if posting else HoldState.VOIDED
    # Exactly once: only the writer that moves the hold out of 'pending' may touch balances.
    claimed = tx.execute(
        "UPDATE transfers SET hold_state = :s WHERE id = :p AND hold_state = :pending",
        {"s": new_state.value, "p": spec.pending_id, "pending": HoldState.PENDING.value},
    )
    if claimed != 1:  # another writer resolved it between our read and our claim
        state = tx.scalar("SELECT hold_state FROM transfers WHERE id = :p", {"p": spec.pending_id})
        raise _Refused(_already_resolved(HoldState(state)))
    posted_msat = spec.amount_msat if posting else 0
    params = {"held": held_msat, "posted": posted_msat}
    tx.execute(
        "UPDATE accounts SET debits_pending = debits_pending - :held, "
        "debits_posted = debits_posted + :posted WHERE id = :id",
        {**params, "id": debit_id},
    )
    tx.execute(
        "UPDATE accounts SET credits_pending = credits_pending - :held, "
        "credits_posted = credits_posted + :posted WHERE id = :id",
        {**params, "id": credit_id},
    )
    _insert(tx, spec, debit_id, credit_id, posted_msat)
