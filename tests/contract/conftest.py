"""The contract harness, once per adapter: simnet (here) and LND on the regtest network
(tests/contract/lnd_harness.py, marked ``regtest``: the fast suite deselects it with
``-m "not regtest"``, and only a test that runs it starts the network)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from lngate.lightning.node import Network, Node, Payment
from lngate.lightning.simnet import FaultKind, SimnetNetwork, SimnetNode
from lngate.regtest import Network as RegtestNetwork
from tests.contract.harness import HeldInvoice, NodeHarness
from tests.contract.lnd_harness import LndHarness
from tests.helpers import foreign_invoice

OUTSIDE = "carol"
HOLD_FOREVER_MS = 3_600_000


class SimnetHarness:
    def __init__(self, state_dir: Path) -> None:
        self._state_dir = state_dir
        # The outside world runs on its own network instance, as the CLI would in another
        # process; the exchange's node has its own.
        self.outside = SimnetNetwork(state_dir)
        self.node: Node = SimnetNode.open(state_dir)

    async def pay_from_outside(self, bolt11: str, amount_msat: int | None = None) -> Payment:
        return self.outside.pay(OUTSIDE, bolt11, amount_msat=amount_msat, fee_limit_msat=100_000)

    async def outside_payment(self, payment_hash: bytes) -> Payment:
        return self.outside.track_payment(OUTSIDE, payment_hash)

    async def invoice_from_outside(self, amount_msat: int | None, expiry_s: int = 3600) -> str:
        return self.outside.create_invoice(OUTSIDE, amount_msat, expiry_s=expiry_s).bolt11

    async def held_invoice_from_outside(self, amount_msat: int) -> HeldInvoice:
        invoice = self.outside.create_invoice(OUTSIDE, amount_msat, memo="held")
        self.outside.faults.set(
            FaultKind.STUCK, payment_hash=invoice.payment_hash, hold_ms=HOLD_FOREVER_MS
        )
        return HeldInvoice(invoice.bolt11, invoice.payment_hash)

    async def settle_held(self, held: HeldInvoice) -> None:
        self.outside.release_payment(held.payment_hash, succeed=True)

    async def cancel_held(self, held: HeldInvoice) -> None:
        self.outside.cancel_invoice(OUTSIDE, held.payment_hash)

    async def expired_invoice_from_outside(self, amount_msat: int) -> str:
        created_at = int(time.time()) - 7200
        invoice = self.outside.create_invoice(
            OUTSIDE, amount_msat, expiry_s=60, created_at=created_at
        )
        return invoice.bolt11

    async def unroutable_invoice(self, amount_msat: int) -> str:
        return foreign_invoice(Network.SIMNET, amount_msat, description="nobody")

    async def restart_node(self) -> Node:
        await self.node.close()
        self.node = SimnetNode.open(self._state_dir)
        return self.node

    async def close(self) -> None:
        await self.node.close()
        self.outside.close()


def pytest_configure(config: pytest.Config) -> None:
    # The regtest network fixtures (loaded once, whichever conftest asks first).
    config.pluginmanager.import_plugin("tests.regtest.network_plugin")


@pytest.fixture(params=["simnet", pytest.param("regtest", marks=pytest.mark.regtest)])
async def harness(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[NodeHarness]:
    h: SimnetHarness | LndHarness
    if request.param == "simnet":
        h = SimnetHarness(tmp_path / "simnet")
    else:
        network: RegtestNetwork = request.getfixturevalue("regtest")
        h = LndHarness(network)
    yield h
    await h.close()
