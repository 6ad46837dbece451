"""Pay's orders and refunds as use cases: no HTTP server, simnet, one fixed clock for the books
and the node (so expiry is a statement, not a sleep), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from collections.abc import Iterator

import pytest

from lngate.bootstrap import Core, UseCases, accounts_for, use_cases
from lngate.config import Config, PayPolicy
from lngate.domain.errors import (
    AccountFrozen,
    IdempotencyConflict,
    InsufficientFunds,
    InvalidRequest,
    LimitExceeded,
    MerchantOrderIdReused,
    NotAMerchant,
    NotFound,
    OrderNotOpen,
    RefundExceedsPaid,
    WithdrawalsHalted,
)
from lngate.domain.ledger import AccountKind
from lngate.domain.orders import HtlcState
from lngate.domain.withdrawals import WithdrawalPolicy
from lngate.lightning.node import InvoiceState, PaymentStatus
from lngate.lightning.simnet import SimnetNetwork, SimnetNode
from lngate.services.clock import FixedClock
from lngate.store import events, users
from lngate.store import orders as order_rows
from lngate.store.db import Dialect
from lngate.store.ledger import get_account
from lngate.store.users import Role, User
from lngate.workers.order_watcher import OrderWatcher
from tests.conftest import started_core

T0_MS = 1_700_000_000_000
FEE_LIMIT_MSAT = 50_000
FEE_PPM = 10_000  # 1 %
REVIEW_ABOVE_MSAT = 400_000
DAILY_MSAT = 2_000_000


@dataclasses.dataclass
class Shop:
    core: Core
    clock: FixedClock
    network: SimnetNetwork
    node: SimnetNode
    cases: UseCases
    watcher: OrderWatcher
    merchant: User
    alice: User  # a customer with an lngate balance

    def user(self, name: str, role: Role = Role.USER, funded_msat: int = 0) -> User:
        made = self.core.uow.write_sync(lambda tx: users.insert_user(tx, name, role))
        if funded_msat:
            accounts_for(self.core).adjust_sync(name, funded_msat, reason="test", actor="test")
        return made

    def available_msat(self, user: User) -> int:
        account = self.core.uow.read_sync(lambda tx: get_account(tx, user.account_id))
        assert account is not None
        return account.balance.available_msat

    def fee_revenue_msat(self) -> int:
        account_id = self.core.system_accounts[AccountKind.FEE_REVENUE.value]
        account = self.core.uow.read_sync(lambda tx: get_account(tx, account_id))
        assert account is not None
        return account.balance.credits_posted_msat - account.balance.debits_posted_msat

    def row(self, order_id: str) -> order_rows.Order:
        found = self.core.uow.read_sync(lambda tx: order_rows.by_id(tx, order_id))
        assert found is not None
        return found

    def event_types(self, user: User) -> list[str]:
        return [e.type for e in self.core.uow.read_sync(lambda tx: events.after(tx, user.id, 0))]

    def pay_from_outside(self, bolt11: str) -> PaymentStatus:
        payment = self.network.pay("carol", bolt11, fee_limit_msat=FEE_LIMIT_MSAT)
        return payment.status

    def outside_status(self, payment_hash: str) -> PaymentStatus:
        return self.network.track_payment("carol", bytes.fromhex(payment_hash)).status

    async def invoice_state(self, payment_hash: str) -> InvoiceState:
        return (await self.node.lookup_invoice(bytes.fromhex(payment_hash))).state

    async def watch(self) -> None:
        """What the watcher does on each update of an order's invoice, once."""
        for order in await self.cases.orders.open_after(0, 1000):
            invoice = await self.node.lookup_invoice(bytes.fromhex(order.payment_hash))
            await self.cases.orders.on_invoice(invoice)
        await self.watcher.sweep_once()

    async def order(self, merchant_order_id: str = "o-1", amount_msat: int = 100_000, **kw):  # type: ignore[no-untyped-def]
        made = await self.cases.orders.create(
            self.merchant.id, merchant_order_id=merchant_order_id, amount_msat=amount_msat, **kw
        )
        return made.order


@pytest.fixture
def shop(config: Config) -> Iterator[Shop]:
    config = dataclasses.replace(
        config,
        pay=PayPolicy(merchant_fee_ppm=FEE_PPM),
        withdrawals=WithdrawalPolicy(
            review_above_msat=REVIEW_ABOVE_MSAT, user_daily_max_msat=DAILY_MSAT
        ),
    )
    with started_core(config) as core:
        clock = FixedClock(T0_MS)
        core.clock = clock
        network = SimnetNetwork(config.simnet_dir, clock_ms=clock.now_ms)
        node = SimnetNode(network)
        cases = use_cases(core, node)
        watcher = OrderWatcher(cases.orders, node, core.commits)
        merchant = core.uow.write_sync(lambda tx: users.insert_user(tx, "shop", Role.MERCHANT))
        shop = Shop(core, clock, network, node, cases, watcher, merchant, merchant)
        shop.alice = shop.user("alice", funded_msat=1_000_000)
        try:
            yield shop
        finally:
            network.close()


def key(name: str) -> tuple[str, str]:
    return name, hashlib.sha256(name.encode()).hexdigest()


# -- creating orders ------------------------------------------------------------------------------


async def test_an_order_is_open_with_a_hold_invoice_for_its_amount(shop: Shop) -> None:
    order = await shop.order(description="2 coffees", metadata={"cart": [1, 2]})
    assert order.id.startswith("ord_") and len(order.id) == 30
    assert (order.status, order.amount_msat, order.fee_msat) == ("open", 100_000, 1_000)
    assert order.checkout_url == f"{shop.core.config.effective_public_url}/pay/{order.id}"
    assert order.metadata == {"cart": [1, 2]} and order.paid_at is None
    assert order.expires_at == "2023-11-14T22:28:20.000+00:00"  # the default 900 s
    invoice = await shop.node.lookup_invoice(bytes.fromhex(order.payment_hash))
    assert invoice.state is InvoiceState.OPEN and invoice.bolt11 == order.bolt11
    assert invoice.preimage is None  # a hold invoice: the node cannot settle it by itself
    assert (invoice.amount_msat, invoice.memo) == (100_000, "2 coffees")


async def test_the_merchant_order_id_is_the_idempotency_key(shop: Shop) -> None:
    first = await shop.order("o-7", description="tea")
    again = await shop.cases.orders.create(
        shop.merchant.id, merchant_order_id="o-7", amount_msat=100_000, description="tea"
    )
    assert again.created is False and again.order == first
    with pytest.raises(MerchantOrderIdReused):
        await shop.order("o-7", description="coffee")
    page = await shop.cases.orders.page(shop.merchant.id)
    assert [o.id for o in page.orders] == [first.id]


async def test_concurrent_orders_are_each_made_once(shop: Shop) -> None:
    """Many at once (on PostgreSQL, batches of one statement): each merchant_order_id is one
    order, whoever asked first; the same body again answers it, another body is refused, and
    the invoice of every request that lost is cancelled."""
    assert shop.core.writer is not None
    batches_before = shop.core.writer.single_statement_batches
    invoiced: list[bytes] = []
    original = shop.node.create_hold_invoice

    async def recording(payment_hash: bytes, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        invoiced.append(payment_hash)
        return await original(payment_hash, *args, **kwargs)  # type: ignore[arg-type]

    shop.node.create_hold_invoice = recording  # type: ignore[method-assign]

    async def create(merchant_order_id: str, description: str = "") -> str:
        try:
            made = await shop.cases.orders.create(
                shop.merchant.id,
                merchant_order_id=merchant_order_id,
                amount_msat=1_000,
                description=description,
            )
        except MerchantOrderIdReused:
            return "reused"
        return f"{made.order.id} {'created' if made.created else 'found'}"

    answers = await asyncio.gather(
        *(create(f"n-{i}") for i in range(24)),
        *(create("same") for _ in range(6)),
        create("same", description="another body"),
    )
    distinct, same, other = answers[:24], answers[24:30], answers[30]
    assert all(a.endswith(" created") for a in distinct)
    assert len({a.split()[0] for a in same}) == 1
    assert sorted(a.split()[1] for a in same) == ["created"] + ["found"] * 5
    assert other == "reused"
    page = await shop.cases.orders.page(shop.merchant.id, limit=100)
    assert len(page.orders) == 25
    made = {bytes.fromhex(o.payment_hash) for o in page.orders}
    states = {h: (await shop.node.lookup_invoice(h)).state for h in invoiced}
    assert {h for h, state in states.items() if state is InvoiceState.OPEN} == made
    assert {h for h, state in states.items() if state is InvoiceState.CANCELED} == (
        set(invoiced) - made  # the requests that lost: nobody can pay their invoices
    )
    if shop.core.db.dialect is Dialect.POSTGRES:
        assert shop.core.writer.single_statement_batches > batches_before


async def test_an_order_for_a_merchant_frozen_while_it_was_being_made_is_refused(
    shop: Shop,
) -> None:
    """The write checks the merchant again (the batch statement as the closure does)."""
    original = shop.node.create_hold_invoice

    async def freeze_meanwhile(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        invoice = await original(*args, **kwargs)  # type: ignore[arg-type]
        shop.core.uow.write_sync(
            lambda tx: users.set_status(tx, shop.merchant.id, users.UserStatus.FROZEN)
        )
        return invoice

    shop.node.create_hold_invoice = freeze_meanwhile  # type: ignore[method-assign]
    with pytest.raises(AccountFrozen):
        await shop.order("o-frozen")
    assert (
        shop.core.uow.read_sync(
            lambda tx: order_rows.by_merchant_order_id(tx, shop.merchant.id, "o-frozen")
        )
        is None
    )


@pytest.mark.parametrize(
    "fields",
    [
        {"merchant_order_id": "has space"},
        {"merchant_order_id": "x" * 65},
        {"amount_msat": 0},
        {"amount_msat": 1.5},
        {"description": "é" * 320},  # 640 bytes of UTF-8
        {"expires_in_s": 59},
        {"expires_in_s": 86_401},
        {"redirect_url": "javascript:alert(1)"},
        {"metadata": {"big": "x" * 4100}},
        {"metadata": [1, 2]},
    ],
)
async def test_a_bad_order_request_is_refused_and_creates_nothing(
    shop: Shop, fields: dict[str, object]
) -> None:
    body: dict[str, object] = {"merchant_order_id": "o-1", "amount_msat": 1_000, **fields}
    with pytest.raises(InvalidRequest):
        await shop.cases.orders.create(shop.merchant.id, **body)  # type: ignore[arg-type]
    assert (await shop.cases.orders.page(shop.merchant.id)).orders == ()


async def test_only_a_merchant_takes_orders(shop: Shop) -> None:
    with pytest.raises(NotAMerchant):
        await shop.cases.orders.create(shop.alice.id, merchant_order_id="o", amount_msat=1_000)


async def test_another_merchants_order_does_not_exist_for_you(shop: Shop) -> None:
    order = await shop.order()
    other = shop.user("other-shop", Role.MERCHANT)
    with pytest.raises(NotFound):
        await shop.cases.orders.get(other.id, order.id)
    with pytest.raises(NotFound):
        await shop.cases.orders.cancel(other.id, order.id)


# -- paid over Lightning -----------------------------------------------------------------


async def test_a_held_payment_credits_the_merchant_then_is_settled(shop: Shop) -> None:
    order = await shop.order(amount_msat=200_000)
    assert shop.pay_from_outside(order.bolt11) is PaymentStatus.IN_FLIGHT  # held, not settled
    assert await shop.invoice_state(order.payment_hash) is InvoiceState.ACCEPTED
    await shop.watch()
    paid = await shop.cases.orders.get(shop.merchant.id, order.id)
    assert (paid.status, paid.paid_via) == ("paid", "lightning")
    assert paid.paid_at == "2023-11-14T22:13:20.000+00:00"
    assert shop.available_msat(shop.merchant) == 200_000 - 2_000
    assert shop.fee_revenue_msat() == 2_000
    assert await shop.invoice_state(order.payment_hash) is InvoiceState.SETTLED
    assert shop.outside_status(order.payment_hash) is PaymentStatus.SUCCEEDED
    assert shop.row(order.id).htlc_state is HtlcState.SETTLED
    assert shop.event_types(shop.merchant) == ["order.paid"]
    await shop.watch()  # the same update again credits nothing
    assert shop.available_msat(shop.merchant) == 198_000


async def test_a_crash_between_the_credit_and_the_settle_is_finished_on_restart(
    shop: Shop,
) -> None:
    order = await shop.order()
    shop.pay_from_outside(order.bolt11)
    invoice = await shop.node.lookup_invoice(bytes.fromhex(order.payment_hash))
    await shop.core.uow.write(shop.cases.orders._credit_op(order.id, invoice))  # then: crash
    assert shop.row(order.id).htlc_state is HtlcState.TO_SETTLE
    assert await shop.invoice_state(order.payment_hash) is InvoiceState.ACCEPTED
    report = await shop.cases.solvency.reconcile()
    assert report.held_htlcs_msat == 100_000 and report.shortfall_msat <= 0  # no false alarm
    restarted = OrderWatcher(use_cases(shop.core, shop.node).orders, shop.node, shop.core.commits)
    assert await restarted.sweep_once() == 1
    assert await shop.invoice_state(order.payment_hash) is InvoiceState.SETTLED
    assert shop.row(order.id).htlc_state is HtlcState.SETTLED
    assert shop.available_msat(shop.merchant) == 99_000


async def test_a_late_payment_goes_back_to_the_payer(shop: Shop) -> None:
    order = await shop.order(expires_in_s=60)
    shop.clock.advance(60_000)
    await shop.watch()
    assert (await shop.cases.orders.get(shop.merchant.id, order.id)).status == "expired"
    assert await shop.invoice_state(order.payment_hash) is InvoiceState.CANCELED
    assert shop.pay_from_outside(order.bolt11) is PaymentStatus.FAILED
    assert shop.available_msat(shop.merchant) == 0
    assert shop.event_types(shop.merchant) == ["order.expired"]


async def test_a_payment_held_before_expiry_is_credited_at_expiry(shop: Shop) -> None:
    order = await shop.order(expires_in_s=60)
    shop.pay_from_outside(order.bolt11)
    shop.clock.advance(120_000)
    await shop.watcher.sweep_once()  # the expiry sweep asks the node first
    assert (await shop.cases.orders.get(shop.merchant.id, order.id)).status == "paid"
    assert shop.outside_status(order.payment_hash) is PaymentStatus.SUCCEEDED


async def test_a_held_payment_for_a_cancelled_order_is_failed_back(shop: Shop) -> None:
    order = await shop.order()
    await shop.cases.orders.cancel(shop.merchant.id, order.id)
    with pytest.raises(OrderNotOpen):
        await shop.cases.orders.cancel(shop.merchant.id, order.id)
    assert shop.pay_from_outside(order.bolt11) is PaymentStatus.FAILED
    assert shop.available_msat(shop.merchant) == 0
    assert shop.event_types(shop.merchant) == ["order.cancelled"]


async def test_a_second_payment_of_a_paid_order_is_refused(shop: Shop) -> None:
    order = await shop.order()
    shop.pay_from_outside(order.bolt11)
    await shop.watch()
    payment = shop.network.pay("dave", order.bolt11, fee_limit_msat=FEE_LIMIT_MSAT)
    assert payment.status is PaymentStatus.FAILED
    assert shop.available_msat(shop.merchant) == 99_000


# -- paid from a balance ------------------------------------------------------------------


async def test_paying_from_a_balance_is_instant_and_cancels_the_invoice(shop: Shop) -> None:
    order = await shop.order(amount_msat=300_000)
    paid = await shop.cases.orders.pay_from_balance(shop.alice.id, order.id, idempotency=key("k"))
    assert (paid.status, paid.merchant, paid.amount_msat) == ("paid", "shop", 300_000)
    assert shop.available_msat(shop.alice) == 700_000
    assert shop.available_msat(shop.merchant) == 297_000 and shop.fee_revenue_msat() == 3_000
    assert await shop.invoice_state(order.payment_hash) is InvoiceState.CANCELED
    assert shop.pay_from_outside(order.bolt11) is PaymentStatus.FAILED  # nobody pays it twice
    again = await shop.cases.orders.pay_from_balance(shop.alice.id, order.id, idempotency=key("k"))
    assert again == paid and shop.available_msat(shop.alice) == 700_000
    with pytest.raises(OrderNotOpen):
        await shop.cases.orders.pay_from_balance(shop.alice.id, order.id, idempotency=key("k2"))
    view = await shop.cases.orders.get(shop.merchant.id, order.id)
    assert (view.status, view.paid_via) == ("paid", "balance")


async def test_a_refused_balance_payment_changes_nothing(shop: Shop) -> None:
    order = await shop.order(amount_msat=2_000_000)  # more than alice has
    with pytest.raises(InsufficientFunds):
        await shop.cases.orders.pay_from_balance(shop.alice.id, order.id, idempotency=key("k"))
    assert (await shop.cases.orders.get(shop.merchant.id, order.id)).status == "open"
    assert await shop.invoice_state(order.payment_hash) is InvoiceState.OPEN  # still payable
    assert shop.available_msat(shop.alice) == 1_000_000


async def test_withdrawal_rules_apply_to_balance_payments(shop: Shop) -> None:
    order = await shop.order()
    await shop.cases.admin.freeze("alice", reason="test", actor="ops")
    with pytest.raises(AccountFrozen):
        await shop.cases.orders.pay_from_balance(shop.alice.id, order.id, idempotency=key("a"))
    bob = shop.user("bob", funded_msat=10**9)
    big = await shop.order("o-big", amount_msat=1_500_000)
    await shop.cases.orders.pay_from_balance(bob.id, big.id, idempotency=key("b1"))
    more = await shop.order("o-more", amount_msat=600_000)  # 2.1 M msat in 24 h: too much
    with pytest.raises(LimitExceeded):
        await shop.cases.orders.pay_from_balance(bob.id, more.id, idempotency=key("b2"))
    assert (await shop.cases.orders.get(shop.merchant.id, more.id)).status == "open"
    await shop.cases.admin.halt(reason="drill", actor="ops")
    with pytest.raises(WithdrawalsHalted):
        await shop.cases.orders.pay_from_balance(bob.id, order.id, idempotency=key("b3"))


async def test_a_payment_held_while_an_order_is_paid_from_a_balance_goes_back(
    shop: Shop,
) -> None:
    order = await shop.order()
    assert shop.pay_from_outside(order.bolt11) is PaymentStatus.IN_FLIGHT  # held, unseen yet
    await shop.cases.orders.pay_from_balance(shop.alice.id, order.id, idempotency=key("k"))
    await shop.watch()
    assert shop.outside_status(order.payment_hash) is PaymentStatus.FAILED
    assert shop.available_msat(shop.merchant) == 99_000  # credited once, by alice


async def test_a_withdrawal_to_an_orders_invoice_pays_it_from_the_balance(shop: Shop) -> None:
    order = await shop.order(amount_msat=50_000)
    w = await shop.cases.withdrawal_requests.request(
        shop.alice.id,
        bolt11=order.bolt11,
        lightning_address=None,
        amount_msat=None,
        idempotency=key("w"),
    )
    assert (w.status.value, w.internal, w.amount_msat) == ("succeeded", True, 50_000)
    view = await shop.cases.orders.get(shop.merchant.id, order.id)
    assert (view.status, view.paid_via) == ("paid", "balance")
    assert shop.available_msat(shop.alice) == 950_000
    assert shop.available_msat(shop.merchant) == 49_500
    assert await shop.invoice_state(order.payment_hash) is InvoiceState.CANCELED


# -- refunds ------------------------------------------------------------------------------


async def paid_from_balance(shop: Shop, amount_msat: int = 100_000) -> str:
    order = await shop.order(amount_msat=amount_msat)
    await shop.cases.orders.pay_from_balance(shop.alice.id, order.id, idempotency=key("pay"))
    return order.id


async def test_a_balance_payment_is_refunded_to_the_payers_balance(shop: Shop) -> None:
    order_id = await paid_from_balance(shop)
    refunds = shop.cases.refunds
    first = await refunds.create(
        shop.merchant.id, order_id, amount_msat=30_000, reason="one broken", idempotency=key("r1")
    )
    assert (first.status, first.destination, first.amount_msat) == ("succeeded", "balance", 30_000)
    assert shop.available_msat(shop.alice) == 930_000
    again = await refunds.create(
        shop.merchant.id, order_id, amount_msat=30_000, reason="one broken", idempotency=key("r1")
    )
    assert again == first and shop.available_msat(shop.alice) == 930_000
    with pytest.raises(IdempotencyConflict):
        await refunds.create(
            shop.merchant.id, order_id, amount_msat=1, idempotency=("r1", "another request")
        )
    with pytest.raises(RefundExceedsPaid):
        await refunds.create(shop.merchant.id, order_id, amount_msat=70_001, idempotency=key("r2"))
    # The merchant paid the 1 % fee, so it tops up to refund everything it was paid.
    accounts_for(shop.core).adjust_sync("shop", 1_000, reason="test", actor="test")
    await refunds.create(shop.merchant.id, order_id, amount_msat=70_000, idempotency=key("r3"))
    view = await shop.cases.orders.get(shop.merchant.id, order_id)
    assert (view.status, view.refunded_msat) == ("refunded", 100_000)
    assert [r.amount_msat for r in await refunds.of_order(shop.merchant.id, order_id)] == [
        30_000,
        70_000,
    ]
    assert shop.event_types(shop.merchant).count("refund.succeeded") == 2


async def test_concurrent_refunds_never_exceed_what_was_paid(shop: Shop) -> None:
    order_id = await paid_from_balance(shop)
    accounts_for(shop.core).adjust_sync("shop", 1_000, reason="test", actor="test")  # 100 000

    async def refund(n: int) -> str:
        try:
            await shop.cases.refunds.create(
                shop.merchant.id, order_id, amount_msat=30_000, idempotency=key(f"c{n}")
            )
            return "ok"
        except (RefundExceedsPaid, InsufficientFunds) as exc:
            return type(exc).__name__

    outcomes = await asyncio.gather(*(refund(n) for n in range(8)))
    assert outcomes.count("ok") == 3  # 3 x 30 000 <= 100 000 < 4 x 30 000
    row = shop.row(order_id)
    assert (row.refunded_msat, row.refunds_reserved_msat) == (90_000, 90_000)


async def test_an_order_paid_over_lightning_needs_a_destination_to_refund(shop: Shop) -> None:
    order = await shop.order()
    shop.pay_from_outside(order.bolt11)
    await shop.watch()
    with pytest.raises(InvalidRequest):
        await shop.cases.refunds.create(
            shop.merchant.id, order.id, amount_msat=1_000, idempotency=key("r")
        )
    unpaid = await shop.order("o-2")
    with pytest.raises(RefundExceedsPaid):
        await shop.cases.refunds.create(
            shop.merchant.id, unpaid.id, amount_msat=1_000, bolt11="x", idempotency=key("r2")
        )


async def test_a_refund_to_an_invoice_follows_its_withdrawal(shop: Shop) -> None:
    order = await shop.order(amount_msat=500_000)
    shop.pay_from_outside(order.bolt11)
    await shop.watch()
    bob = shop.user("bob")
    deposit = await shop.cases.deposits.create(bob.id, 200_000)  # an lngate user's invoice
    refund = await shop.cases.refunds.create(
        shop.merchant.id,
        order.id,
        amount_msat=200_000,
        bolt11=deposit.bolt11,
        idempotency=key("r"),
    )
    assert (refund.status, refund.destination) == ("succeeded", deposit.bolt11)
    assert refund.withdrawal_id is not None
    assert shop.available_msat(bob) == 200_000
    assert shop.row(order.id).refunded_msat == 200_000
    # An invoice for another amount than amount_msat is refused, and reserves nothing.
    other = await shop.cases.deposits.create(bob.id, 1_000)
    with pytest.raises(InvalidRequest):
        await shop.cases.refunds.create(
            shop.merchant.id, order.id, amount_msat=2_000, bolt11=other.bolt11, idempotency=key("x")
        )
    assert shop.row(order.id).refunds_reserved_msat == 200_000


async def test_a_rejected_refund_withdrawal_gives_the_amount_back(shop: Shop) -> None:
    amount = 2 * REVIEW_ABOVE_MSAT
    order = await shop.order(amount_msat=amount)
    shop.pay_from_outside(order.bolt11)
    await shop.watch()
    outside = shop.network.create_invoice("carol", None, expiry_s=3600)
    refund = await shop.cases.refunds.create(
        shop.merchant.id,
        order.id,
        amount_msat=amount // 2,
        bolt11=outside.bolt11,
        idempotency=key("r"),
    )
    assert refund.status == "pending"
    assert refund.withdrawal_id is not None
    await shop.cases.withdrawal_review.reject(refund.withdrawal_id, "ops", "no")
    (after,) = await shop.cases.refunds.of_order(shop.merchant.id, order.id)
    assert after.status == "failed"
    assert shop.row(order.id).refunds_reserved_msat == 0
    assert "refund.failed" in shop.event_types(shop.merchant)
