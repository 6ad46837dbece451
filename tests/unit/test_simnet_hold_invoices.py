"""simnet hold invoices beyond the Node contract: expiry of OPEN vs ACCEPTED ones, a second
payer, STUCK faults, other processes, the CLI, and state dirs from before hold invoices."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lngate.lightning import errors
from lngate.lightning.node import FailureReason, Invoice, InvoiceState, PaymentStatus
from lngate.lightning.simnet import FaultKind, SimnetNetwork, SimnetNode
from lngate.lightning.simnet.cli import app
from lngate.lightning.simnet.store import DB_FILENAME

FEE_LIMIT_MSAT = 50_000
WAIT_S = 5.0
START_MS = 1_800_000_000_000


class Clock:
    def __init__(self) -> None:
        self.now_ms = START_MS

    def __call__(self) -> int:
        return self.now_ms


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "data" / "simnet"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def net(state_dir: Path, clock: Clock) -> Iterator[SimnetNetwork]:
    with SimnetNetwork(state_dir, clock_ms=clock) as network:
        yield network


@pytest.fixture
async def exchange(net: SimnetNetwork) -> AsyncIterator[SimnetNode]:
    node = SimnetNode(net)
    yield node
    await node.close()


def preimage_and_hash() -> tuple[bytes, bytes]:
    preimage = os.urandom(32)
    return preimage, hashlib.sha256(preimage).digest()


def hold(
    net: SimnetNetwork, amount_msat: int = 10_000, expiry_s: int = 60
) -> tuple[bytes, Invoice]:
    preimage, payment_hash = preimage_and_hash()
    return preimage, net.create_hold_invoice(
        "exchange", payment_hash, amount_msat, expiry_s=expiry_s
    )


def channel_total_msat(net: SimnetNetwork) -> int:
    total = 0
    for name in net.nodes():
        b = net.balances(name)
        total += b.channel_local_msat + b.pending_htlcs_msat
    return total


def test_open_hold_invoice_expires(net: SimnetNetwork, clock: Clock) -> None:
    _, invoice = hold(net, expiry_s=60)
    clock.now_ms += 61_000
    assert net.lookup_invoice("exchange", invoice.payment_hash).state is InvoiceState.CANCELED
    with pytest.raises(errors.InvoiceExpired):
        net.pay("carol", invoice.bolt11, fee_limit_msat=FEE_LIMIT_MSAT)


def test_accepted_hold_invoice_outlives_its_expiry(net: SimnetNetwork, clock: Clock) -> None:
    preimage, invoice = hold(net, amount_msat=25_000, expiry_s=60)
    paid = net.pay("carol", invoice.bolt11, fee_limit_msat=FEE_LIMIT_MSAT)
    assert paid.status is PaymentStatus.IN_FLIGHT
    clock.now_ms += 3_600_000  # an hour past its expiry: still held
    accepted = net.lookup_invoice("exchange", invoice.payment_hash)
    assert accepted.state is InvoiceState.ACCEPTED and accepted.amount_paid_msat == 25_000
    assert net.track_payment("carol", invoice.payment_hash).status is PaymentStatus.IN_FLIGHT
    net.settle_invoice("exchange", preimage)
    settled = net.lookup_invoice("exchange", invoice.payment_hash)
    assert settled.state is InvoiceState.SETTLED and settled.preimage == preimage
    assert settled.settled_at == clock.now_ms // 1000
    payment = net.track_payment("carol", invoice.payment_hash)
    assert payment.status is PaymentStatus.SUCCEEDED and payment.preimage == preimage


def test_held_htlcs_stay_locked_until_settled(net: SimnetNetwork) -> None:
    total = channel_total_msat(net)
    carol_before = net.balances("carol")
    exchange_before = net.balances("exchange")
    preimage, invoice = hold(net, amount_msat=100_000)
    net.pay("carol", invoice.bolt11, fee_limit_msat=FEE_LIMIT_MSAT)
    during = net.balances("carol")
    assert during.pending_htlcs_msat > 100_000  # the amount and the hub's fee
    assert net.balances("exchange").channel_local_msat == exchange_before.channel_local_msat
    assert channel_total_msat(net) == total
    net.settle_invoice("exchange", preimage)
    after = net.balances("carol")
    assert after.pending_htlcs_msat == carol_before.pending_htlcs_msat
    assert after.channel_local_msat == carol_before.channel_local_msat - during.pending_htlcs_msat
    exchange_after = net.balances("exchange")
    assert exchange_after.channel_local_msat == exchange_before.channel_local_msat + 100_000
    assert channel_total_msat(net) == total


def test_second_payer_refused_while_one_is_held(net: SimnetNetwork) -> None:
    preimage, invoice = hold(net, amount_msat=20_000)
    assert net.pay("carol", invoice.bolt11, fee_limit_msat=FEE_LIMIT_MSAT).status is (
        PaymentStatus.IN_FLIGHT
    )
    second = net.pay("dave", invoice.bolt11, fee_limit_msat=FEE_LIMIT_MSAT)
    assert second.status is PaymentStatus.FAILED
    assert second.failure_reason is FailureReason.INCORRECT_PAYMENT_DETAILS
    still = net.lookup_invoice("exchange", invoice.payment_hash)  # the refusal released nothing
    assert still.state is InvoiceState.ACCEPTED and still.amount_paid_msat == 20_000
    net.settle_invoice("exchange", preimage)
    assert net.track_payment("carol", invoice.payment_hash).status is PaymentStatus.SUCCEEDED
    late = net.pay("dave", invoice.bolt11, fee_limit_msat=FEE_LIMIT_MSAT)
    assert late.failure_reason is FailureReason.INCORRECT_PAYMENT_DETAILS
    assert net.lookup_invoice("exchange", invoice.payment_hash).amount_paid_msat == 20_000


def test_cancel_fails_back_and_a_retry_is_refused(net: SimnetNetwork) -> None:
    total = channel_total_msat(net)
    carol_before = net.balances("carol")
    preimage, invoice = hold(net)
    net.pay("carol", invoice.bolt11, fee_limit_msat=FEE_LIMIT_MSAT)
    net.cancel_invoice("exchange", invoice.payment_hash)
    net.cancel_invoice("exchange", invoice.payment_hash)  # a no-op
    failed = net.track_payment("carol", invoice.payment_hash)
    assert failed.status is PaymentStatus.FAILED
    assert failed.failure_reason is FailureReason.INCORRECT_PAYMENT_DETAILS
    assert net.balances("carol") == carol_before and channel_total_msat(net) == total
    with pytest.raises(errors.InvalidNodeRequest):
        net.settle_invoice("exchange", preimage)
    retried = net.pay("carol", invoice.bolt11, fee_limit_msat=FEE_LIMIT_MSAT)
    assert retried.status is PaymentStatus.FAILED
    assert net.lookup_invoice("exchange", invoice.payment_hash).state is InvoiceState.CANCELED


def test_settle_refusals(net: SimnetNetwork) -> None:
    preimage, invoice = hold(net)
    with pytest.raises(errors.InvalidNodeRequest):  # OPEN: nothing held
        net.settle_invoice("exchange", preimage)
    with pytest.raises(errors.InvoiceNotFound):
        net.settle_invoice("exchange", os.urandom(32))
    with pytest.raises(errors.InvoiceNotFound):  # another node's invoice
        net.settle_invoice("dave", preimage)
    with pytest.raises(ValueError):
        net.settle_invoice("exchange", preimage[:16])
    regular = net.create_invoice("exchange", 1_000)
    assert regular.preimage is not None
    with pytest.raises(errors.InvalidNodeRequest):  # not a hold invoice
        net.settle_invoice("exchange", regular.preimage)
    with pytest.raises(errors.InvalidNodeRequest):  # the hash is taken
        net.create_hold_invoice("exchange", regular.payment_hash, 1_000, expiry_s=60)
    with pytest.raises(errors.InvalidNodeRequest):  # the release lever is not the preimage
        net.pay("carol", invoice.bolt11, fee_limit_msat=FEE_LIMIT_MSAT)
        net.release_payment(invoice.payment_hash, succeed=True)


def test_stuck_fault_that_fails_releases_the_hold(net: SimnetNetwork, clock: Clock) -> None:
    preimage, invoice = hold(net)
    net.faults.set(FaultKind.STUCK, payment_hash=invoice.payment_hash, hold_ms=1_000, succeed=False)
    net.pay("carol", invoice.bolt11, fee_limit_msat=FEE_LIMIT_MSAT)
    assert net.lookup_invoice("exchange", invoice.payment_hash).state is InvoiceState.ACCEPTED
    clock.now_ms += 1_001
    reopened = net.lookup_invoice("exchange", invoice.payment_hash)
    assert reopened.state is InvoiceState.OPEN and reopened.amount_paid_msat == 0
    assert net.track_payment("carol", invoice.payment_hash).failure_reason is (
        FailureReason.NO_ROUTE
    )
    net.faults.clear()
    net.pay("carol", invoice.bolt11, fee_limit_msat=FEE_LIMIT_MSAT)  # the retry is held
    net.settle_invoice("exchange", preimage)
    assert net.track_payment("carol", invoice.payment_hash).status is PaymentStatus.SUCCEEDED


def test_settle_before_a_failing_stuck_fault_fires(net: SimnetNetwork, clock: Clock) -> None:
    preimage, invoice = hold(net)
    net.faults.set(
        FaultKind.STUCK, payment_hash=invoice.payment_hash, hold_ms=60_000, succeed=False
    )
    net.pay("carol", invoice.bolt11, fee_limit_msat=FEE_LIMIT_MSAT)
    net.settle_invoice("exchange", preimage)
    clock.now_ms += 120_000
    assert net.lookup_invoice("exchange", invoice.payment_hash).state is InvoiceState.SETTLED
    assert net.track_payment("carol", invoice.payment_hash).status is PaymentStatus.SUCCEEDED


async def test_offline_payee_cannot_settle(net: SimnetNetwork, exchange: SimnetNode) -> None:
    preimage, invoice = hold(net)
    net.pay("carol", invoice.bolt11, fee_limit_msat=FEE_LIMIT_MSAT)
    net.faults.set(FaultKind.OFFLINE, node="exchange")
    with pytest.raises(errors.NodeUnreachable):
        await exchange.settle_invoice(preimage)
    with pytest.raises(errors.NodeUnreachable):
        await exchange.create_hold_invoice(os.urandom(32), 1_000, expiry_s=60)
    net.faults.clear()
    await exchange.settle_invoice(preimage)
    assert net.track_payment("carol", invoice.payment_hash).status is PaymentStatus.SUCCEEDED


async def test_subscribe_invoice_sees_another_process(state_dir: Path) -> None:
    """The exchange's node follows an invoice that another instance (the CLI, a test) pays and
    then settles; each state once, then the end."""
    exchange = SimnetNode.open(state_dir)
    try:
        preimage, payment_hash = preimage_and_hash()
        invoice = await exchange.create_hold_invoice(payment_hash, 7_000, expiry_s=60)
        states: list[tuple[InvoiceState, int]] = []

        async def follow() -> None:
            async for update in exchange.subscribe_invoice(payment_hash):
                states.append((update.state, update.amount_paid_msat))

        following = asyncio.create_task(follow())
        with SimnetNetwork(state_dir) as other:
            await asyncio.sleep(0.05)
            other.pay("dave", invoice.bolt11, fee_limit_msat=FEE_LIMIT_MSAT)
            await asyncio.sleep(0.1)
            other.settle_invoice("exchange", preimage)
        await asyncio.wait_for(following, WAIT_S)
        assert states == [
            (InvoiceState.OPEN, 0),
            (InvoiceState.ACCEPTED, 7_000),
            (InvoiceState.SETTLED, 7_000),
        ]
    finally:
        await exchange.close()


async def test_subscribe_invoice_raises_when_the_node_goes_offline(
    net: SimnetNetwork, exchange: SimnetNode
) -> None:
    _, invoice = hold(net)
    updates = exchange.subscribe_invoice(invoice.payment_hash)
    try:
        assert (await anext(updates)).state is InvoiceState.OPEN
        net.faults.set(FaultKind.OFFLINE, node="exchange")
        with pytest.raises(errors.NodeUnreachable):
            async with asyncio.timeout(WAIT_S):
                await anext(updates)
    finally:
        await updates.aclose()  # type: ignore[attr-defined]


def test_cli_pays_a_hold_invoice_in_flight(state_dir: Path, net: SimnetNetwork) -> None:
    preimage, invoice = hold(net, amount_msat=21_000)
    args = ["pay", "carol", invoice.bolt11, "--data-dir", str(state_dir.parent)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["status"] == "in_flight" and out["preimage"] is None
    net.settle_invoice("exchange", preimage)
    assert net.track_payment("carol", invoice.payment_hash).preimage == preimage


def test_state_dir_from_before_hold_invoices_is_upgraded(state_dir: Path) -> None:
    with SimnetNetwork(state_dir) as net:
        regular = net.create_invoice("exchange", 1_000)
        net.pay("carol", regular.bolt11, fee_limit_msat=FEE_LIMIT_MSAT)
    # Back to the old schema: preimage NOT NULL, no is_hold, no payments.accepted.
    conn = sqlite3.connect(state_dir / DB_FILENAME, isolation_level=None)
    conn.execute("BEGIN")
    sql = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'invoices'").fetchone()[0]
    old_sql = sql.replace("preimage BLOB,", "preimage BLOB NOT NULL,")
    old_sql = old_sql[: old_sql.index(",\n        is_hold")] + ")"
    conn.execute("ALTER TABLE invoices RENAME TO invoices_new")
    conn.execute("DROP INDEX invoices_settle")
    conn.execute(old_sql)
    columns = (
        "payment_hash, node, bolt11, preimage, payment_secret, amount_msat, state, created_at,"
        " expiry_s, add_index, settle_index, amount_paid_msat, settled_at, memo, description_hash"
    )
    conn.execute(f"INSERT INTO invoices ({columns}) SELECT {columns} FROM invoices_new")
    conn.execute("DROP TABLE invoices_new")
    conn.execute("CREATE INDEX invoices_settle ON invoices (node, settle_index)")
    conn.execute("ALTER TABLE payments DROP COLUMN accepted")
    conn.execute("COMMIT")
    conn.close()

    with SimnetNetwork(state_dir) as net:
        settled = net.lookup_invoice("exchange", regular.payment_hash)
        assert settled.state is InvoiceState.SETTLED and settled.preimage == regular.preimage
        assert [i.payment_hash for i in net.settled_invoices_after("exchange", 0)] == [
            regular.payment_hash
        ]
        preimage, invoice = hold(net)
        net.pay("dave", invoice.bolt11, fee_limit_msat=FEE_LIMIT_MSAT)
        net.settle_invoice("exchange", preimage)
        assert net.track_payment("dave", invoice.payment_hash).status is PaymentStatus.SUCCEEDED
