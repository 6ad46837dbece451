"""A channel opened through lngate on a real LND has a cold address as its upfront shutdown
script (BOLT 2 ``option_upfront_shutdown_script``), and a cooperative close pays that address.

The cold addresses are derived from a tpub generated here with embit (watch-only: lngate only
sees the tpub). The close and the closing transaction are observed from outside lngate: lnd's
REST API (``GET /v1/channels``, ``DELETE /v1/channels/{txid}/{index}``) and btcd's RPC. lngate
then books what moved, checked against btcd: the funding fee (node -> on-chain fee expense) and,
once lnd counts the close final, our side of the channel (node -> cold).
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from embit import bip32, script  # type: ignore[import-untyped]
from embit.networks import NETWORKS  # type: ignore[import-untyped]

from lngate.bootstrap import Core
from lngate.config import Config
from lngate.lightning.lnd import LndNode
from lngate.lightning.node import Network as ChainNetwork
from lngate.regtest import Network
from lngate.services.onchain_books import BookedClose
from lngate.store import treasury as store
from tests import treasury_support as ts
from tests.conftest import started_core

pytestmark = pytest.mark.regtest

CHANNEL_SAT = 250_000
CLOSE_SAT_PER_VBYTE = 2
WAIT_S = 60.0
POLL_S = 0.1

T = TypeVar("T")


def wait_for(what: str, check: Callable[[], T | None], timeout_s: float = WAIT_S) -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        found = check()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(POLL_S)


def cold_wallet(count: int) -> tuple[str, list[str]]:
    """A fresh cold wallet: its watch-only descriptor and its first receive addresses."""
    root = bip32.HDKey.from_seed(os.urandom(32))
    account = root.derive("m/84h/1h/0h")
    tpub = account.to_public().to_string(version=NETWORKS["test"]["xpub"])
    descriptor = f"wpkh([{root.my_fingerprint.hex()}/84h/1h/0h]{tpub}/0/*)"
    addresses = [
        script.p2wpkh(account.derive([0, i]).key).address(NETWORKS["regtest"]) for i in range(count)
    ]
    return descriptor, addresses


@pytest.fixture
def core(tmp_path: Path) -> Iterator[Core]:
    with started_core(Config(data_dir=tmp_path / "lngate")) as c:
        yield c


def lnd_channel(regtest: Network, channel_point: str) -> dict[str, Any] | None:
    channels = regtest.rest("exchange", "GET", "/v1/channels").get("channels", [])
    found = [c for c in channels if c["channel_point"] == channel_point and c.get("active")]
    return found[0] if found else None


def close_cooperatively(regtest: Network, channel_point: str) -> str:
    """Start a cooperative close over lnd's streaming REST call; return the closing txid as
    soon as lnd reports it broadcast (``close_pending``)."""
    node = regtest.nodes["exchange"]
    txid, index = channel_point.split(":")
    macaroon = Path(node.admin_macaroon).read_bytes().hex()
    with (
        httpx.Client(
            base_url=node.rest_url,
            verify=ssl.create_default_context(cafile=node.tls_cert),
            headers={"Grpc-Metadata-macaroon": macaroon},
            timeout=WAIT_S,
        ) as client,
        client.stream(
            "DELETE",
            f"/v1/channels/{txid}/{index}",
            params={"sat_per_vbyte": str(CLOSE_SAT_PER_VBYTE)},
        ) as response,
    ):
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():  # bounded by the timeout
            update = json.loads(line)
            assert "error" not in update, update
            pending = update.get("result", {}).get("close_pending")
            if pending:
                # bytes of a chainhash: internal byte order, the reverse of the displayed txid
                return base64.b64decode(pending["txid"])[::-1].hex()
    raise AssertionError("the close stream ended without close_pending")


def output_addresses(regtest: Network, txid: str) -> dict[str, int]:
    """address -> value in sat of a transaction's outputs, as btcd decodes them."""
    raw = regtest.btcd_rpc("getrawtransaction", [txid, 1])
    outputs: dict[str, int] = {}
    for vout in raw["vout"]:
        spk = vout["scriptPubKey"]
        for address in spk.get("addresses") or [spk.get("address")]:
            if address:
                outputs[address] = int(Decimal(str(vout["value"])) * 100_000_000)
    return outputs


def tx_fee_sat(regtest: Network, txid: str) -> int:
    """A transaction's fee as btcd sees it: its inputs' values less its outputs'."""

    def outputs_btc(txid: str) -> list[Decimal]:
        raw = regtest.btcd_rpc("getrawtransaction", [txid, 1])
        return [Decimal(str(vout["value"])) for vout in raw["vout"]]

    vin = regtest.btcd_rpc("getrawtransaction", [txid, 1])["vin"]
    inputs_btc = sum(outputs_btc(i["txid"])[i["vout"]] for i in vin)
    return int((inputs_btc - sum(outputs_btc(txid))) * 100_000_000)


def transfer(core: Core, transfer_id: str) -> tuple[int, int, int] | None:
    row = core.uow.read_sync(
        lambda tx: tx.one(
            "SELECT debit_account_id, credit_account_id, amount_msat FROM transfers WHERE id = :i",
            {"i": transfer_id},
        )
    )
    return None if row is None else (int(row[0]), int(row[1]), int(row[2]))


async def test_a_cooperative_close_pays_the_cold_address(regtest: Network, core: Core) -> None:
    exchange, bob = regtest.nodes["exchange"], regtest.nodes["bob"]
    node = LndNode.from_files(
        exchange.rest_url, Path(exchange.tls_cert), Path(regtest.spending_macaroon)
    )
    try:
        assert (await node.get_info()).network is ChainNetwork.REGTEST
        descriptor, cold = cold_wallet(3)
        imported = await ts.cold_storage(core, node).import_addresses(descriptor, count=3)
        assert (imported.network, imported.imported) == ("regtest", 3)
        assert imported.first_address == cold[0]

        peer = f"{bob.pubkey}@{bob.p2p_host}"
        opened = await ts.channels(core, node).open_to_cold(
            peer, CHANNEL_SAT, actor="test:regtest", reason="test"
        )
        assert opened.close_address == cold[0]

        regtest.mine(6)
        channel = wait_for(
            "the channel to be active", lambda: lnd_channel(regtest, opened.channel_point)
        )
        # lnd's own record of the upfront shutdown address, and the adapter's view of it.
        assert channel["close_address"] == cold[0]
        ours = [c for c in await node.list_channels() if c.channel_id == opened.channel_point]
        assert ours and ours[0].close_address == cold[0]
        row = core.uow.read_sync(lambda tx: store.by_address(tx, cold[0]))
        assert row is not None and row.channel_point == opened.channel_point

        # The funding transaction is confirmed: its fee is booked, as btcd reckons it.
        funding_txid = opened.channel_point.split(":")[0]
        assert await ts.worker(core, node).book_once() == []  # no close yet
        accounts = core.system_accounts
        fee_sat = tx_fee_sat(regtest, funding_txid)
        assert fee_sat > 0
        assert transfer(core, f"channel_fee:{funding_txid}") == (
            accounts["onchain_fee_expense"],
            accounts["node"],
            fee_sat * 1000,
        )

        closing_txid = close_cooperatively(regtest, opened.channel_point)
        outputs = wait_for(
            "the closing transaction in btcd",
            lambda: output_addresses(regtest, closing_txid) or None,
        )
        # lnd 0.21 scales the confirmations it waits for before a close counts (3 here): 6 is
        # past it.
        regtest.mine(6)

        assert cold[0] in outputs, outputs
        # All of the channel is ours (nothing was pushed): the cold output is the capacity less
        # the closing fee (and, on an anchor channel, the anchors).
        assert CHANNEL_SAT - 10_000 < outputs[cold[0]] < CHANNEL_SAT
        closed = wait_for(
            "lnd to record the close",
            lambda: (
                [
                    c
                    for c in regtest.rest("exchange", "GET", "/v1/channels/closed").get(
                        "channels", []
                    )
                    if c["channel_point"] == opened.channel_point
                ]
                or None
            ),
        )
        assert closed[0]["closing_tx_hash"] == closing_txid

        # lngate books exactly what btcd shows on the cold output, once.
        booked = await ts.books(core, node).book_closed_channels()
        assert booked == [
            BookedClose(opened.channel_point, closing_txid, cold[0], outputs[cold[0]])
        ]
        assert transfer(core, f"close:{closing_txid}") == (
            accounts["cold"],
            accounts["node"],
            outputs[cold[0]] * 1000,
        )
        row = core.uow.read_sync(lambda tx: store.by_address(tx, cold[0]))
        assert row is not None
        assert (row.close_txid, row.close_amount_sat) == (closing_txid, outputs[cold[0]])
        assert row.funding_fee_sat == fee_sat
        assert await ts.books(core, node).book_closed_channels() == []
        assert await ts.worker(core, node).book_once() == []
    finally:
        await node.close()
