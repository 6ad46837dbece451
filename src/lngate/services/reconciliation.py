"""Ledger invariants, checked from the stored transfers up (nothing is taken on trust)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lngate.domain.ledger import AccountFlags, HoldState, TransferFlag
from lngate.store.db import Tx


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True, slots=True)
class LedgerReport:
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in self.checks],
        }


def check_ledger(tx: Tx) -> LedgerReport:
    return LedgerReport(
        (
            _debits_equal_credits(tx),
            _no_negative_liability(tx),
            _balances_match_transfers(tx),
            _holds_resolved_once(tx),
        )
    )


def _debits_equal_credits(tx: Tx) -> Check:
    row = tx.one(
        "SELECT COALESCE(SUM(debits_posted), 0), COALESCE(SUM(credits_posted), 0), "
        "COALESCE(SUM(debits_pending), 0), COALESCE(SUM(credits_pending), 0) FROM accounts"
    )
    assert row is not None
    dp, cp, dpe, cpe = (int(v) for v in row)
    ok = dp == cp and dpe == cpe
    return Check(
        "debits_equal_credits",
        ok,
        f"posted: debits {dp} = credits {cp}; pending: debits {dpe} = credits {cpe}"
        if ok
        else f"posted debits {dp} vs credits {cp}; pending debits {dpe} vs credits {cpe}",
    )


def _no_negative_liability(tx: Tx) -> Check:
    rows = tx.all(
        "SELECT code, credits_posted - debits_posted - debits_pending FROM accounts "
        "WHERE (flags & :f) <> 0 AND credits_posted - debits_posted - debits_pending < 0",
        {"f": int(AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS)},
    )
    detail = "no liability account is overdrawn" if not rows else f"overdrawn: {rows[:10]}"
    return Check("no_negative_balance", not rows, detail)


def _balances_match_transfers(tx: Tx) -> Check:
    """Every account's four balances equal the sums of the transfers that touch it."""
    posted = (TransferFlag.SINGLE_PHASE.value, TransferFlag.POST_PENDING.value)
    rows = tx.all(
        "SELECT a.code, a.debits_posted, a.credits_posted, a.debits_pending, a.credits_pending, "
        "COALESCE((SELECT SUM(amount_msat) FROM transfers t WHERE t.debit_account_id = a.id "
        "  AND t.flag IN (:s, :p)), 0), "
        "COALESCE((SELECT SUM(amount_msat) FROM transfers t WHERE t.credit_account_id = a.id "
        "  AND t.flag IN (:s, :p)), 0), "
        "COALESCE((SELECT SUM(amount_msat) FROM transfers t WHERE t.debit_account_id = a.id "
        "  AND t.flag = :h AND t.hold_state = :pending), 0), "
        "COALESCE((SELECT SUM(amount_msat) FROM transfers t WHERE t.credit_account_id = a.id "
        "  AND t.flag = :h AND t.hold_state = :pending), 0) "
        "FROM accounts a",
        {
            "s": posted[0],
            "p": posted[1],
            "h": TransferFlag.PENDING.value,
            "pending": HoldState.PENDING.value,
        },
    )
    bad = [r[0] for r in rows if tuple(int(v) for v in r[1:5]) != tuple(int(v) for v in r[5:9])]
    detail = (
        f"{len(rows)} accounts match their transfers"
        if not bad
        else f"accounts whose balances differ from their transfers: {bad[:10]}"
    )
    return Check("balances_match_transfers", not bad, detail)


def _holds_resolved_once(tx: Tx) -> Check:
    rows = tx.all(
        "SELECT h.id, h.hold_state, COUNT(r.id) FROM transfers h "
        "LEFT JOIN transfers r ON r.pending_id = h.id AND r.flag IN (:post, :void) "
        "WHERE h.flag = :pending GROUP BY h.id, h.hold_state",
        {
            "post": TransferFlag.POST_PENDING.value,
            "void": TransferFlag.VOID_PENDING.value,
            "pending": TransferFlag.PENDING.value,
        },
    )
    bad = [
        r[0] for r in rows if int(r[2]) > 1 or (r[1] == HoldState.PENDING.value) != (int(r[2]) == 0)
    ]
    detail = (
        f"{len(rows)} holds, each posted or voided at most once"
        if not bad
        else f"holds resolved more than once or inconsistently: {bad[:10]}"
    )
    return Check("holds_consistent", not bad, detail)
