"""The harness the ``Node`` contract suite runs against: one per adapter (simnet here; the
regtest LND network provides its own). ``node`` is the exchange's node under test; "outside"
is another node of the same network (a customer's wallet)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from lngate.lightning.node import Node, Payment


@dataclass(frozen=True, slots=True)
class HeldInvoice:
    """An outside invoice whose incoming HTLCs are held (a hold invoice) until the harness
    settles or cancels it: paying it leaves the payment IN_FLIGHT."""

    bolt11: str
    payment_hash: bytes


class NodeHarness(Protocol):
    node: Node

    async def pay_from_outside(self, bolt11: str, amount_msat: int | None = None) -> Payment:
        """Pay from an outside wallet; returns its payment (FAILED when the payee refused).
        To a hold invoice it may return IN_FLIGHT (simnet) or wait until the payee settles or
        cancels (LND): run it as a task."""
        ...

    async def outside_payment(self, payment_hash: bytes) -> Payment:
        """The outside wallet's own view of its payment of ``payment_hash`` (UNKNOWN if none)."""
        ...

    async def invoice_from_outside(self, amount_msat: int | None, expiry_s: int = 3600) -> str: ...

    async def held_invoice_from_outside(self, amount_msat: int) -> HeldInvoice: ...

    async def settle_held(self, held: HeldInvoice) -> None: ...

    async def cancel_held(self, held: HeldInvoice) -> None: ...

    async def expired_invoice_from_outside(self, amount_msat: int) -> str:
        """An outside invoice whose expiry has passed."""
        ...

    async def unroutable_invoice(self, amount_msat: int) -> str:
        """A valid invoice (right network) of a payee no route reaches."""
        ...

    async def restart_node(self) -> Node:
        """A fresh adapter over the same node and state, as after a process restart; it
        replaces ``node`` (the old one is closed)."""
        ...

    async def close(self) -> None: ...
