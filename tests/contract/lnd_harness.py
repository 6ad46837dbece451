"""The regtest implementation of the contract harness: the node under test is an ``LndNode`` on
the exchange's lnd (spending macaroon); the outside world is bob, reached through his own REST
API with his admin macaroon (never through ``LndNode``, so the adapter does not check itself).
bob pays the exchange through alice and issues the invoices the exchange pays.

The outside calls are blocking (``httpx.Client``) and run in a thread, so the event loop of the
test keeps serving the adapter's own connections (an invoice stream, say) meanwhile.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from lngate.lightning.lnd import LndNode
from lngate.lightning.lnd._mapping import map_payment
from lngate.lightning.node import Network, Node, Payment, PaymentStatus
from lngate.regtest import Network as RegtestNetwork
from tests.contract.harness import HeldInvoice
from tests.helpers import foreign_invoice

OUTSIDE = "bob"
EXCHANGE = "exchange"
OUTSIDE_FEE_LIMIT_SAT = 1_000
OUTSIDE_PAY_TIMEOUT_S = 30
OUTSIDE_RECENT_PAYMENTS = 50
WAIT_S = 15.0
POLL_S = 0.05

T = TypeVar("T")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def wait_for(what: str, check: Callable[[], T | None], timeout_s: float = WAIT_S) -> T:
    """Poll ``check`` (blocking) until it returns something other than None, or fail."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(POLL_S)


class LndHarness:
    def __init__(self, network: RegtestNetwork) -> None:
        self.network = network
        exchange = network.nodes[EXCHANGE]
        self._rest_url = exchange.rest_url
        self._tls_cert = Path(exchange.tls_cert)
        self._macaroon = Path(network.spending_macaroon)
        self._preimages: dict[bytes, bytes] = {}
        self.node: Node = self.new_node()

    def new_node(self, macaroon: Path | None = None, **kwargs: Any) -> LndNode:
        """A fresh adapter on the exchange's lnd (by default with the spending macaroon)."""
        return LndNode.from_files(
            self._rest_url, self._tls_cert, macaroon or self._macaroon, **kwargs
        )

    # --- bob, over his REST API -------------------------------------------------------------

    def outside_rest(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        return self.network.rest(OUTSIDE, method, path, body, **kw)

    def outside_invoice_state(self, payment_hash: bytes) -> str:
        return str(self.outside_rest("GET", f"/v1/invoice/{payment_hash.hex()}")["state"])

    def _outside_pay(self, bolt11: str, amount_msat: int | None) -> Payment:
        """``POST /v2/router/send`` from bob; the final Payment (SUCCEEDED or FAILED)."""
        paid = self.network.pay_invoice(
            OUTSIDE,
            bolt11,
            amount_msat=amount_msat,
            fee_limit_sat=OUTSIDE_FEE_LIMIT_SAT,
            timeout_s=OUTSIDE_PAY_TIMEOUT_S,
        )
        return map_payment(paid)

    def _wait_outside_state(self, payment_hash: bytes, states: tuple[str, ...]) -> str:
        def reached() -> str | None:
            state = self.outside_invoice_state(payment_hash)
            return state if state in states else None

        what = f"{OUTSIDE}'s invoice {payment_hash.hex()[:16]} to be {'/'.join(states)}"
        return wait_for(what, reached)

    # --- NodeHarness ------------------------------------------------------------------------

    async def pay_from_outside(self, bolt11: str, amount_msat: int | None = None) -> Payment:
        return await asyncio.to_thread(self._outside_pay, bolt11, amount_msat)

    def _outside_payment(self, payment_hash: bytes) -> Payment:
        """bob's payment of the hash, from his latest payments (in flight ones included)."""
        params = {
            "include_incomplete": "true",
            "reversed": "true",
            "max_payments": str(OUTSIDE_RECENT_PAYMENTS),
        }
        listed = self.outside_rest("GET", "/v1/payments", params=params)
        for payment in listed.get("payments", []):
            if payment.get("payment_hash") == payment_hash.hex():
                return map_payment(payment)
        return Payment(payment_hash=payment_hash, status=PaymentStatus.UNKNOWN)

    async def outside_payment(self, payment_hash: bytes) -> Payment:
        return await asyncio.to_thread(self._outside_payment, payment_hash)

    async def invoice_from_outside(self, amount_msat: int | None, expiry_s: int = 3600) -> str:
        body = {"value_msat": str(amount_msat or 0), "expiry": str(expiry_s)}
        added = await asyncio.to_thread(self.outside_rest, "POST", "/v1/invoices", body)
        return str(added["payment_request"])

    async def held_invoice_from_outside(self, amount_msat: int) -> HeldInvoice:
        preimage = os.urandom(32)
        payment_hash = hashlib.sha256(preimage).digest()
        body = {"hash": b64(payment_hash), "value_msat": str(amount_msat), "memo": "held"}
        added = await asyncio.to_thread(self.outside_rest, "POST", "/v2/invoices/hodl", body)
        self._preimages[payment_hash] = preimage
        return HeldInvoice(str(added["payment_request"]), payment_hash)

    def preimage_of(self, held: HeldInvoice) -> bytes:
        return self._preimages[held.payment_hash]

    async def settle_held(self, held: HeldInvoice) -> None:
        """Settles once bob holds the HTLC (ACCEPTED): lnd settles nothing before."""
        await asyncio.to_thread(self._wait_outside_state, held.payment_hash, ("ACCEPTED",))
        body = {"preimage": b64(self._preimages[held.payment_hash])}
        await asyncio.to_thread(self.outside_rest, "POST", "/v2/invoices/settle", body)

    async def cancel_held(self, held: HeldInvoice) -> None:
        """Cancels the HTLC bob holds (waits for it to arrive, so the held one is canceled)."""
        await asyncio.to_thread(self._wait_outside_state, held.payment_hash, ("ACCEPTED",))
        body = {"payment_hash": b64(held.payment_hash)}
        await asyncio.to_thread(self.outside_rest, "POST", "/v2/invoices/cancel", body)

    async def expired_invoice_from_outside(self, amount_msat: int) -> str:
        """An invoice of bob with a 1 s expiry, returned once it has expired: bob's lnd has
        canceled it (its expiry watcher) and the clock is past its expiry."""
        body = {"value_msat": str(amount_msat), "expiry": "1", "memo": "expires at once"}
        added = await asyncio.to_thread(self.outside_rest, "POST", "/v1/invoices", body)
        payment_hash = base64.b64decode(added["r_hash"])
        invoice = await asyncio.to_thread(
            self.outside_rest, "GET", f"/v1/invoice/{payment_hash.hex()}"
        )
        expires_at = int(invoice["creation_date"]) + int(invoice["expiry"])
        await asyncio.to_thread(
            wait_for,
            "bob's 1 s invoice to expire",
            lambda: (
                True
                if time.time() > expires_at + 1
                and self.outside_invoice_state(payment_hash) == "CANCELED"
                else None
            ),
        )
        return str(added["payment_request"])

    async def unroutable_invoice(self, amount_msat: int) -> str:
        return foreign_invoice(Network.REGTEST, amount_msat, description="nobody")

    async def restart_node(self) -> Node:
        """A new adapter (as after lngate restarts); the lnd process keeps running."""
        await self.node.close()
        self.node = self.new_node()
        return self.node

    async def close(self) -> None:
        await self.node.close()
