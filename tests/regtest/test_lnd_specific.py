"""What only a real LND shows: the adapter across LND and adapter restarts, and the macaroons.

The exchange's lnd is driven through ``LndNode``; bob (the outside) through his REST API, as
in the contract harness (tests/contract/lnd_harness.py). Every wait polls with a deadline.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

from lngate.lightning import errors
from lngate.lightning.lnd import LndNode, ReconnectPolicy
from lngate.lightning.lnd._client import tls_context
from lngate.lightning.node import FailureReason, Invoice, InvoiceState, Node, Payment, PaymentStatus
from lngate.regtest import Network
from tests.contract.lnd_harness import LndHarness

pytestmark = pytest.mark.regtest

FEE_LIMIT_MSAT = 50_000
WAIT_S = 15.0
# LND is down for seconds during a restart: retry often, and never give up within the test.
QUICK_RECONNECT = ReconnectPolicy(initial_delay_s=0.1, max_delay_s=0.5, attempts_max=600)

T = TypeVar("T")


@pytest.fixture
async def lnd(regtest: Network) -> AsyncIterator[LndHarness]:
    harness = LndHarness(regtest)
    yield harness
    await harness.close()


async def eventually(what: str, probe: Callable[[], Awaitable[T]], done: Callable[[T], bool]) -> T:
    """Await ``probe()`` until ``done`` holds for its answer; fail at the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S
    while True:
        answer = await probe()
        if done(answer):
            return answer
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last: {answer!r}")
        await asyncio.sleep(0.05)


async def settled_payment(node: Node, payment_hash: bytes) -> Payment:
    return await eventually(
        "the payment to leave IN_FLIGHT",
        lambda: node.track_payment(payment_hash),
        lambda p: p.status is not PaymentStatus.IN_FLIGHT,
    )


async def paid_by_bob(lnd: LndHarness, invoice: Invoice) -> None:
    payment = await lnd.pay_from_outside(invoice.bolt11)
    assert payment.status is PaymentStatus.SUCCEEDED, payment


def exchange_payments(lnd: LndHarness, payment_hash: bytes) -> list[dict[str, object]]:
    """Every payment the exchange's lnd recorded for the hash (over its admin REST API)."""
    listed = lnd.network.rest(
        "exchange",
        "GET",
        "/v1/payments",
        params={"include_incomplete": "true", "max_payments": "1000", "reversed": "true"},
    )
    return [p for p in listed.get("payments", []) if p["payment_hash"] == payment_hash.hex()]


# --- (a) an LND restart under an invoice subscription ----------------------------------------


SUBSCRIBE_PATH = "/v1/invoices/subscribe"


class GatedTransport(httpx.AsyncBaseTransport):
    """LND's TLS transport, counting requests per path; while ``subscribe_gate`` is clear,
    invoice-stream connections wait before they go out (so a test decides when the adapter
    gets to reconnect)."""

    def __init__(self, tls_cert: Path) -> None:
        self._inner = httpx.AsyncHTTPTransport(verify=tls_context(tls_cert))
        self.paths: list[str] = []
        self.subscribe_gate = asyncio.Event()
        self.subscribe_gate.set()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == SUBSCRIBE_PATH:
            await self.subscribe_gate.wait()
        self.paths.append(request.url.path)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


async def test_invoice_stream_resumes_across_an_lnd_restart(lnd: LndHarness) -> None:
    transport = GatedTransport(Path(lnd.network.nodes["exchange"].tls_cert))
    node = lnd.new_node(reconnect=QUICK_RECONNECT, transport=transport)
    try:
        warm_up = await node.create_invoice(1_000, memo="before the stream")
        await paid_by_bob(lnd, warm_up)
        start = await eventually(
            "the warm-up invoice to settle",
            lambda: node.lookup_invoice(warm_up.payment_hash),
            lambda i: i.state is InvoiceState.SETTLED,
        )
        before, during, after, last = [
            await node.create_invoice(amount, memo=name)
            for amount, name in (
                (2_000, "before"),
                (3_000, "during"),
                (4_000, "after"),
                (5_000, "sentinel"),
            )
        ]
        seen: list[Invoice] = []
        got: dict[bytes, asyncio.Event] = {
            i.payment_hash: asyncio.Event() for i in (before, during, after, last)
        }

        async def consume() -> None:
            async for invoice in node.subscribe_invoices(after_settle_index=start.settle_index):
                seen.append(invoice)
                if invoice.payment_hash in got:
                    got[invoice.payment_hash].set()

        consumer = asyncio.create_task(consume())
        try:
            await paid_by_bob(lnd, before)
            async with asyncio.timeout(WAIT_S):
                await got[before.payment_hash].wait()

            # Stop and start the exchange's lnd; the stream breaks under the consumer. While
            # lnd is down nothing can pay it: "during" is paid the moment it is back, and the
            # adapter's reconnect is held until then, so "during" can only reach it through
            # LND's replay from the last settle index the adapter saw.
            transport.subscribe_gate.clear()
            await asyncio.to_thread(lnd.network.restart_lnd, "exchange")
            await asyncio.to_thread(lnd.network.wait_active_channels, "alice", 2)
            await asyncio.to_thread(lnd.network.wait_route, "bob", "exchange")
            await paid_by_bob(lnd, during)
            assert not got[during.payment_hash].is_set()
            transport.subscribe_gate.set()
            async with asyncio.timeout(WAIT_S):
                await got[during.payment_hash].wait()
            # Reconnected: "after" arrives live, and the sentinel closes the count.
            await paid_by_bob(lnd, after)
            await paid_by_bob(lnd, last)
            async with asyncio.timeout(WAIT_S):
                for event in got.values():
                    await event.wait()
        finally:
            consumer.cancel()
            with pytest.raises(asyncio.CancelledError):
                await consumer

        settled = [i for i in seen if i.state is InvoiceState.SETTLED]
        hashes = [i.payment_hash for i in settled]
        for invoice in (before, during, after, last):
            assert hashes.count(invoice.payment_hash) == 1, invoice.memo
        assert hashes == [
            before.payment_hash,
            during.payment_hash,
            after.payment_hash,
            last.payment_hash,
        ]
        indexes = [i.settle_index for i in settled]
        assert indexes == list(range(start.settle_index + 1, start.settle_index + 5))
        # One stream before the restart, at least one after it.
        assert transport.paths.count(SUBSCRIBE_PATH) >= 2
    finally:
        await node.close()


# --- (b) a payment in flight across an adapter restart ---------------------------------------


async def test_in_flight_payment_survives_an_adapter_restart_and_succeeds(
    lnd: LndHarness,
) -> None:
    held = await lnd.held_invoice_from_outside(21_000)
    first = lnd.new_node()
    started = await first.pay(held.bolt11, fee_limit_msat=FEE_LIMIT_MSAT, timeout_s=0)
    assert started.status is PaymentStatus.IN_FLIGHT
    await first.close()  # lngate stops; lnd and the HTLC held at bob go on

    second = lnd.new_node()
    try:
        tracked = await second.track_payment(held.payment_hash)
        assert tracked.status is PaymentStatus.IN_FLIGHT
        with pytest.raises(errors.AlreadyPaid):
            await second.pay(held.bolt11, fee_limit_msat=FEE_LIMIT_MSAT)

        await lnd.settle_held(held)
        done = await settled_payment(second, held.payment_hash)
        assert done.status is PaymentStatus.SUCCEEDED
        assert done.preimage is not None
        assert done.preimage == lnd.preimage_of(held)
        assert hashlib.sha256(done.preimage).digest() == held.payment_hash
        assert done.amount_msat == 21_000
        with pytest.raises(errors.AlreadyPaid):
            await second.pay(held.bolt11, fee_limit_msat=FEE_LIMIT_MSAT)
    finally:
        await second.close()
    # Paid once: one payment with one settled HTLC at the exchange, the amount once at bob.
    (payment,) = await asyncio.to_thread(exchange_payments, lnd, held.payment_hash)
    assert [h["status"] for h in payment["htlcs"]] == ["SUCCEEDED"]  # type: ignore[union-attr]
    invoice = await asyncio.to_thread(
        lnd.outside_rest, "GET", f"/v1/invoice/{held.payment_hash.hex()}"
    )
    assert invoice["state"] == "SETTLED" and int(invoice["amt_paid_msat"]) == 21_000


async def test_in_flight_payment_survives_an_adapter_restart_and_fails(lnd: LndHarness) -> None:
    held = await lnd.held_invoice_from_outside(22_000)
    first = lnd.new_node()
    started = await first.pay(held.bolt11, fee_limit_msat=FEE_LIMIT_MSAT, timeout_s=0)
    assert started.status is PaymentStatus.IN_FLIGHT
    await first.close()

    second = lnd.new_node()
    try:
        assert (await second.track_payment(held.payment_hash)).status is PaymentStatus.IN_FLIGHT
        with pytest.raises(errors.AlreadyPaid):
            await second.pay(held.bolt11, fee_limit_msat=FEE_LIMIT_MSAT)

        await lnd.cancel_held(held)
        done = await settled_payment(second, held.payment_hash)
        assert done.status is PaymentStatus.FAILED
        assert done.failure_reason is FailureReason.INCORRECT_PAYMENT_DETAILS
        assert done.preimage is None
    finally:
        await second.close()
    (payment,) = await asyncio.to_thread(exchange_payments, lnd, held.payment_hash)
    assert payment["status"] == "FAILED"
    assert all(h["status"] == "FAILED" for h in payment["htlcs"])  # type: ignore[union-attr]


# --- (c, d) the invoice-only macaroon --------------------------------------------------------


@pytest.fixture
async def invoice_node(regtest: Network) -> AsyncIterator[LndNode]:
    exchange = regtest.nodes["exchange"]
    node = LndNode.from_files(
        exchange.rest_url,
        Path(exchange.tls_cert),
        Path(regtest.invoice_macaroon),
        reconnect=QUICK_RECONNECT,
    )
    yield node
    await node.close()


async def test_invoice_macaroon_is_refused_a_payment(
    lnd: LndHarness, invoice_node: LndNode
) -> None:
    bolt11 = await lnd.invoice_from_outside(9_000)
    payment_hash = (await invoice_node.decode(bolt11)).payment_hash

    with pytest.raises(errors.PermissionDenied):
        await invoice_node.pay(bolt11, fee_limit_msat=FEE_LIMIT_MSAT)
    with pytest.raises(errors.PermissionDenied):
        await invoice_node.send_onchain(await lnd.node.new_address(), 10_000, 2)

    # Tracking is offchain:read, which the invoice macaroon has: nothing was sent.
    untracked = await invoice_node.track_payment(payment_hash)
    assert untracked.status is PaymentStatus.UNKNOWN

    assert await asyncio.to_thread(exchange_payments, lnd, payment_hash) == []
    assert await asyncio.to_thread(lnd.outside_invoice_state, payment_hash) == "OPEN"


async def test_invoice_macaroon_creates_looks_up_cancels_decodes_and_follows_invoices(
    lnd: LndHarness, invoice_node: LndNode
) -> None:
    info = await invoice_node.get_info()
    assert info.pubkey == lnd.network.nodes["exchange"].pubkey

    invoice = await invoice_node.create_invoice(11_000, memo="deposit", expiry_s=600)
    assert invoice.state is InvoiceState.OPEN
    assert (await invoice_node.lookup_invoice(invoice.payment_hash)).bolt11 == invoice.bolt11
    decoded = await invoice_node.decode(invoice.bolt11)
    assert (decoded.payment_hash, decoded.payee) == (invoice.payment_hash, info.pubkey)
    outside = await invoice_node.decode(await lnd.invoice_from_outside(3_000))
    assert outside.payee == lnd.network.nodes["bob"].pubkey

    canceled = await invoice_node.create_invoice(12_000)
    await invoice_node.cancel_invoice(canceled.payment_hash)
    looked_up = await invoice_node.lookup_invoice(canceled.payment_hash)
    assert looked_up.state is InvoiceState.CANCELED

    stream = invoice_node.subscribe_invoices(after_settle_index=0)
    try:
        await paid_by_bob(lnd, invoice)
        async with asyncio.timeout(WAIT_S):
            async for event in stream:
                if event.payment_hash == invoice.payment_hash:
                    break
        assert event.state is InvoiceState.SETTLED and event.amount_paid_msat == 11_000
        assert event.preimage is not None
        assert hashlib.sha256(event.preimage).digest() == invoice.payment_hash
    finally:
        await stream.aclose()  # type: ignore[attr-defined]
