"""A treasury sweep on a real LND: the excess goes to the cold address, and a sweep whose worker
died right after ``send_onchain`` is found by its address and booked, with the amount LND's
``GetTransactions`` implies (its ``amount`` is the wallet's change, fee included)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from embit import bip32, script  # type: ignore[import-untyped]
from embit.networks import NETWORKS  # type: ignore[import-untyped]

from lngate.bootstrap import Core
from lngate.config import Config
from lngate.domain.treasury import TreasuryPolicy
from lngate.lightning.lnd import LndNode
from lngate.regtest import Network
from tests import treasury_support as ts
from tests.conftest import started_core

pytestmark = pytest.mark.regtest

SWEEP_SAT = 200_000
RATE_SAT_PER_VBYTE = 2


class DyingLndNode(LndNode):
    """Sends, then dies before lngate can book the sweep."""

    async def send_onchain(self, address: str, amount_sat: int, sat_per_vbyte: int) -> str:
        await super().send_onchain(address, amount_sat, sat_per_vbyte)
        raise SystemExit("killed after send_onchain")


def cold_addresses(count: int) -> list[str]:
    account = bip32.HDKey.from_seed(os.urandom(32)).derive("m/84h/1h/0h")
    return [
        script.p2wpkh(account.derive([0, i]).key).address(NETWORKS["regtest"]) for i in range(count)
    ]


@pytest.fixture
def core(tmp_path: Path, regtest: Network) -> Iterator[Core]:
    balance = regtest.rest("exchange", "GET", "/v1/balance/blockchain")
    probe = TreasuryPolicy(sweep_sat_per_vbyte=RATE_SAT_PER_VBYTE, sweep_min_sat=10_000)
    # A cap just below the wallet's confirmed balance: the sweep moves about SWEEP_SAT.
    cap_sat = int(balance["confirmed_balance"]) - probe.sweep_fee_reserve_sat - SWEEP_SAT
    policy = TreasuryPolicy(
        hot_onchain_cap_sat=cap_sat, sweep_sat_per_vbyte=RATE_SAT_PER_VBYTE, sweep_min_sat=10_000
    )
    with started_core(Config(data_dir=tmp_path / "lngate", treasury=policy)) as c:
        yield c


def paid_to(regtest: Network, txid: str, address: str) -> int:
    raw = regtest.btcd_rpc("getrawtransaction", [txid, 1])
    total = 0
    for vout in raw["vout"]:
        spk = vout["scriptPubKey"]
        if address in (spk.get("addresses") or [spk.get("address")]):
            total += int(Decimal(str(vout["value"])) * 100_000_000)
    return total


async def test_a_sweep_sent_before_a_crash_is_booked_once(regtest: Network, core: Core) -> None:
    exchange = regtest.nodes["exchange"]

    def lnd(cls: type[LndNode] = LndNode) -> LndNode:
        return cls.from_files(
            exchange.rest_url, Path(exchange.tls_cert), Path(regtest.spending_macaroon)
        )

    cold = cold_addresses(2)
    dying = lnd(DyingLndNode)
    try:
        imported = await ts.cold_storage(core, dying).import_addresses("\n".join(cold))
        assert (imported.network, imported.imported) == ("regtest", 2)
        with pytest.raises(SystemExit):
            await ts.worker(core, dying).sweep_once()
    finally:
        await dying.close()

    node = lnd()
    try:
        result = await ts.worker(core, node, lease_s=0).sweep_once()
        assert result is not None and result.recovered and result.address == cold[0]
        assert result.amount_sat >= SWEEP_SAT and result.fee_sat > 0
        assert paid_to(regtest, result.txid, cold[0]) == result.amount_sat
        # Booked once; the next run neither books nor sends again.
        assert await ts.worker(core, node, lease_s=0).sweep_once() is None
    finally:
        await node.close()
    txs = core.uow.read_sync(lambda tx: tx.all("SELECT txid, amount_sat, fee_sat FROM sweeps"))
    assert txs == [(result.txid, result.amount_sat, result.fee_sat)]
    regtest.mine(1)
