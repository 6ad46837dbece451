"""Withdrawal rules: the lifecycle, fees, limits and invoice checks. Pure: no I/O.

    requested -> rejected | review | approved -> sending -> succeeded | failed

Funds are held from ``requested`` on. Only the payment worker moves approved -> sending, and
records it before calling the node. ``failed`` only when the node says so for good (or provably
never saw the payment): a hold is never released while its payment may still succeed.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from lngate.domain.errors import (
    AmountNotAllowed,
    AmountOutOfRange,
    AmountRequired,
    InvalidAmount,
    InvoiceExpired,
    LimitExceeded,
)
from lngate.domain.money import MAX_AMOUNT_MSAT


class WithdrawalStatus(enum.StrEnum):
    REQUESTED = "requested"
    REVIEW = "review"
    APPROVED = "approved"
    SENDING = "sending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REJECTED = "rejected"


FINAL = frozenset({WithdrawalStatus.SUCCEEDED, WithdrawalStatus.FAILED, WithdrawalStatus.REJECTED})
# Statuses that count against limits and block a second withdrawal of the same payment hash.
ACTIVE = frozenset(WithdrawalStatus) - {WithdrawalStatus.FAILED, WithdrawalStatus.REJECTED}


@dataclass(frozen=True, slots=True)
class WithdrawalPolicy:
    """All msat. Defaults suit 'small amounts first'."""

    min_msat: int = 1_000
    max_msat: int = 1_000_000_000  # 0.01 BTC
    user_daily_max_msat: int = 5_000_000_000  # rolling 24 h
    global_hourly_max_msat: int = 50_000_000_000  # rolling 1 h
    review_above_msat: int = 250_000_000  # larger withdrawals wait for an operator
    fee_base_msat: int = 0
    fee_ppm: int = 0
    routing_reserve_ppm: int = 5_000  # 0.5 %
    routing_reserve_min_msat: int = 10_000
    invoice_min_remaining_s: int = 60  # refuse invoices expiring sooner than this
    user_sending_max_count: int = 5  # hold-invoice griefing: payments in flight per user
    user_sending_max_msat: int = 2_000_000_000
    payment_timeout_s: int = 60
    blocked_payees: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        assert 0 < self.min_msat <= self.max_msat <= MAX_AMOUNT_MSAT
        assert self.fee_ppm >= 0 and self.routing_reserve_ppm >= 0


def _ppm_ceil(amount_msat: int, ppm: int) -> int:
    return -(-amount_msat * ppm // 1_000_000)


def exchange_fee_msat(amount_msat: int, policy: WithdrawalPolicy) -> int:
    return policy.fee_base_msat + _ppm_ceil(amount_msat, policy.fee_ppm)


def routing_reserve_msat(amount_msat: int, policy: WithdrawalPolicy) -> int:
    """The most routing may cost; the fee limit sent to the node is exactly this (LNbits #440:
    a fee limit above what was held lets routing drain the exchange)."""
    return max(policy.routing_reserve_min_msat, _ppm_ceil(amount_msat, policy.routing_reserve_ppm))


def resolve_amount(invoice_amount_msat: int | None, requested_msat: int | None) -> int:
    if invoice_amount_msat is None:
        if requested_msat is None:
            raise AmountRequired("this invoice has no amount: give amount_msat")
        if isinstance(requested_msat, bool) or not isinstance(requested_msat, int):
            raise InvalidAmount("amount_msat must be an integer")
        if requested_msat <= 0:
            raise InvalidAmount("amount_msat must be positive")
        return requested_msat
    if requested_msat is not None:
        raise AmountNotAllowed("the invoice states its amount: do not give amount_msat")
    return invoice_amount_msat


def check_amount(amount_msat: int, policy: WithdrawalPolicy) -> None:
    if not policy.min_msat <= amount_msat <= policy.max_msat:
        raise AmountOutOfRange(
            f"a withdrawal must be between {policy.min_msat} and {policy.max_msat} msat"
        )


def check_expiry(expires_at_s: int, now_s: int, policy: WithdrawalPolicy) -> None:
    if expires_at_s - now_s < policy.invoice_min_remaining_s:
        raise InvoiceExpired(
            f"the invoice expires in under {policy.invoice_min_remaining_s}s (or has expired)"
        )


def check_limits(
    amount_msat: int, user_24h_msat: int, global_1h_msat: int, policy: WithdrawalPolicy
) -> None:
    if user_24h_msat + amount_msat > policy.user_daily_max_msat:
        raise LimitExceeded(
            f"this would exceed your 24 h withdrawal limit of {policy.user_daily_max_msat} msat "
            f"({user_24h_msat} msat used)"
        )
    if global_1h_msat + amount_msat > policy.global_hourly_max_msat:
        raise LimitExceeded("the exchange's hourly withdrawal limit is reached; try later")


def needs_review(amount_msat: int, policy: WithdrawalPolicy) -> bool:
    return amount_msat > policy.review_above_msat
