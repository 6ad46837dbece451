"""The withdrawal use cases on their own: no HTTP server and no worker, SQLite (and PostgreSQL)
with simnet, and a fixed clock where time decides.

- a request holds amount, fee and routing reserve, and answers the API's record; a repeat
  under its Idempotency-Key answers the same withdrawal, a different request under it is refused;
- an invoice is judged on the clock (expiring too soon) and the daily limit is a window on it;
- a user pages back through their own withdrawals only;
- a Lightning Address is resolved through the resolver port, and one of our own users' is
  minted here and settled in the request, off Lightning;
- an operator's review: the queue, and each decision made once, audited, the hold released on
  rejection; approval wakes the payment worker;
- the payouts judge an invoice's expiry on the same clock.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import Iterator

import pytest

from lngate.api import schemas
from lngate.bootstrap import Core, use_cases
from lngate.domain.errors import (
    IdempotencyConflict,
    InvoiceExpired,
    LimitExceeded,
    NotFound,
)
from lngate.domain.ledger import Balance
from lngate.domain.withdrawals import WithdrawalPolicy, WithdrawalStatus
from lngate.lightning.simnet import SimnetNetwork, SimnetNode
from lngate.services.accounts import Credentials, iso_ms
from lngate.services.clock import FixedClock
from lngate.services.payouts import Payouts
from lngate.services.reconciliation import check_ledger
from lngate.services.withdrawal_records import WithdrawalView
from lngate.services.withdrawal_review import WithdrawalReview
from lngate.services.withdrawals import WithdrawalRequests
from lngate.store import audit, users
from lngate.store import withdrawals as store
from lngate.store.db import Tx
from lngate.store.ledger import get_account
from tests.conftest import funded_user

FUNDS = 100_000_000
AMOUNT_MSAT = 20_000
HOUR_S = 3600


class Nudges:
    """A ``Wakeup`` that counts its nudges (no worker listens in these tests)."""

    def __init__(self) -> None:
        self.fired = 0

    def fire(self) -> None:
        self.fired += 1

    async def wait(self, timeout_s: float) -> None:
        await asyncio.sleep(0)


class Resolver:
    """The ``LnurlResolver`` port as a wallet's LNURL service answers it: one invoice."""

    def __init__(self) -> None:
        self.invoice = ""
        self.asked: list[tuple[str, int]] = []

    async def resolve_invoice(self, address: str, amount_msat: int) -> str:
        self.asked.append((address, amount_msat))
        return self.invoice


@dataclasses.dataclass
class Cases:
    clock: FixedClock
    nudges: Nudges
    resolver: Resolver
    requests: WithdrawalRequests
    review: WithdrawalReview
    payouts: Payouts
    net: SimnetNetwork

    def invoice(self, wallet: str, amount_msat: int = AMOUNT_MSAT, expiry_s: int = HOUR_S) -> str:
        """An invoice of an outside wallet, made now by the clock."""
        created_at = self.clock.now_ms() // 1000
        return self.net.create_invoice(
            wallet, amount_msat, expiry_s=expiry_s, created_at=created_at
        ).bolt11

    async def withdraw(self, user: Credentials, bolt11: str) -> WithdrawalView:
        return await self.requests.request(
            user.user_id,
            bolt11=bolt11,
            lightning_address=None,
            amount_msat=None,
            idempotency=(str(uuid.uuid4()), "request"),
        )


def build(core: Core, net: SimnetNetwork, policy: WithdrawalPolicy) -> Cases:
    """The withdrawal use cases as bootstrap builds them, with a fixed clock, a counting
    wake-up and a resolver the test answers for."""
    node = SimnetNode(net)
    # Stopped at the node's time: the invoices our node mints carry its time.
    clock, nudges, resolver = FixedClock(time.time_ns() // 1_000_000), Nudges(), Resolver()
    requests = WithdrawalRequests(
        core.uow,
        node,
        policy,
        core.system_accounts,
        clock,
        nudges,
        resolver,
        addresses=use_cases(core, node).lightning_addresses,
        public_host=core.config.public_host,
    )
    review = WithdrawalReview(core.uow, nudges)
    payouts = Payouts(core.uow, node, policy, core.system_accounts, clock)
    return Cases(clock, nudges, resolver, requests, review, payouts, net)


@pytest.fixture
def net(core: Core) -> Iterator[SimnetNetwork]:
    network = SimnetNetwork(core.config.simnet_dir)
    yield network
    network.close()


@pytest.fixture
def cases(core: Core, net: SimnetNetwork) -> Cases:
    return build(core, net, core.config.withdrawals)


def balance(core: Core, user: Credentials) -> Balance:
    def read(tx: Tx) -> Balance:
        found = users.user_by_id(tx, user.user_id)
        assert found is not None
        account = get_account(tx, found.account_id)
        assert account is not None
        return account.balance

    return core.uow.read_sync(read)


async def test_a_request_holds_the_funds_and_answers_the_apis_record(
    core: Core, cases: Cases
) -> None:
    alice = funded_user(core, "alice", FUNDS)
    bolt11 = cases.invoice("carol")
    w = await cases.withdraw(alice, bolt11)
    assert (w.status, w.bolt11, w.amount_msat, w.internal) == (
        WithdrawalStatus.APPROVED,
        bolt11,
        AMOUNT_MSAT,
        False,
    )
    assert w.created_at == iso_ms(cases.clock.now_ms())  # the clock's instant
    assert balance(core, alice).debits_pending_msat == (
        AMOUNT_MSAT + w.exchange_fee_msat + w.fee_reserve_msat
    )
    assert cases.nudges.fired == 1  # the payment worker is told at once
    # the record is the API's body, field for field
    assert schemas.Withdrawal.model_validate(w).model_dump(mode="json") == w.as_json()
    assert await cases.requests.get(alice.user_id, w.id) == w


async def test_a_repeat_under_its_key_answers_the_same_withdrawal_and_nothing_else(
    core: Core, cases: Cases
) -> None:
    alice = funded_user(core, "alice", FUNDS)
    bolt11 = cases.invoice("carol")

    async def request(req_hash: str) -> WithdrawalView:
        return await cases.requests.request(
            alice.user_id,
            bolt11=bolt11,
            lightning_address=None,
            amount_msat=None,
            idempotency=("key-1", req_hash),
        )

    first = await request("same body")
    assert await request("same body") == first
    with pytest.raises(IdempotencyConflict):
        await request("another body")
    assert balance(core, alice).debits_pending_msat == (
        AMOUNT_MSAT + first.exchange_fee_msat + first.fee_reserve_msat
    )  # held once


async def test_an_invoice_expiring_too_soon_by_the_clock_is_refused(
    core: Core, cases: Cases
) -> None:
    alice = funded_user(core, "alice", FUNDS)
    bolt11 = cases.invoice("carol", expiry_s=HOUR_S)
    margin_s = core.config.withdrawals.invoice_min_remaining_s
    cases.clock.advance((HOUR_S - margin_s + 1) * 1000)
    with pytest.raises(InvoiceExpired):
        await cases.withdraw(alice, bolt11)
    assert balance(core, alice) == Balance(credits_posted_msat=FUNDS)  # nothing changed
    cases.clock.advance(-2_000)  # two seconds earlier it was still payable
    assert (await cases.withdraw(alice, bolt11)).status is WithdrawalStatus.APPROVED


async def test_the_daily_limit_is_a_rolling_24_hours_on_the_clock(
    core: Core, net: SimnetNetwork
) -> None:
    policy = dataclasses.replace(core.config.withdrawals, user_daily_max_msat=50_000)
    cases = build(core, net, policy)
    alice = funded_user(core, "alice", FUNDS)
    await cases.withdraw(alice, cases.invoice("carol", 30_000))
    cases.clock.advance(23 * HOUR_S * 1000)
    with pytest.raises(LimitExceeded):
        await cases.withdraw(alice, cases.invoice("carol", 30_000))
    cases.clock.advance(HOUR_S * 1000 + 1)  # the first one is now more than 24 h old
    w = await cases.withdraw(alice, cases.invoice("carol", 30_000))
    assert w.status is WithdrawalStatus.APPROVED


async def test_a_user_pages_back_through_their_own_withdrawals_only(
    core: Core, cases: Cases
) -> None:
    alice = funded_user(core, "alice", FUNDS)
    bob = funded_user(core, "bob", FUNDS)
    made = [await cases.withdraw(alice, cases.invoice("carol", 10_000 + i)) for i in range(5)]
    theirs = await cases.withdraw(bob, cases.invoice("dave"))
    first = await cases.requests.page(alice.user_id, cursor=None, limit=3)
    assert [w.id for w in first.withdrawals] == [w.id for w in reversed(made)][:3]
    assert first.next_cursor is not None
    rest = await cases.requests.page(alice.user_id, cursor=first.next_cursor, limit=3)
    assert [w.id for w in rest.withdrawals] == [made[1].id, made[0].id]
    assert rest.next_cursor is None
    assert schemas.WithdrawalPage.model_validate(first).model_dump(mode="json") == (first.as_json())
    with pytest.raises(NotFound):
        await cases.requests.get(alice.user_id, theirs.id)


async def test_a_lightning_address_is_resolved_through_the_resolver_port(
    core: Core, cases: Cases
) -> None:
    alice = funded_user(core, "alice", FUNDS)
    cases.resolver.invoice = cases.invoice("carol", 25_000)
    w = await cases.requests.request(
        alice.user_id,
        bolt11=None,
        lightning_address="carol@wallet.example",
        amount_msat=25_000,
        idempotency=("k", "h"),
    )
    assert cases.resolver.asked == [("carol@wallet.example", 25_000)]
    assert (w.destination, w.bolt11, w.amount_msat) == (
        "carol@wallet.example",
        cases.resolver.invoice,
        25_000,
    )


async def test_our_own_users_address_is_minted_here_and_settled_in_the_request(
    core: Core, cases: Cases
) -> None:
    alice = funded_user(core, "alice", FUNDS)
    bob = funded_user(core, "bob")
    w = await cases.requests.request(
        alice.user_id,
        bolt11=None,
        lightning_address=f"bob@{core.config.public_host}",
        amount_msat=AMOUNT_MSAT,
        idempotency=("k", "h"),
    )
    assert cases.resolver.asked == []  # no HTTP round trip to ourselves
    assert (w.status, w.internal, w.note) == (
        WithdrawalStatus.SUCCEEDED,
        True,
        "settled internally",
    )
    assert balance(core, bob).credits_posted_msat == AMOUNT_MSAT
    assert balance(core, alice).available_msat == FUNDS - AMOUNT_MSAT  # no fee inside
    assert core.uow.read_sync(check_ledger).ok


async def test_a_large_withdrawal_waits_for_an_operator_and_each_decision_is_audited_once(
    core: Core, cases: Cases
) -> None:
    alice = funded_user(core, "alice", 10 * FUNDS)
    large = core.config.withdrawals.review_above_msat + 1_000
    waiting = await cases.withdraw(alice, cases.invoice("carol", large))
    assert waiting.status is WithdrawalStatus.REVIEW
    assert [w.id for w in await cases.review.queue()] == [waiting.id]
    nudged = cases.nudges.fired
    approved = await cases.review.approve(waiting.id, "admin:ops", "known customer")
    assert approved is not None and approved.status is WithdrawalStatus.APPROVED
    assert approved.note == "approved: known customer"
    assert cases.nudges.fired == nudged + 1  # the worker is told
    assert await cases.review.approve(waiting.id, "admin:ops", "again") is None
    assert await cases.review.queue() == []
    assert [w.id for w in await cases.review.queue(WithdrawalStatus.APPROVED)] == [waiting.id]
    records = core.uow.read_sync(lambda tx: audit.records(tx))
    assert [(r.actor, r.action, r.subject, r.reason) for r in records][-1:] == [
        ("admin:ops", "withdrawal.approve", f"withdrawal:{waiting.id}", "known customer")
    ]


async def test_a_rejection_releases_the_hold_and_is_audited(core: Core, cases: Cases) -> None:
    alice = funded_user(core, "alice", FUNDS)
    w = await cases.withdraw(alice, cases.invoice("carol"))
    rejected = await cases.review.reject(w.id, "cli:ops", "fraud")
    assert rejected is not None and rejected.status is WithdrawalStatus.REJECTED
    assert rejected.note == "fraud"
    assert balance(core, alice).debits_pending_msat == 0
    assert balance(core, alice).available_msat == FUNDS
    assert cases.review.reject_sync(w.id, "cli:ops", "twice") is None
    last = core.uow.read_sync(lambda tx: audit.records(tx))[-1]
    assert (last.action, last.subject) == ("withdrawal.reject", f"withdrawal:{w.id}")
    assert core.uow.read_sync(check_ledger).ok


async def test_payouts_judge_an_invoices_expiry_on_the_same_clock(core: Core, cases: Cases) -> None:
    alice = funded_user(core, "alice", FUNDS)
    made = await cases.withdraw(alice, cases.invoice("carol", expiry_s=HOUR_S))
    w = core.uow.read_sync(lambda tx: store.by_id(tx, made.id))
    assert w is not None and not cases.payouts.invoice_expired(w)
    cases.clock.advance(HOUR_S * 1000 + 1)
    assert cases.payouts.invoice_expired(w)
