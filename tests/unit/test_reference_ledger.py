"""The reference ledger: the rules every ledger implementation must follow."""

from lngate.domain.ledger import (
    AccountFlags,
    ReferenceLedger,
    TransferFlag,
    TransferResult,
    TransferSpec,
)
from lngate.domain.money import MAX_AMOUNT_MSAT

USER, OTHER, NODE = 1, 2, 3


def ledger() -> ReferenceLedger:
    ref = ReferenceLedger()
    ref.open_account(USER, AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS)
    ref.open_account(OTHER, AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS)
    ref.open_account(NODE, AccountFlags.NONE)
    assert ref.apply(TransferSpec("fund", NODE, USER, 10_000)) is TransferResult.OK
    return ref


def test_a_transfer_moves_money_once_per_id() -> None:
    ref = ledger()
    assert ref.apply(TransferSpec("t1", USER, OTHER, 4_000)) is TransferResult.OK
    assert ref.apply(TransferSpec("t1", USER, OTHER, 4_000)) is TransferResult.EXISTS
    assert ref.apply(TransferSpec("t1", USER, OTHER, 5_000)) is (
        TransferResult.EXISTS_WITH_DIFFERENT_FIELDS
    )
    assert ref.balance(USER).available_msat == 6_000
    assert ref.balance(OTHER).available_msat == 4_000


def test_a_user_cannot_spend_more_than_they_have() -> None:
    ref = ledger()
    assert ref.apply(TransferSpec("t1", USER, OTHER, 10_001)) is TransferResult.EXCEEDS_CREDITS
    assert ref.balance(USER).available_msat == 10_000


def test_a_hold_reserves_funds_until_posted_or_voided_once() -> None:
    ref = ledger()
    hold = TransferSpec("h1", USER, NODE, 7_000, flag=TransferFlag.PENDING)
    assert ref.apply(hold) is TransferResult.OK
    assert ref.balance(USER).available_msat == 3_000
    assert ref.apply(TransferSpec("x", USER, OTHER, 3_001)) is TransferResult.EXCEEDS_CREDITS
    post = TransferSpec("p1", 0, 0, 5_000, flag=TransferFlag.POST_PENDING, pending_id="h1")
    assert ref.apply(post) is TransferResult.OK
    assert ref.balance(USER).available_msat == 5_000  # the unused 2,000 came back
    void = TransferSpec("v1", 0, 0, 0, flag=TransferFlag.VOID_PENDING, pending_id="h1")
    assert ref.apply(void) is TransferResult.PENDING_TRANSFER_ALREADY_POSTED


def test_a_post_cannot_exceed_its_hold() -> None:
    ref = ledger()
    ref.apply(TransferSpec("h1", USER, NODE, 1_000, flag=TransferFlag.PENDING))
    post = TransferSpec("p1", 0, 0, 1_001, flag=TransferFlag.POST_PENDING, pending_id="h1")
    assert ref.apply(post) is TransferResult.EXCEEDS_PENDING_TRANSFER_AMOUNT


def test_shapes_are_checked_before_state() -> None:
    ref = ledger()
    assert ref.apply(TransferSpec("a", USER, USER, 1)) is TransferResult.ACCOUNTS_MUST_BE_DIFFERENT
    assert ref.apply(TransferSpec("b", USER, OTHER, 0)) is TransferResult.AMOUNT_MUST_BE_POSITIVE
    too_big = TransferSpec("c", NODE, USER, MAX_AMOUNT_MSAT + 1)
    assert ref.apply(too_big) is TransferResult.AMOUNT_TOO_LARGE


def test_totals_cannot_overflow() -> None:
    """lnd #636: an amount that wrapped. Here running totals stop before int64 could."""
    ref = ledger()
    assert ref.apply(TransferSpec("a", NODE, OTHER, MAX_AMOUNT_MSAT)) is TransferResult.OK
    assert ref.apply(TransferSpec("b", NODE, OTHER, MAX_AMOUNT_MSAT)) is TransferResult.OVERFLOWS
