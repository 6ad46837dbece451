"""The ledger model, after TigerBeetle: accounts with pending and posted debits and credits,
transfers with a unique id, and two-phase transfers (holds) that are posted or voided once.

This module is pure. ``lngate.store.ledger`` applies the same rules atomically in SQL; the
``ReferenceLedger`` here is the executable specification that property tests hold it to.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace

from lngate.domain.money import LEDGER_TOTAL_MAX_MSAT, MAX_AMOUNT_MSAT


class AccountKind(enum.StrEnum):
    USER = "user"
    MERCHANT = "merchant"
    NODE = "node"  # asset: what the Lightning node holds for us
    COLD = "cold"  # asset: pre-generated cold addresses
    FEE_REVENUE = "fee_revenue"
    ROUTING_FEE_EXPENSE = "routing_fee_expense"
    ONCHAIN_FEE_EXPENSE = "onchain_fee_expense"
    ADJUSTMENTS = "adjustments"  # operator corrections (equity)


class AccountFlags(enum.IntFlag):
    NONE = 0
    # A liability to a customer: what they spend or hold can never exceed what they were given.
    DEBITS_MUST_NOT_EXCEED_CREDITS = 1


# The single system account of each kind has a fixed code.
SYSTEM_ACCOUNT_CODES: dict[AccountKind, str] = {
    AccountKind.NODE: "system:node",
    AccountKind.COLD: "system:cold",
    AccountKind.FEE_REVENUE: "system:fee_revenue",
    AccountKind.ROUTING_FEE_EXPENSE: "system:routing_fee_expense",
    AccountKind.ONCHAIN_FEE_EXPENSE: "system:onchain_fee_expense",
    AccountKind.ADJUSTMENTS: "system:adjustments",
}

LIABILITY_KINDS = frozenset({AccountKind.USER, AccountKind.MERCHANT})


class TransferResult(enum.StrEnum):
    """Every outcome of a ledger write has a name (TigerBeetle's CreateTransferResult)."""

    OK = "ok"
    EXISTS = "exists"  # the same transfer was already written: nothing moved again
    EXISTS_WITH_DIFFERENT_FIELDS = "exists_with_different_fields"
    ACCOUNTS_MUST_BE_DIFFERENT = "accounts_must_be_different"
    AMOUNT_MUST_BE_POSITIVE = "amount_must_be_positive"
    AMOUNT_TOO_LARGE = "amount_too_large"
    DEBIT_ACCOUNT_NOT_FOUND = "debit_account_not_found"
    CREDIT_ACCOUNT_NOT_FOUND = "credit_account_not_found"
    EXCEEDS_CREDITS = "exceeds_credits"
    OVERFLOWS = "overflows"
    PENDING_TRANSFER_NOT_FOUND = "pending_transfer_not_found"
    PENDING_TRANSFER_ALREADY_POSTED = "pending_transfer_already_posted"
    PENDING_TRANSFER_ALREADY_VOIDED = "pending_transfer_already_voided"
    EXCEEDS_PENDING_TRANSFER_AMOUNT = "exceeds_pending_transfer_amount"


class HoldState(enum.StrEnum):
    PENDING = "pending"
    POSTED = "posted"
    VOIDED = "voided"


class TransferFlag(enum.StrEnum):
    SINGLE_PHASE = "single"  # posted at once
    PENDING = "pending"  # a hold
    POST_PENDING = "post"
    VOID_PENDING = "void"


@dataclass(frozen=True, slots=True)
class Balance:
    debits_pending_msat: int = 0
    debits_posted_msat: int = 0
    credits_pending_msat: int = 0
    credits_posted_msat: int = 0

    @property
    def available_msat(self) -> int:
        """What a liability account's owner can spend now: posted credits less everything
        debited or held."""
        return self.credits_posted_msat - self.debits_posted_msat - self.debits_pending_msat

    @property
    def net_posted_credit_msat(self) -> int:
        return self.credits_posted_msat - self.debits_posted_msat


@dataclass(frozen=True, slots=True)
class TransferSpec:
    """What a caller asks the ledger to do. ``id`` is the idempotency key."""

    id: str
    debit_account_id: int
    credit_account_id: int
    amount_msat: int
    flag: TransferFlag = TransferFlag.SINGLE_PHASE
    pending_id: str | None = None  # for POST_PENDING / VOID_PENDING
    kind: str = "transfer"
    memo: str = ""

    def same_request_as(self, other: TransferSpec) -> bool:
        """Whether a replay with this id asks for the same thing. Posts and voids take their
        accounts from the hold, so only the hold and (for a post) the amount identify them."""
        if self.flag is TransferFlag.VOID_PENDING or other.flag is TransferFlag.VOID_PENDING:
            return self.flag is other.flag and self.pending_id == other.pending_id
        if self.flag is TransferFlag.POST_PENDING or other.flag is TransferFlag.POST_PENDING:
            return (
                self.flag is other.flag
                and self.pending_id == other.pending_id
                and self.amount_msat == other.amount_msat
            )
        return (
            self.debit_account_id == other.debit_account_id
            and self.credit_account_id == other.credit_account_id
            and self.amount_msat == other.amount_msat
            and self.flag == other.flag
            and self.pending_id == other.pending_id
        )


def check_spec_shape(spec: TransferSpec) -> TransferResult | None:
    """Rules that need no account state; None when the spec is well formed."""
    if spec.flag is TransferFlag.VOID_PENDING:
        return None  # a void moves the held amount back; its own amount is informational
    if spec.amount_msat <= 0:
        return TransferResult.AMOUNT_MUST_BE_POSITIVE
    if spec.amount_msat > MAX_AMOUNT_MSAT:
        return TransferResult.AMOUNT_TOO_LARGE
    if spec.flag in (TransferFlag.SINGLE_PHASE, TransferFlag.PENDING) and (
        spec.debit_account_id == spec.credit_account_id
    ):
        return TransferResult.ACCOUNTS_MUST_BE_DIFFERENT
    return None


@dataclass
class _RefAccount:
    flags: AccountFlags
    balance: Balance = field(default_factory=Balance)


@dataclass
class _RefHold:
    spec: TransferSpec
    state: HoldState = HoldState.PENDING


class ReferenceLedger:
    """An in-memory ledger: the specification the SQL ledger must match, step for step."""

    def __init__(self) -> None:
        self.accounts: dict[int, _RefAccount] = {}
        self.transfers: dict[str, TransferSpec] = {}
        self.holds: dict[str, _RefHold] = {}

    def open_account(self, account_id: int, flags: AccountFlags) -> None:
        self.accounts[account_id] = _RefAccount(flags)

    def balance(self, account_id: int) -> Balance:
        return self.accounts[account_id].balance

    def apply(self, spec: TransferSpec) -> TransferResult:
        if spec.id in self.transfers:
            same = spec.same_request_as(self.transfers[spec.id])
            return TransferResult.EXISTS if same else TransferResult.EXISTS_WITH_DIFFERENT_FIELDS
        refused = check_spec_shape(spec)
        if refused is not None:
            return refused
        if spec.flag in (TransferFlag.POST_PENDING, TransferFlag.VOID_PENDING):
            result = self._resolve_hold(spec)
        else:
            result = self._move(spec)
        if result is TransferResult.OK:
            self.transfers[spec.id] = spec
        return result

    def _move(self, spec: TransferSpec) -> TransferResult:
        debit = self.accounts.get(spec.debit_account_id)
        if debit is None:
            return TransferResult.DEBIT_ACCOUNT_NOT_FOUND
        credit = self.accounts.get(spec.credit_account_id)
        if credit is None:
            return TransferResult.CREDIT_ACCOUNT_NOT_FOUND
        amount = spec.amount_msat
        d, c = debit.balance, credit.balance
        if (
            debit.flags & AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
            and d.debits_posted_msat + d.debits_pending_msat + amount > d.credits_posted_msat
        ):
            return TransferResult.EXCEEDS_CREDITS
        pending = spec.flag is TransferFlag.PENDING
        d_total = d.debits_posted_msat + d.debits_pending_msat + amount
        c_total = c.credits_posted_msat + c.credits_pending_msat + amount
        if d_total > LEDGER_TOTAL_MAX_MSAT or c_total > LEDGER_TOTAL_MAX_MSAT:
            return TransferResult.OVERFLOWS
        if pending:
            debit.balance = replace(d, debits_pending_msat=d.debits_pending_msat + amount)
            credit.balance = replace(c, credits_pending_msat=c.credits_pending_msat + amount)
            self.holds[spec.id] = _RefHold(spec)
        else:
            debit.balance = replace(d, debits_posted_msat=d.debits_posted_msat + amount)
            credit.balance = replace(c, credits_posted_msat=c.credits_posted_msat + amount)
        return TransferResult.OK

    def _resolve_hold(self, spec: TransferSpec) -> TransferResult:
        hold = self.holds.get(spec.pending_id or "")
        if hold is None:
            return TransferResult.PENDING_TRANSFER_NOT_FOUND
        if hold.state is HoldState.POSTED:
            return TransferResult.PENDING_TRANSFER_ALREADY_POSTED
        if hold.state is HoldState.VOIDED:
            return TransferResult.PENDING_TRANSFER_ALREADY_VOIDED
        held = hold.spec.amount_msat
        posting = spec.flag is TransferFlag.POST_PENDING
        if posting and spec.amount_msat > held:
            return TransferResult.EXCEEDS_PENDING_TRANSFER_AMOUNT
        posted = spec.amount_msat if posting else 0
        debit = self.accounts[hold.spec.debit_account_id]
        credit = self.accounts[hold.spec.credit_account_id]
        d, c = debit.balance, credit.balance
        debit.balance = replace(
            d,
            debits_pending_msat=d.debits_pending_msat - held,
            debits_posted_msat=d.debits_posted_msat + posted,
        )
        credit.balance = replace(
            c,
            credits_pending_msat=c.credits_pending_msat - held,
            credits_posted_msat=c.credits_posted_msat + posted,
        )
        hold.state = HoldState.POSTED if posting else HoldState.VOIDED
        return TransferResult.OK
