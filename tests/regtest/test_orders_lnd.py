"""Pay on a real LND: an order's hold invoice on the exchange's lnd, paid by bob's lnd (through
alice); the merchant is credited before the HTLC is settled; a late payment (a cancelled
order) and a second payment (of a paid order) are refused by the exchange's node and go back
to their payer; and a refund to bob's own invoice goes out as a withdrawal.

Each test has a fresh lngate database (SQLite and PostgreSQL) over the one shared network.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from lngate.bootstrap import Core, UseCases, use_cases
from lngate.config import Config
from lngate.lightning.lnd import LndNode
from lngate.regtest import Network
from lngate.services.reconciliation import check_ledger
from lngate.store import users
from lngate.store.users import Role, User
from lngate.workers.order_watcher import OrderWatcher
from tests.helpers import payment_worker
from tests.regtest.lngate_helpers import (
    PayRefused,
    available,
    bob_invoice,
    eventually,
    invoice_node,
    invoice_state,
    lnd_config,
    pay,
    running,
    spending_node,
)

pytestmark = pytest.mark.regtest

AMOUNT_MSAT = 60_000


@pytest.fixture
def config(config: Config, regtest: Network) -> Config:
    return lnd_config(config, regtest)


@pytest.fixture
async def node(config: Config) -> AsyncIterator[LndNode]:
    """The API process's and the order watcher's node: the invoice-only macaroon."""
    n = invoice_node(config)
    yield n
    await n.close()


@pytest.fixture
def cases(core: Core, node: LndNode) -> UseCases:
    return use_cases(core, node)


@pytest.fixture
def merchant(core: Core) -> User:
    return core.uow.write_sync(lambda tx: users.insert_user(tx, "shop", Role.MERCHANT))


async def order_status(cases: UseCases, merchant: User, order_id: str) -> str:
    return (await cases.orders.get(merchant.id, order_id)).status


async def test_bob_pays_an_order_and_a_second_or_late_payment_goes_back_to_its_payer(
    core: Core, cases: UseCases, node: LndNode, merchant: User, regtest: Network
) -> None:
    made = await cases.orders.create(
        merchant.id, merchant_order_id="cart-1", amount_msat=AMOUNT_MSAT, description="tea"
    )
    order = made.order
    held = await node.lookup_invoice(bytes.fromhex(order.payment_hash))
    assert held.amount_msat == AMOUNT_MSAT and held.preimage is None  # a hold invoice

    async with running(OrderWatcher(cases.orders, node, core.commits).run):
        paid = await asyncio.to_thread(pay, regtest, "bob", order.bolt11)
        assert paid["status"] == "SUCCEEDED", paid
        assert await order_status(cases, merchant, order.id) == "paid"
        assert await available(core, merchant.id) == AMOUNT_MSAT
        on_node = await asyncio.to_thread(invoice_state, regtest, "exchange", order.payment_hash)
        assert on_node["state"] == "SETTLED"

        # alice pays the very invoice again: the exchange's node refuses (it is settled).
        try:
            again = await asyncio.to_thread(pay, regtest, "alice", order.bolt11)
            assert again["status"] == "FAILED", again
        except PayRefused:
            pass  # refused before anything went out: not paid either
        assert await available(core, merchant.id) == AMOUNT_MSAT

        # A cancelled order: bob's late payment is refused by our node and returns to him.
        late = await cases.orders.create(
            merchant.id, merchant_order_id="cart-2", amount_msat=AMOUNT_MSAT
        )
        await cases.orders.cancel(merchant.id, late.order.id)
        try:
            refused = await asyncio.to_thread(pay, regtest, "bob", late.order.bolt11)
            assert refused["status"] == "FAILED", refused
            assert refused["failure_reason"] == "FAILURE_REASON_INCORRECT_PAYMENT_DETAILS"
        except PayRefused:
            pass  # bob's lnd may refuse before sending: also not paid
        assert await order_status(cases, merchant, late.order.id) == "cancelled"
        assert await available(core, merchant.id) == AMOUNT_MSAT
        canceled = await asyncio.to_thread(
            invoice_state, regtest, "exchange", late.order.payment_hash
        )
        assert canceled["state"] == "CANCELED"

    assert core.uow.read_sync(check_ledger).ok


async def test_a_refund_goes_to_bobs_invoice_as_a_withdrawal(
    core: Core, cases: UseCases, node: LndNode, merchant: User, regtest: Network
) -> None:
    made = await cases.orders.create(
        merchant.id, merchant_order_id="cart-1", amount_msat=AMOUNT_MSAT
    )
    async with running(OrderWatcher(cases.orders, node, core.commits).run):
        paid = await asyncio.to_thread(pay, regtest, "bob", made.order.bolt11)
        assert paid["status"] == "SUCCEEDED", paid
        assert await order_status(cases, merchant, made.order.id) == "paid"

    refund_msat = 25_000
    bolt11, payment_hash = await asyncio.to_thread(bob_invoice, regtest, refund_msat, "refund")
    refund = await cases.refunds.create(
        merchant.id,
        made.order.id,
        amount_msat=refund_msat,
        reason="one tea was cold",
        bolt11=bolt11,
        lightning_address=None,
        idempotency=("refund-1", "h"),
    )
    assert refund.withdrawal_id is not None and refund.destination == bolt11
    worker_node = spending_node(core.config)
    try:
        async with running(payment_worker(core, worker_node, poll_s=0.05, track_every_s=0.1).run):
            await eventually(
                "the refund to succeed",
                lambda: cases.refunds.of_order(merchant.id, made.order.id),
                lambda refunds: refunds[0].status == "succeeded",
                60,
            )
    finally:
        await worker_node.close()
    settled = await asyncio.to_thread(invoice_state, regtest, "bob", payment_hash)
    assert settled["state"] == "SETTLED" and int(settled["amt_paid_msat"]) == refund_msat
    view = await cases.orders.get(merchant.id, made.order.id)
    assert (view.status, view.refunded_msat) == ("paid", refund_msat)
    assert await available(core, merchant.id) <= AMOUNT_MSAT - refund_msat  # and its fee
    assert core.uow.read_sync(check_ledger).ok
