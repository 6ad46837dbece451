"""The contract of the ``Node`` port, run against every adapter through ``NodeHarness``.

Nothing here may depend on one adapter: simnet-only faults live in tests/integration."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from lngate.lightning import errors
from lngate.lightning.bolt11 import invoice_network
from lngate.lightning.node import (
    HOLD_INVOICE_CLTV,
    Balances,
    FailureReason,
    Invoice,
    InvoiceState,
    Network,
    Node,
    Payment,
    PaymentStatus,
)
from tests.contract.harness import NodeHarness

FEE_LIMIT_MSAT = 50_000
WAIT_S = 5.0
SPEC_MAINNET_INVOICE = json.loads(
    Path(
        os.environ.get("LNGATE_BOLT11_VECTORS", "/work/shared/test-vectors/bolt11.json")
    ).read_text()
)["valid"][1]["invoice"]


async def next_matching(
    stream: AsyncIterator[Invoice], predicate: Callable[[Invoice], bool], timeout_s: float = WAIT_S
) -> Invoice:
    async with asyncio.timeout(timeout_s):
        async for invoice in stream:  # bounded by the timeout
            if predicate(invoice):
                return invoice
    raise AssertionError("subscription ended")


async def wait_for_state(node: Node, payment_hash: bytes, state: InvoiceState) -> Invoice:
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while True:
        invoice = await node.lookup_invoice(payment_hash)
        if invoice.state is state or asyncio.get_running_loop().time() > deadline:
            return invoice
        await asyncio.sleep(0.01)


async def wait_for_payment(node: Node, payment_hash: bytes) -> Payment:
    """The payment once it leaves IN_FLIGHT (or still IN_FLIGHT at the deadline): a payee's
    settle or cancel reaches the payer hop by hop, not at once."""
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while True:
        payment = await node.track_payment(payment_hash)
        if payment.status is not PaymentStatus.IN_FLIGHT:
            return payment
        if asyncio.get_running_loop().time() > deadline:
            return payment
        await asyncio.sleep(0.01)


async def wait_for_outside_payment(harness: NodeHarness, payment_hash: bytes) -> Payment:
    """The outside wallet's payment once it leaves IN_FLIGHT (or as it is at the deadline)."""
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while True:
        payment = await harness.outside_payment(payment_hash)
        if payment.status is not PaymentStatus.IN_FLIGHT:
            return payment
        if asyncio.get_running_loop().time() > deadline:
            return payment
        await asyncio.sleep(0.02)


async def wait_for_balances(node: Node, predicate: Callable[[Balances], bool]) -> Balances:
    """The balances once ``predicate`` holds (or as they are at the deadline): HTLCs are added
    to and removed from the channels after ``pay`` returns and after the payee resolves them."""
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while True:
        balances = await node.balances()
        if predicate(balances) or asyncio.get_running_loop().time() > deadline:
            return balances
        await asyncio.sleep(0.01)


async def test_get_info(harness: NodeHarness) -> None:
    info = await harness.node.get_info()
    assert len(bytes.fromhex(info.pubkey)) == 33
    assert info.network in (Network.SIMNET, Network.REGTEST)
    assert info.block_height > 0
    assert isinstance(harness.node, Node)


async def test_invoice_round_trip(harness: NodeHarness) -> None:
    node = harness.node
    info = await node.get_info()
    invoice = await node.create_invoice(21_000, memo="deposit #1", expiry_s=600)
    assert invoice.state is InvoiceState.OPEN
    assert (invoice.amount_msat, invoice.expiry_s, invoice.memo) == (21_000, 600, "deposit #1")
    assert invoice.settle_index == 0 and invoice.amount_paid_msat == 0
    looked_up = await node.lookup_invoice(invoice.payment_hash)
    assert looked_up.bolt11 == invoice.bolt11 and looked_up.state is InvoiceState.OPEN
    decoded = await node.decode(invoice.bolt11)
    assert decoded.payment_hash == invoice.payment_hash
    assert decoded.payee == info.pubkey
    assert decoded.amount_msat == 21_000
    assert decoded.expiry_s == 600 and decoded.created_at == invoice.created_at
    assert decoded.description == "deposit #1"
    assert decoded.network is invoice_network(info.network)
    assert decoded.payment_secret is not None and len(decoded.payment_secret) == 32


async def test_paid_invoice_settles_with_preimage(harness: NodeHarness) -> None:
    invoice = await harness.node.create_invoice(30_000)
    payment = await harness.pay_from_outside(invoice.bolt11)
    assert payment.status is PaymentStatus.SUCCEEDED
    settled = await wait_for_state(harness.node, invoice.payment_hash, InvoiceState.SETTLED)
    assert settled.state is InvoiceState.SETTLED
    assert settled.amount_paid_msat == 30_000 and settled.settle_index > 0
    assert settled.preimage is not None
    assert hashlib.sha256(settled.preimage).digest() == invoice.payment_hash


async def test_amountless_invoice_records_amount_paid(harness: NodeHarness) -> None:
    invoice = await harness.node.create_invoice(None, memo="any amount")
    assert invoice.amount_msat is None
    assert (await harness.node.decode(invoice.bolt11)).amount_msat is None
    payment = await harness.pay_from_outside(invoice.bolt11, amount_msat=12_345_000)
    assert payment.status is PaymentStatus.SUCCEEDED
    settled = await wait_for_state(harness.node, invoice.payment_hash, InvoiceState.SETTLED)
    assert settled.amount_paid_msat == 12_345_000


async def test_description_hash_invoice(harness: NodeHarness) -> None:
    description_hash = hashlib.sha256(b'[["text/plain","pay alice"]]').digest()
    invoice = await harness.node.create_invoice(5_000, description_hash=description_hash)
    assert invoice.description_hash == description_hash
    decoded = await harness.node.decode(invoice.bolt11)
    assert decoded.description_hash == description_hash and decoded.description is None
    looked_up = await harness.node.lookup_invoice(invoice.payment_hash)
    assert looked_up.description_hash == description_hash


async def test_cancel_invoice_refuses_payment(harness: NodeHarness) -> None:
    invoice = await harness.node.create_invoice(8_000)
    await harness.node.cancel_invoice(invoice.payment_hash)
    assert (await harness.node.lookup_invoice(invoice.payment_hash)).state is InvoiceState.CANCELED
    payment = await harness.pay_from_outside(invoice.bolt11)
    assert payment.status is PaymentStatus.FAILED
    assert (await harness.node.lookup_invoice(invoice.payment_hash)).state is InvoiceState.CANCELED


async def test_unknown_invoice_not_found(harness: NodeHarness) -> None:
    with pytest.raises(errors.InvoiceNotFound):
        await harness.node.lookup_invoice(os.urandom(32))
    with pytest.raises(errors.InvoiceNotFound):
        await harness.node.cancel_invoice(os.urandom(32))


async def test_subscription_replays_then_follows_then_resumes(harness: NodeHarness) -> None:
    node = harness.node
    first = await node.create_invoice(1_000)
    await harness.pay_from_outside(first.bolt11)
    first = await wait_for_state(node, first.payment_hash, InvoiceState.SETTLED)
    stream = node.subscribe_invoices(after_settle_index=first.settle_index - 1)
    try:
        replayed = await next_matching(stream, lambda i: True)
        assert replayed.payment_hash == first.payment_hash  # replay starts right after
        second = await node.create_invoice(2_000)
        await harness.pay_from_outside(second.bolt11)
        live = await next_matching(stream, lambda i: i.payment_hash == second.payment_hash)
        assert live.state is InvoiceState.SETTLED and live.settle_index > first.settle_index
        # A cancellation may be streamed (simnet) or not (LND sends its invoice subscribers
        # no cancel events; lookup_invoice reports them): if it is, it is CANCELED, and either
        # way the stream goes on with the next settlement.
        third = await node.create_invoice(3_000)
        await node.cancel_invoice(third.payment_hash)
        fourth = await node.create_invoice(4_000)
        await harness.pay_from_outside(fourth.bolt11)
        hashes = (third.payment_hash, fourth.payment_hash)
        event = await next_matching(stream, lambda i: i.payment_hash in hashes)
        if event.payment_hash == third.payment_hash:
            assert event.state is InvoiceState.CANCELED
            event = await next_matching(stream, lambda i: i.payment_hash == fourth.payment_hash)
        assert event.state is InvoiceState.SETTLED and event.settle_index > live.settle_index
    finally:
        await stream.aclose()  # type: ignore[attr-defined]
    restarted = await harness.restart_node()
    resumed = restarted.subscribe_invoices(after_settle_index=first.settle_index)
    try:
        again = await next_matching(resumed, lambda i: i.state is InvoiceState.SETTLED)
        assert again.payment_hash == second.payment_hash and again.settle_index == live.settle_index
    finally:
        await resumed.aclose()  # type: ignore[attr-defined]


async def test_settle_indexes_increase(harness: NodeHarness) -> None:
    indexes = []
    for amount in (1_000, 2_000, 3_000):
        invoice = await harness.node.create_invoice(amount)
        await harness.pay_from_outside(invoice.bolt11)
        settled = await wait_for_state(harness.node, invoice.payment_hash, InvoiceState.SETTLED)
        indexes.append(settled.settle_index)
    assert indexes == sorted(indexes) and len(set(indexes)) == 3


async def test_paying_an_expired_invoice_is_refused(harness: NodeHarness) -> None:
    bolt11 = await harness.expired_invoice_from_outside(10_000)
    with pytest.raises(errors.InvoiceExpired):
        await harness.node.pay(bolt11, fee_limit_msat=FEE_LIMIT_MSAT)


async def test_pay_and_track(harness: NodeHarness) -> None:
    bolt11 = await harness.invoice_from_outside(40_000)
    payment_hash = (await harness.node.decode(bolt11)).payment_hash
    payment = await harness.node.pay(bolt11, fee_limit_msat=FEE_LIMIT_MSAT, timeout_s=10)
    assert payment.status is PaymentStatus.SUCCEEDED
    assert payment.payment_hash == payment_hash and payment.amount_msat == 40_000
    assert payment.preimage is not None
    assert hashlib.sha256(payment.preimage).digest() == payment_hash
    assert 0 <= payment.fee_msat <= FEE_LIMIT_MSAT
    tracked = await harness.node.track_payment(payment_hash)
    assert tracked.status is PaymentStatus.SUCCEEDED and tracked.preimage == payment.preimage
    with pytest.raises(errors.AlreadyPaid):
        await harness.node.pay(bolt11, fee_limit_msat=FEE_LIMIT_MSAT)


async def test_pay_amountless_with_amount(harness: NodeHarness) -> None:
    bolt11 = await harness.invoice_from_outside(None)
    with pytest.raises(errors.InvalidNodeRequest):
        await harness.node.pay(bolt11, fee_limit_msat=FEE_LIMIT_MSAT)
    payment = await harness.node.pay(bolt11, amount_msat=7_000, fee_limit_msat=FEE_LIMIT_MSAT)
    assert payment.status is PaymentStatus.SUCCEEDED and payment.amount_msat == 7_000


async def test_double_pay_refused_while_in_flight(harness: NodeHarness) -> None:
    held = await harness.held_invoice_from_outside(25_000)
    payment = await harness.node.pay(held.bolt11, fee_limit_msat=FEE_LIMIT_MSAT, timeout_s=0)
    assert payment.status is PaymentStatus.IN_FLIGHT
    assert (await harness.node.track_payment(held.payment_hash)).status is PaymentStatus.IN_FLIGHT
    with pytest.raises(errors.AlreadyPaid):
        await harness.node.pay(held.bolt11, fee_limit_msat=FEE_LIMIT_MSAT)
    await harness.settle_held(held)
    tracked = await wait_for_payment(harness.node, held.payment_hash)
    assert tracked.status is PaymentStatus.SUCCEEDED
    assert tracked.preimage is not None
    assert hashlib.sha256(tracked.preimage).digest() == held.payment_hash
    with pytest.raises(errors.AlreadyPaid):
        await harness.node.pay(held.bolt11, fee_limit_msat=FEE_LIMIT_MSAT)


async def test_failed_payment_may_be_retried(harness: NodeHarness) -> None:
    held = await harness.held_invoice_from_outside(25_000)
    payment = await harness.node.pay(held.bolt11, fee_limit_msat=FEE_LIMIT_MSAT, timeout_s=0)
    assert payment.status is PaymentStatus.IN_FLIGHT
    await harness.cancel_held(held)
    failed = await wait_for_payment(harness.node, held.payment_hash)
    assert failed.status is PaymentStatus.FAILED
    assert failed.failure_reason is FailureReason.INCORRECT_PAYMENT_DETAILS
    retried = await harness.node.pay(held.bolt11, fee_limit_msat=FEE_LIMIT_MSAT)  # no AlreadyPaid
    assert retried.status is PaymentStatus.FAILED


async def test_in_flight_locks_funds_then_releases(harness: NodeHarness) -> None:
    before = await harness.node.balances()
    held = await harness.held_invoice_from_outside(60_000)
    await harness.node.pay(held.bolt11, fee_limit_msat=FEE_LIMIT_MSAT, timeout_s=0)
    during = await wait_for_balances(harness.node, lambda b: b.pending_htlcs_msat >= 60_000)
    assert during.pending_htlcs_msat >= 60_000
    assert during.channel_local_msat <= before.channel_local_msat - 60_000
    await harness.cancel_held(held)
    after = await wait_for_balances(
        harness.node, lambda b: b.pending_htlcs_msat == before.pending_htlcs_msat
    )
    assert after.pending_htlcs_msat == before.pending_htlcs_msat
    assert after.channel_local_msat == before.channel_local_msat


async def test_track_unknown_hash(harness: NodeHarness) -> None:
    payment = await harness.node.track_payment(os.urandom(32))
    assert payment.status is PaymentStatus.UNKNOWN


async def test_typed_errors(harness: NodeHarness) -> None:
    node = harness.node
    for junk in ("", "lnbc1", "not an invoice", SPEC_MAINNET_INVOICE[:-1] + "x"):
        with pytest.raises(errors.InvalidInvoice):
            await node.decode(junk)
        with pytest.raises(errors.InvalidInvoice):
            await node.pay(junk, fee_limit_msat=FEE_LIMIT_MSAT)
    with pytest.raises(errors.InvalidNodeRequest):  # a mainnet invoice on a test network
        await node.pay(SPEC_MAINNET_INVOICE, fee_limit_msat=FEE_LIMIT_MSAT)
    own = await node.create_invoice(1_000)
    with pytest.raises(errors.InvalidNodeRequest):  # LND: no self-payments
        await node.pay(own.bolt11, fee_limit_msat=FEE_LIMIT_MSAT)
    with pytest.raises(errors.NoRoute):
        await node.pay(await harness.unroutable_invoice(1_000), fee_limit_msat=FEE_LIMIT_MSAT)
    local_msat = (await node.balances()).channel_local_msat
    too_much = await harness.invoice_from_outside(local_msat + 1_000)
    with pytest.raises(errors.InsufficientBalance):
        await node.pay(too_much, fee_limit_msat=FEE_LIMIT_MSAT)
    with pytest.raises(errors.InvalidNodeRequest):
        await node.create_invoice(-5)


async def test_wallet_and_channels(harness: NodeHarness) -> None:
    node = harness.node
    address = await node.new_address()
    assert address.startswith("bcrt1")
    assert address != await node.new_address()
    balances = await node.balances()
    assert balances.onchain_confirmed_sat > 10_000 and balances.channel_local_msat > 0
    channels = await node.list_channels()
    assert channels and all(c.capacity_sat > 0 for c in channels)
    # LND lists each channel's balance in whole sat (its balance summary keeps the msat), so the
    # two agree to within a sat per channel; simnet agrees exactly.
    listed_msat = sum(c.local_balance_msat for c in channels)
    assert 0 <= balances.channel_local_msat - listed_msat < 1_000 * len(channels)
    txid = await node.send_onchain(address, 10_000, 2)
    assert len(bytes.fromhex(txid)) == 32
    txs = {tx.txid: tx for tx in await node.list_onchain_transactions()}
    assert txid in txs and txs[txid].fee_sat > 0
    with pytest.raises(errors.InvalidNodeRequest):
        await node.send_onchain("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4", 10_000, 2)
    with pytest.raises(errors.InsufficientBalance):
        await node.send_onchain(address, balances.onchain_confirmed_sat * 2, 2)


# --- hold invoices -----------------------------------------------------------------------------


def new_preimage() -> tuple[bytes, bytes]:
    preimage = os.urandom(32)
    return preimage, hashlib.sha256(preimage).digest()


async def test_hold_invoice_held_then_settled(harness: NodeHarness) -> None:
    node = harness.node
    preimage, payment_hash = new_preimage()
    invoice = await node.create_hold_invoice(payment_hash, 50_000, memo="order 1", expiry_s=600)
    assert invoice.payment_hash == payment_hash and invoice.state is InvoiceState.OPEN
    assert (invoice.amount_msat, invoice.expiry_s, invoice.memo) == (50_000, 600, "order 1")
    assert invoice.preimage is None and invoice.amount_paid_msat == 0
    decoded = await node.decode(invoice.bolt11)
    assert decoded.payment_hash == payment_hash and decoded.amount_msat == 50_000
    assert decoded.min_final_cltv_expiry == HOLD_INVOICE_CLTV
    with pytest.raises(errors.InvalidNodeRequest):  # nothing held yet
        await node.settle_invoice(preimage)
    with pytest.raises(errors.InvalidNodeRequest):  # one invoice per hash
        await node.create_hold_invoice(payment_hash, 50_000, expiry_s=600)

    updates = node.subscribe_invoice(payment_hash)
    deposits = node.subscribe_invoices()
    try:
        first = await next_matching(updates, lambda i: True)
        assert first.state is InvoiceState.OPEN and first.payment_hash == payment_hash
        paying = asyncio.create_task(harness.pay_from_outside(invoice.bolt11))
        accepted = await next_matching(updates, lambda i: i.state is not InvoiceState.OPEN)
        assert accepted.state is InvoiceState.ACCEPTED
        assert accepted.amount_paid_msat == 50_000 and accepted.settle_index == 0
        looked_up = await node.lookup_invoice(payment_hash)
        assert looked_up.state is InvoiceState.ACCEPTED and looked_up.amount_paid_msat == 50_000
        assert (await harness.outside_payment(payment_hash)).status is PaymentStatus.IN_FLIGHT
        assert not paying.done() or paying.result().status is PaymentStatus.IN_FLIGHT
        with pytest.raises(errors.InvoiceNotFound):  # a wrong preimage names no invoice
            await node.settle_invoice(os.urandom(32))

        deposit_seen = asyncio.create_task(
            next_matching(deposits, lambda i: i.payment_hash == payment_hash, timeout_s=3 * WAIT_S)
        )
        await node.settle_invoice(preimage)
        settled = await next_matching(updates, lambda i: i.state is not InvoiceState.ACCEPTED)
        assert settled.state is InvoiceState.SETTLED and settled.preimage == preimage
        assert settled.amount_paid_msat == 50_000 and settled.settle_index > 0
        with pytest.raises(StopAsyncIteration):  # the stream ends after a final state
            async with asyncio.timeout(WAIT_S):
                await anext(updates)
        await node.settle_invoice(preimage)  # again: a no-op
        assert (await node.lookup_invoice(payment_hash)).settle_index == settled.settle_index

        paid = await asyncio.wait_for(paying, 3 * WAIT_S)
        assert paid.status in (PaymentStatus.IN_FLIGHT, PaymentStatus.SUCCEEDED)
        outside = await wait_for_outside_payment(harness, payment_hash)
        assert outside.status is PaymentStatus.SUCCEEDED and outside.preimage == preimage

        on_deposit_stream = await deposit_seen
        assert on_deposit_stream.state is InvoiceState.SETTLED
        assert on_deposit_stream.settle_index == settled.settle_index
        with pytest.raises(errors.InvalidNodeRequest):  # settled: nothing left to cancel
            await node.cancel_invoice(payment_hash)
    finally:
        await updates.aclose()  # type: ignore[attr-defined]
        await deposits.aclose()  # type: ignore[attr-defined]


async def test_hold_invoice_canceled_fails_the_payer_back(harness: NodeHarness) -> None:
    node = harness.node
    preimage, payment_hash = new_preimage()
    invoice = await node.create_hold_invoice(payment_hash, 40_000, expiry_s=600)
    paying = asyncio.create_task(harness.pay_from_outside(invoice.bolt11))
    accepted = await wait_for_state(node, payment_hash, InvoiceState.ACCEPTED)
    assert accepted.state is InvoiceState.ACCEPTED and accepted.amount_paid_msat == 40_000

    await node.cancel_invoice(payment_hash)
    await node.cancel_invoice(payment_hash)  # again: a no-op
    paid = await asyncio.wait_for(paying, 3 * WAIT_S)
    assert paid.status in (PaymentStatus.IN_FLIGHT, PaymentStatus.FAILED)
    failed = await wait_for_outside_payment(harness, payment_hash)
    assert failed.status is PaymentStatus.FAILED
    assert failed.failure_reason is FailureReason.INCORRECT_PAYMENT_DETAILS
    canceled = await wait_for_state(node, payment_hash, InvoiceState.CANCELED)
    assert canceled.state is InvoiceState.CANCELED and canceled.settle_index == 0
    with pytest.raises(errors.InvalidNodeRequest):
        await node.settle_invoice(preimage)
    updates = node.subscribe_invoice(payment_hash)
    try:  # a final invoice: its state, then the end
        assert (await next_matching(updates, lambda i: True)).state is InvoiceState.CANCELED
        with pytest.raises(StopAsyncIteration):
            async with asyncio.timeout(WAIT_S):
                await anext(updates)
    finally:
        await updates.aclose()  # type: ignore[attr-defined]

    # A late payment (a customer paying a cancelled order) goes back to the payer.
    late = await harness.pay_from_outside(invoice.bolt11)
    assert late.status is PaymentStatus.FAILED
    assert late.failure_reason is FailureReason.INCORRECT_PAYMENT_DETAILS
    after = await node.lookup_invoice(payment_hash)
    assert after.state is InvoiceState.CANCELED
    assert after.amount_paid_msat == canceled.amount_paid_msat  # no new HTLC held


async def test_hold_invoice_refusals(harness: NodeHarness) -> None:
    node = harness.node
    _, payment_hash = new_preimage()
    with pytest.raises(errors.InvalidNodeRequest):
        await node.create_hold_invoice(payment_hash, 0, expiry_s=600)
    with pytest.raises(errors.InvalidNodeRequest):
        await node.create_hold_invoice(payment_hash, 1_000, expiry_s=0)
    with pytest.raises(errors.InvalidNodeRequest):
        await node.create_hold_invoice(payment_hash, 1_000, expiry_s=600, cltv_expiry=5)
    with pytest.raises(ValueError):
        await node.create_hold_invoice(payment_hash[:31], 1_000, expiry_s=600)
    with pytest.raises(errors.InvoiceNotFound):
        await node.settle_invoice(os.urandom(32))
    with pytest.raises(errors.InvoiceNotFound):
        await next_matching(node.subscribe_invoice(os.urandom(32)), lambda i: True)
    # Settling a hold invoice's twin, a regular invoice that already settled, is a no-op too.
    regular = await node.create_invoice(2_000)
    await harness.pay_from_outside(regular.bolt11)
    settled = await wait_for_state(node, regular.payment_hash, InvoiceState.SETTLED)
    assert settled.preimage is not None
    await node.settle_invoice(settled.preimage)
