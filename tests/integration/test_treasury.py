"""The treasury on simnet, on SQLite and PostgreSQL: sweeps above the hot cap go to the next
cold address and are booked; a crash between send and booking neither sends twice nor loses the
booking; cold addresses are handed out once; channels get a cold close address."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from embit import bip32, script  # type: ignore[import-untyped]
from embit.networks import NETWORKS  # type: ignore[import-untyped]
from typer.testing import CliRunner

from lngate.bootstrap import Core, use_cases
from lngate.config import Config, load_config
from lngate.domain.errors import (
    ColdImportRefused,
    InvariantBroken,
    NoColdAddress,
    PrivateKeyRefused,
)
from lngate.domain.ledger import AccountKind
from lngate.domain.treasury import ColdPurpose, TreasuryPolicy, sweep_amount_sat
from lngate.lightning.node import CloseType, Network
from lngate.lightning.simnet import SimnetNetwork, SimnetNode
from lngate.lightning.simnet.cli import app as simnet_app
from lngate.lightning.simnet.onchain import FUNDING_TX_VSIZE_VBYTES
from lngate.services import cold_storage as cold_storage_module
from lngate.services.cold_storage import require_cold
from lngate.services.onchain_books import BookedClose
from lngate.services.ports import Clock
from lngate.services.reconciliation import check_ledger
from lngate.store import treasury as store
from lngate.store.ledger import get_account
from lngate.store.treasury import ColdAddress
from tests import treasury_support as ts
from tests.conftest import started_core

POLICY = TreasuryPolicy(
    hot_onchain_cap_sat=2_000_000,
    sweep_sat_per_vbyte=3,
    sweep_interval_s=0.05,
    sweep_min_sat=50_000,
)
WAIT_S = 10.0
OPERATOR = "test:operator"  # the audit actor of the channels these tests open


class CountingNode(SimnetNode):
    """The exchange's simnet node, remembering every on-chain send (and optionally dying right
    after one, as a process killed between ``send_onchain`` and the ledger write would)."""

    def __init__(self, network: SimnetNetwork, *, crash_after_send: bool = False) -> None:
        super().__init__(network)
        self.sent_to: list[str] = []
        self._crash_after_send = crash_after_send

    async def send_onchain(self, address: str, amount_sat: int, sat_per_vbyte: int) -> str:
        txid = await super().send_onchain(address, amount_sat, sat_per_vbyte)
        self.sent_to.append(address)
        if self._crash_after_send:
            raise SystemExit("killed after send_onchain")  # not an Exception: nothing catches it
        return txid


def cold_addresses(seed: bytes, count: int) -> list[str]:
    """Regtest P2WPKH addresses of a cold wallet (BIP 84 paths), as its owner would list them."""
    account = bip32.HDKey.from_seed(seed).derive("m/84h/1h/0h")
    return [
        script.p2wpkh(account.derive([0, i]).key).address(NETWORKS["regtest"]) for i in range(count)
    ]


def tpub_descriptor(seed: bytes) -> str:
    root = bip32.HDKey.from_seed(seed)
    tpub = root.derive("m/84h/1h/0h").to_public().to_string(version=NETWORKS["test"]["xpub"])
    return f"wpkh([{root.my_fingerprint.hex()}/84h/1h/0h]{tpub}/0/*)"


SEED = bytes(range(32))
COLD = cold_addresses(SEED, 10)


@pytest.fixture
def tcore(config: Config) -> Iterator[Core]:
    with started_core(replace(config, treasury=POLICY)) as c:
        yield c


@pytest.fixture
def network(tcore: Core) -> Iterator[SimnetNetwork]:
    net = SimnetNetwork(tcore.config.simnet_dir)
    try:
        yield net
    finally:
        net.close()


async def _import(core: Core, network: SimnetNetwork, count: int = 5) -> None:
    cold = ts.cold_storage(core, SimnetNode(network))
    result = await cold.import_addresses(tpub_descriptor(SEED), count=count)
    assert (result.network, result.imported) == ("simnet", count)


def _transfer(core: Core, transfer_id: str) -> tuple[int, int, int] | None:
    row = core.uow.read_sync(
        lambda tx: tx.one(
            "SELECT debit_account_id, credit_account_id, amount_msat FROM transfers WHERE id = :i",
            {"i": transfer_id},
        )
    )
    return None if row is None else (int(row[0]), int(row[1]), int(row[2]))


def _net_debit_msat(core: Core, kind: AccountKind) -> int:
    account = core.uow.read_sync(lambda tx: get_account(tx, core.system_accounts[kind.value]))
    assert account is not None
    return account.balance.debits_posted_msat - account.balance.credits_posted_msat


def _sends_to(network: SimnetNetwork, address: str) -> int:
    txs = network.list_onchain_transactions("exchange")
    return sum(1 for t in txs if address in t.addresses and t.amount_sat < 0)


# -- sweeps ----------------------------------------------------------------------------------


async def test_excess_over_the_cap_is_swept_to_the_next_cold_address_and_booked(
    tcore: Core, network: SimnetNetwork
) -> None:
    await _import(tcore, network)
    network.fund_onchain("exchange", 3_000_000)
    before_sat = network.balances("exchange").onchain_confirmed_sat
    node = CountingNode(network)

    result = await ts.worker(tcore, node).sweep_once()

    assert result is not None and not result.recovered
    assert result.address == COLD[0] and node.sent_to == [COLD[0]]
    assert result.amount_sat == sweep_amount_sat(before_sat, POLICY) > 0
    after_sat = network.balances("exchange").onchain_confirmed_sat
    assert after_sat == before_sat - result.amount_sat - result.fee_sat
    assert POLICY.hot_onchain_cap_sat <= after_sat  # the fee came out of the reserve
    accounts = tcore.system_accounts
    node_id, cold_id = accounts["node"], accounts["cold"]
    fee_id = accounts["onchain_fee_expense"]
    # node -> cold: debit cold, credit node; the fee: debit the expense, credit node.
    assert _transfer(tcore, f"sweep:{result.txid}") == (cold_id, node_id, result.amount_sat * 1000)
    assert _transfer(tcore, f"sweep:{result.txid}:fee") == (fee_id, node_id, result.fee_sat * 1000)
    assert _net_debit_msat(tcore, AccountKind.COLD) == result.amount_sat * 1000
    assert _net_debit_msat(tcore, AccountKind.ONCHAIN_FEE_EXPENSE) == result.fee_sat * 1000
    assert _net_debit_msat(tcore, AccountKind.NODE) == -(result.amount_sat + result.fee_sat) * 1000
    used = tcore.uow.read_sync(lambda tx: store.by_address(tx, COLD[0]))
    assert used is not None and used.txid == result.txid and used.amount_sat == result.amount_sat
    assert tcore.uow.read_sync(check_ledger).ok

    assert await ts.worker(tcore, node).sweep_once() is None  # at the cap now
    assert node.sent_to == [COLD[0]]


async def test_below_the_minimum_nothing_is_swept_or_handed_out(
    tcore: Core, network: SimnetNetwork
) -> None:
    await _import(tcore, network)
    node = CountingNode(network)
    worker = ts.worker(tcore, node)
    assert await worker.sweep_once() is not None  # the simnet's opening funds
    network.fund_onchain("exchange", POLICY.sweep_min_sat - 1)
    assert await worker.sweep_once() is None
    assert tcore.uow.read_sync(store.counts) == store.ColdCounts(free=4, pending=0, used=1)


async def test_a_used_cold_address_is_never_handed_out_again(
    tcore: Core, network: SimnetNetwork
) -> None:
    await _import(tcore, network, count=4)
    node = CountingNode(network)
    worker = ts.worker(tcore, node)
    swept = []
    for _ in range(3):
        network.fund_onchain("exchange", 1_000_000)
        result = await worker.sweep_once()
        assert result is not None
        swept.append(result.address)
    opened = await ts.channels(tcore, node).open_to_cold(
        "carol", 100_000, actor=OPERATOR, reason="test"
    )
    handed_out = [*swept, opened.close_address]
    assert handed_out == COLD[:4]  # in import order, each once
    # A re-import of the same descriptor leaves used addresses used.
    again = await ts.cold_storage(tcore, node).import_addresses(tpub_descriptor(SEED), count=6)
    assert (again.imported, again.already_known) == (2, 4)
    assert tcore.uow.read_sync(store.counts) == store.ColdCounts(free=2, pending=0, used=4)
    for _ in range(2):
        network.fund_onchain("exchange", 1_000_000)
        result = await worker.sweep_once()
        assert result is not None and result.address not in handed_out
        handed_out.append(result.address)
    network.fund_onchain("exchange", 1_000_000)
    with pytest.raises(NoColdAddress):
        await worker.sweep_once()
    with pytest.raises(NoColdAddress):
        await ts.channels(tcore, node).open_to_cold("carol", 100_000, actor=OPERATOR, reason="test")
    assert len(set(handed_out)) == 6 and set(node.sent_to) <= set(COLD)
    assert all(_sends_to(network, a) == 1 for a in node.sent_to)


async def test_a_sweep_never_goes_to_an_address_outside_the_cold_set(
    tcore: Core, network: SimnetNetwork, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _import(tcore, network)
    outsider = network.new_address("carol")  # a valid regtest address, not ours
    with pytest.raises(InvariantBroken, match="refusing to send"):
        tcore.uow.read_sync(
            lambda tx: require_cold(tx, outsider, ColdPurpose.SWEEP, Network.SIMNET)
        )

    # Even if the hand-out step were wrong, the guard at the point of sending stops it.
    def forged_allocation(token: str, clock: Clock) -> Callable[[object], ColdAddress]:
        def op(tx: object) -> ColdAddress:
            return ColdAddress(
                id=0,
                address=outsider,
                network="simnet",
                source="forged",
                source_index=0,
                purpose=ColdPurpose.SWEEP,
                allocated_at_ms=1,
                claim_token=token,
                claimed_at_ms=1,
                txid=None,
                amount_sat=None,
                channel_point=None,
                used_at_ms=None,
            )

        return op

    monkeypatch.setattr(cold_storage_module, "allocate_sweep_op", forged_allocation)
    node = CountingNode(network)
    with pytest.raises(InvariantBroken, match="refusing to send"):
        await ts.worker(tcore, node).sweep_once()
    assert node.sent_to == []
    assert _sends_to(network, outsider) == 0


# -- crash safety ----------------------------------------------------------------------------


async def test_a_crash_between_send_and_booking_is_booked_on_restart_without_sending_again(
    tcore: Core, network: SimnetNetwork
) -> None:
    await _import(tcore, network)
    dying = CountingNode(network, crash_after_send=True)
    with pytest.raises(SystemExit):
        await ts.worker(tcore, dying).sweep_once()
    assert dying.sent_to == [COLD[0]] and _sends_to(network, COLD[0]) == 1
    assert tcore.uow.read_sync(lambda tx: tx.scalar("SELECT COUNT(*) FROM sweeps")) == 0
    pending = tcore.uow.read_sync(store.pending_sweep)
    assert pending is not None and pending.address == COLD[0]
    # Another live worker leaves the claimed sweep alone while its claim is fresh.
    other = CountingNode(network)
    assert await ts.worker(tcore, other).sweep_once() is None
    assert other.sent_to == []

    restarted = CountingNode(network)
    result = await ts.worker(tcore, restarted, lease_s=0).sweep_once()

    assert result is not None and result.recovered and result.address == COLD[0]
    assert restarted.sent_to == [] and _sends_to(network, COLD[0]) == 1
    assert _transfer(tcore, f"sweep:{result.txid}") is not None
    onchain = [t for t in network.list_onchain_transactions("exchange") if t.txid == result.txid]
    assert result.amount_sat == -onchain[0].amount_sat - onchain[0].fee_sat
    assert _net_debit_msat(tcore, AccountKind.COLD) == result.amount_sat * 1000
    assert await ts.worker(tcore, restarted, lease_s=0).sweep_once() is None
    assert restarted.sent_to == [] and tcore.uow.read_sync(check_ledger).ok


async def test_a_crash_between_hand_out_and_send_sends_to_the_same_address_once(
    tcore: Core, network: SimnetNetwork
) -> None:
    await _import(tcore, network)
    node = CountingNode(network)
    handed = await ts.cold_storage(tcore, node).allocate_sweep("a-worker-that-died")
    assert handed is not None and handed.address == COLD[0]

    result = await ts.worker(tcore, node, lease_s=0).sweep_once()

    assert result is not None and not result.recovered
    assert node.sent_to == [COLD[0]] and _sends_to(network, COLD[0]) == 1
    assert tcore.uow.read_sync(store.counts).pending == 0


async def test_concurrent_workers_sweep_once(tcore: Core, network: SimnetNetwork) -> None:
    await _import(tcore, network)
    nodes = [CountingNode(network) for _ in range(4)]
    results = await asyncio.gather(*(ts.worker(tcore, n).sweep_once() for n in nodes))
    assert sum(r is not None for r in results) == 1
    assert sum(len(n.sent_to) for n in nodes) == 1
    assert tcore.uow.read_sync(store.counts).used == 1


async def test_the_worker_loop_sweeps_until_stopped(tcore: Core, network: SimnetNetwork) -> None:
    await _import(tcore, network)
    worker = ts.worker(tcore, SimnetNode(network))
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while worker.swept < 1:
        assert asyncio.get_running_loop().time() < deadline, "no sweep happened"
        await asyncio.sleep(0.02)
    network.fund_onchain("exchange", 500_000)
    while worker.swept < 2:
        assert asyncio.get_running_loop().time() < deadline, "no second sweep"
        await asyncio.sleep(0.02)
    stop.set()
    await asyncio.wait_for(task, WAIT_S)


# -- import ----------------------------------------------------------------------------------


async def test_import_is_all_or_nothing(tcore: Core, network: SimnetNetwork) -> None:
    cold = ts.cold_storage(tcore, SimnetNode(network))
    bad_checksum = COLD[2][:-1] + ("q" if COLD[2][-1] != "q" else "p")
    mainnet = "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu"
    tprv = bip32.HDKey.from_seed(SEED).to_string(version=NETWORKS["test"]["xprv"])
    cases: list[tuple[str, type[Exception], str]] = [
        (f"{COLD[0]}\n{COLD[1]}\n{bad_checksum}\n", ColdImportRefused, "line 3"),
        (f"{COLD[0]}\n\n{mainnet}\n", ColdImportRefused, "line 3: a mainnet address"),
        (f"{COLD[0]}\n{tprv}\n", PrivateKeyRefused, "line 2"),
        (f"wpkh({tprv}/0/*)", PrivateKeyRefused, "line 1"),
    ]
    for text, error, message in cases:
        with pytest.raises(error, match=message):
            await cold.import_addresses(text)
    assert tcore.uow.read_sync(store.counts) == store.ColdCounts(0, 0, 0)
    result = await cold.import_addresses("\n".join(COLD[:3]), source_name="f.txt")
    assert (result.kind, result.imported, result.source) == ("addresses", 3, "list:f.txt")


# -- channels --------------------------------------------------------------------------------


async def test_a_channel_is_opened_with_a_cold_close_address(
    tcore: Core, network: SimnetNetwork
) -> None:
    await _import(tcore, network)
    node = SimnetNode(network)
    opened = await ts.channels(tcore, node).open_to_cold(
        "carol", 200_000, push_sat=10_000, actor=OPERATOR, reason="test"
    )
    assert opened.close_address == COLD[0]
    listed = {c.channel_id: c for c in await node.list_channels()}
    channel = listed[opened.channel_point]
    assert channel.close_address == COLD[0]
    assert channel.capacity_sat == 200_000 and channel.remote_balance_msat == 10_000_000
    row = tcore.uow.read_sync(lambda tx: store.by_address(tx, COLD[0]))
    assert row is not None and row.purpose is ColdPurpose.CHANNEL_CLOSE
    assert row.channel_point == opened.channel_point and row.used_at_ms is not None
    shown = {c.channel_point: c for c in await ts.channels(tcore, node).list()}
    assert shown[opened.channel_point].close_address_is_cold is True
    second = await ts.channels(tcore, node).open_to_cold(
        "dave", 100_000, actor=OPERATOR, reason="test"
    )
    assert second.close_address == COLD[1]


async def test_status_reports_the_hot_float_and_cold_totals(
    tcore: Core, network: SimnetNetwork
) -> None:
    await _import(tcore, network)
    node = SimnetNode(network)
    before = await ts.status(tcore, node).report()
    confirmed_sat = network.balances("exchange").onchain_confirmed_sat
    assert before.onchain.would_sweep_sat == sweep_amount_sat(confirmed_sat, POLICY) > 0
    cold = before.cold
    assert (cold.addresses_free, cold.addresses_pending, cold.addresses_used) == (5, 0, 0)
    result = await ts.worker(tcore, node).sweep_once()
    assert result is not None
    after = (await ts.status(tcore, node).report()).as_json()
    assert after["onchain"]["would_sweep_sat"] == 0
    assert after["onchain"]["cap_sat"] == POLICY.hot_onchain_cap_sat
    assert after["cold"]["ledger_balance_msat"] == result.amount_sat * 1000
    assert (after["cold"]["addresses_used"], after["cold"]["addresses_free"]) == (1, 4)
    assert after["cold"]["swept_sat"] == result.amount_sat
    assert after["channels"]["local_msat"] > 0


# -- channel closes ----------------------------------------------------------------------------


def _transfer_count(core: Core) -> int:
    return int(core.uow.read_sync(lambda tx: tx.scalar("SELECT COUNT(*) FROM transfers")))


async def _shortfall_msat(core: Core, node: SimnetNode) -> int:
    return (await use_cases(core, node).solvency.reconcile()).shortfall_msat


async def test_a_cooperative_close_to_cold_is_booked_node_to_cold_once(
    tcore: Core, network: SimnetNetwork
) -> None:
    await _import(tcore, network)
    node = SimnetNode(network)
    worker = ts.worker(tcore, node)
    accounts = tcore.system_accounts
    node_id, cold_id = accounts["node"], accounts["cold"]
    fee_id = accounts["onchain_fee_expense"]
    shortfall_before_open = await _shortfall_msat(tcore, node)

    opened = await ts.channels(tcore, node).open_to_cold(
        "carol", 200_000, actor=OPERATOR, reason="test"
    )
    assert await worker.book_once() == []  # open: only the funding fee is booked
    funding_txid = opened.channel_point.split(":")[0]
    fee_sat = FUNDING_TX_VSIZE_VBYTES * 1  # simnet funds channels at 1 sat/vB
    assert _transfer(tcore, f"channel_fee:{funding_txid}") == (fee_id, node_id, fee_sat * 1000)
    # The open moved node funds from on chain into the channel and paid a booked fee.
    shortfall_open = await _shortfall_msat(tcore, node)
    assert shortfall_open == shortfall_before_open
    onchain_sat = network.balances("exchange").onchain_confirmed_sat

    closing_txid = network.close_channel("exchange", opened.channel_point)

    (closed,) = [c for c in await node.list_closed_channels() if c.closing_txid == closing_txid]
    assert closed.channel_point == opened.channel_point
    assert closed.close_type is CloseType.COOPERATIVE
    assert (closed.settled_balance_sat, closed.close_address) == (200_000, COLD[0])
    # Paid to cold: the node's wallet did not get it, and the channel is gone.
    assert network.balances("exchange").onchain_confirmed_sat == onchain_sat
    assert opened.channel_point not in {c.channel_id for c in await node.list_channels()}
    # Unbooked, the close looks like a loss of our channel balance.
    assert await _shortfall_msat(tcore, node) == shortfall_open + 200_000 * 1000

    booked = await worker.book_once()

    assert booked == [BookedClose(opened.channel_point, closing_txid, COLD[0], 200_000)]
    # node -> cold: debit cold, credit node (the signs of a sweep).
    assert _transfer(tcore, f"close:{closing_txid}") == (cold_id, node_id, 200_000 * 1000)
    assert _net_debit_msat(tcore, AccountKind.COLD) == 200_000 * 1000
    row = tcore.uow.read_sync(lambda tx: store.by_address(tx, COLD[0]))
    assert row is not None and row.used_at_ms is not None
    assert (row.close_txid, row.close_amount_sat) == (closing_txid, 200_000)
    assert (row.channel_point, row.funding_fee_sat) == (opened.channel_point, fee_sat)
    # Nothing was lost: the assets moved from the node to cold.
    assert await _shortfall_msat(tcore, node) == shortfall_before_open

    transfers = _transfer_count(tcore)
    assert await ts.books(tcore, node).book_closed_channels() == []
    assert await worker.book_once() == []
    assert _transfer_count(tcore) == transfers
    assert _net_debit_msat(tcore, AccountKind.COLD) == 200_000 * 1000
    assert tcore.uow.read_sync(check_ledger).ok

    status = (await ts.status(tcore, node).report()).as_json()
    assert status["cold"]["channel_closes"] == 1
    assert status["cold"]["channel_closes_sat"] == 200_000
    assert status["cold"]["channel_funding_fees_sat"] == fee_sat
    assert status["cold"]["ledger_balance_msat"] == 200_000 * 1000
    assert status["channel_closes"] == [
        {
            "channel_point": opened.channel_point,
            "closing_txid": closing_txid,
            "address": COLD[0],
            "amount_sat": 200_000,
        }
    ]


async def test_concurrent_bookings_of_a_close_book_it_once(
    tcore: Core, network: SimnetNetwork
) -> None:
    await _import(tcore, network)
    node = SimnetNode(network)
    opened = await ts.channels(tcore, node).open_to_cold(
        "dave", 300_000, push_sat=100_000, actor=OPERATOR, reason="test"
    )
    closing_txid = network.close_channel("dave", opened.channel_point)  # the peer closes

    results = await asyncio.gather(
        *(ts.books(tcore, node).book_closed_channels() for _ in range(4))
    )

    assert sorted(len(r) for r in results) == [0, 0, 0, 1]
    accounts = tcore.system_accounts
    expected = (accounts["cold"], accounts["node"], 200_000 * 1000)
    assert _transfer(tcore, f"close:{closing_txid}") == expected
    assert _net_debit_msat(tcore, AccountKind.COLD) == 200_000 * 1000
    # dave's side went to dave's own wallet.
    (daves,) = [c for c in network.list_closed_channels("dave") if c.closing_txid == closing_txid]
    assert daves.settled_balance_sat == 100_000 and daves.close_address is not None
    paid = [t for t in network.list_onchain_transactions("dave") if t.txid == closing_txid]
    assert [(t.amount_sat, t.addresses) for t in paid] == [(100_000, (daves.close_address,))]


async def test_force_closes_and_channels_lngate_did_not_open_are_not_booked_to_cold(
    tcore: Core, network: SimnetNetwork
) -> None:
    await _import(tcore, network)
    node = SimnetNode(network)
    opened = await ts.channels(tcore, node).open_to_cold(
        "carol", 200_000, actor=OPERATOR, reason="test"
    )
    await ts.worker(tcore, node).book_once()  # the funding fee
    shortfall = await _shortfall_msat(tcore, node)
    onchain_sat = network.balances("exchange").onchain_confirmed_sat
    default = [c for c in await node.list_channels() if c.channel_id != opened.channel_point]
    assert len(default) == 1  # the exchange<->hub channel of the default topology
    transfers = _transfer_count(tcore)

    forced_txid = network.close_channel("exchange", opened.channel_point, cooperative=False)
    network.close_channel("exchange", default[0].channel_id)  # cooperative, no close address

    closed = {c.channel_point: c for c in await node.list_closed_channels()}
    forced = closed[opened.channel_point]
    assert (forced.closing_txid, forced.close_type) == (forced_txid, CloseType.LOCAL_FORCE)
    assert forced.settled_balance_sat == forced.time_locked_balance_sat == 200_000
    assert forced.close_address != COLD[0]
    assert closed[default[0].channel_id].close_type is CloseType.COOPERATIVE
    # Both paid the node's own wallet: nothing to book to cold.
    local_sat = 200_000 + default[0].local_balance_msat // 1000
    assert network.balances("exchange").onchain_confirmed_sat == onchain_sat + local_sat
    assert await ts.books(tcore, node).book_closed_channels() == []
    assert _transfer_count(tcore) == transfers
    row = tcore.uow.read_sync(lambda tx: store.by_address(tx, COLD[0]))
    assert row is not None and row.close_txid is None
    assert await _shortfall_msat(tcore, node) == shortfall


async def test_the_worker_loop_books_a_close(tcore: Core, network: SimnetNetwork) -> None:
    await _import(tcore, network)
    node = SimnetNode(network)
    opened = await ts.channels(tcore, node).open_to_cold(
        "carol", 100_000, actor=OPERATOR, reason="test"
    )
    worker = ts.worker(tcore, node)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    closing_txid = network.close_channel("carol", opened.channel_point)
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while worker.closes_booked < 1:
        assert asyncio.get_running_loop().time() < deadline, "the close was not booked"
        await asyncio.sleep(0.02)
    stop.set()
    await asyncio.wait_for(task, WAIT_S)
    assert _transfer(tcore, f"close:{closing_txid}") is not None


def test_the_simnet_cli_closes_a_channel(tmp_path: Path) -> None:
    with SimnetNetwork(tmp_path / "simnet") as net:
        point = net.open_channel("exchange", "carol", 100_000, close_address=COLD[3])
    runner = CliRunner()
    args = ["close-channel", "exchange", point, "--data-dir", str(tmp_path)]
    result = runner.invoke(simnet_app, args)
    assert result.exit_code == 0, result.output
    closing_txid = result.output.strip()
    with SimnetNetwork(tmp_path / "simnet") as net:
        (closed,) = net.list_closed_channels("exchange")
    assert (closed.closing_txid, closed.close_address) == (closing_txid, COLD[3])
    again = runner.invoke(simnet_app, args)
    assert again.exit_code == 1 and "no open channel" in again.output


# -- configuration and CLI -------------------------------------------------------------------


def test_the_treasury_section_of_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "lngate.toml"
    path.write_text(
        "[treasury]\nhot_onchain_cap_sat = 500000\nhot_channel_target_sat = 2000000\n"
        "sweep_sat_per_vbyte = 5\nsweep_interval_s = 30.0\nsweep_min_sat = 20000\n"
    )
    policy = load_config(config_file=path, env={}).treasury
    assert policy == TreasuryPolicy(500_000, 2_000_000, 5, 30.0, 20_000)


def test_the_cli_imports_sweeps_and_reports(
    tcore: Core, network: SimnetNetwork, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not tcore.config.effective_database_url.startswith("sqlite"):
        pytest.skip("the CLI test runs once, on the embedded default")
    from lngate.cli import app

    tcore.close()  # the CLI opens its own
    monkeypatch.setenv("LNGATE_DATA_DIR", str(tcore.config.data_dir))
    monkeypatch.setenv("LNGATE_DATABASE_URL", tcore.config.database_url)
    monkeypatch.delenv("LNGATE_CONFIG", raising=False)
    cold = tmp_path / "cold.txt"
    cold.write_text(f"# cold\n{tpub_descriptor(SEED)}\n")
    runner = CliRunner()
    imported = runner.invoke(app, ["cold", "import", str(cold), "--count", "3"])
    assert imported.exit_code == 0, imported.output
    assert '"imported": 3' in imported.output
    swept = runner.invoke(app, ["treasury", "sweep"])
    assert swept.exit_code == 0 and '"swept": true' in swept.output, swept.output
    status = runner.invoke(app, ["treasury", "status"])
    assert status.exit_code == 0 and '"addresses_used": 1' in status.output, status.output
    opened = runner.invoke(app, ["channels", "open", "carol", "100000"])
    assert opened.exit_code == 0 and COLD[1] in opened.output, opened.output
    listed = runner.invoke(app, ["channels", "list"])
    assert listed.exit_code == 0 and COLD[1] in listed.output
    bad = tmp_path / "bad.txt"
    bad.write_text(f"{COLD[2]}\nbc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu\n")
    refused = runner.invoke(app, ["cold", "import", str(bad)])
    assert refused.exit_code == 2 and "line 2" in refused.output
