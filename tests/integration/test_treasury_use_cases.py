"""The treasury's use cases, without a server or a worker loop: cold storage, channels, the
on-chain books and the status, over SQLite (and PostgreSQL), simnet and a fixed clock.

Each test reads as a rule of the treasury; the time a rule is judged at is the clock's."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from lngate.api import schemas
from lngate.bootstrap import open_core
from lngate.config import Config
from lngate.domain.errors import ColdImportRefused, InvalidAmount, InvariantBroken, NoColdAddress
from lngate.domain.ledger import AccountKind
from lngate.domain.treasury import ColdPurpose, TreasuryPolicy
from lngate.lightning.node import Network
from lngate.lightning.simnet import SimnetNetwork, SimnetNode
from lngate.lightning.simnet.onchain import FUNDING_TX_VSIZE_VBYTES
from lngate.services.channels import Channels, ChannelView
from lngate.services.clock import FixedClock
from lngate.services.cold_storage import ColdStorage, SweepClaim
from lngate.services.onchain_books import BookedClose, BookedFundingFee, OnchainBooks
from lngate.services.treasury_status import TreasuryStatus
from lngate.store import audit
from lngate.store import treasury as store
from lngate.store.ledger import get_account
from lngate.store.unit_of_work import DirectUnitOfWork

T0_MS = 1_700_000_000_000  # the clock's start: 2023-11-14T22:13:20Z
LEASE_MS = 60_000
POLICY = TreasuryPolicy(hot_onchain_cap_sat=2_000_000, sweep_sat_per_vbyte=3, sweep_min_sat=50_000)


@dataclass
class Treasury:
    """The treasury's use cases over one database, one simnet node and one fixed clock."""

    uow: DirectUnitOfWork
    clock: FixedClock
    network: SimnetNetwork
    accounts: dict[str, int]
    cold: ColdStorage
    channels: Channels
    books: OnchainBooks
    status: TreasuryStatus

    def net_debit_msat(self, kind: AccountKind) -> int:
        account = self.uow.read_sync(lambda tx: get_account(tx, self.accounts[kind.value]))
        assert account is not None
        return account.balance.debits_posted_msat - account.balance.credits_posted_msat


@pytest.fixture
def t(config: Config) -> Iterator[Treasury]:
    core = open_core(dataclasses.replace(config, treasury=POLICY))  # migrated, system accounts
    network = SimnetNetwork(core.config.simnet_dir)
    uow = DirectUnitOfWork(core.db)  # no writer thread: each write its own transaction
    clock = FixedClock(T0_MS)
    node = SimnetNode(network)
    accounts = core.system_accounts
    cold = ColdStorage(uow, clock, node, accounts)
    try:
        yield Treasury(
            uow,
            clock,
            network,
            accounts,
            cold,
            Channels(uow, node, clock, cold),
            OnchainBooks(uow, node, accounts, clock),
            TreasuryStatus(uow, node, POLICY, accounts),
        )
    finally:
        uow.close()
        network.close()
        core.close()


async def _import(t: Treasury, count: int) -> list[str]:
    addresses = [t.network.new_address("dave") for _ in range(count)]  # no key of ours
    await t.cold.import_addresses("\n".join(addresses), source_name="cold.txt")
    return addresses


# -- cold storage --------------------------------------------------------------------------------


async def test_an_import_is_checked_for_the_nodes_network_and_counted(t: Treasury) -> None:
    addresses = [t.network.new_address("dave") for _ in range(3)]

    first = await t.cold.import_addresses("\n".join(addresses[:2]), source_name="a.txt")
    again = await t.cold.import_addresses("\n".join(addresses), source_name="b.txt")

    assert first.as_json() == {
        "network": "simnet",
        "kind": "addresses",
        "source": "list:a.txt",
        "imported": 2,
        "already_known": 0,
        "first_address": addresses[0],
        "last_address": addresses[1],
    }
    assert (again.imported, again.already_known) == (1, 2)
    with pytest.raises(ColdImportRefused, match="line 1: a mainnet address"):
        await t.cold.import_addresses("bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu")
    listed = await t.cold.addresses()
    assert [(a.address, a.source_index, a.purpose, a.used) for a in listed] == [
        (addresses[0], 1, None, False),
        (addresses[1], 2, None, False),
        (addresses[2], 3, None, False),
    ]


async def test_addresses_are_handed_out_once_in_import_order_at_the_clocks_time(
    t: Treasury,
) -> None:
    addresses = await _import(t, 2)

    first = await t.cold.allocate(ColdPurpose.CHANNEL_CLOSE)
    t.clock.advance(5_000)
    second = await t.cold.allocate(ColdPurpose.SWEEP)

    assert (first.address, first.allocated_at_ms) == (addresses[0], T0_MS)
    assert (second.address, second.allocated_at_ms) == (addresses[1], T0_MS + 5_000)
    with pytest.raises(NoColdAddress):
        await t.cold.allocate(ColdPurpose.SWEEP)
    assert [a.purpose for a in await t.cold.addresses()] == ["channel_close", "sweep"]


async def test_only_a_fresh_cold_address_of_the_right_purpose_passes_the_guard(
    t: Treasury,
) -> None:
    await _import(t, 2)
    sweep = await t.cold.allocate(ColdPurpose.SWEEP)

    ok = await t.cold.require_cold_address(sweep.address, ColdPurpose.SWEEP, Network.SIMNET)

    assert ok.address == sweep.address
    for address, purpose in [
        (sweep.address, ColdPurpose.CHANNEL_CLOSE),  # handed out for something else
        (t.network.new_address("carol"), ColdPurpose.SWEEP),  # not ours
    ]:
        with pytest.raises(InvariantBroken, match="refusing to send"):
            await t.cold.require_cold_address(address, purpose, Network.SIMNET)
    with pytest.raises(InvariantBroken, match="refusing to send"):  # ours, on another chain
        await t.cold.require_cold_address(sweep.address, ColdPurpose.SWEEP, Network.REGTEST)


async def test_a_pending_sweep_belongs_to_its_worker_until_the_lease_runs_out(
    t: Treasury,
) -> None:
    await _import(t, 2)
    assert await t.cold.claim_pending_sweep("worker-a", LEASE_MS) is SweepClaim.NONE
    handed = await t.cold.allocate_sweep("worker-a")
    assert handed is not None
    assert await t.cold.allocate_sweep("worker-b") is None  # one sweep in progress at most

    t.clock.advance(LEASE_MS - 1)
    assert await t.cold.claim_pending_sweep("worker-b", LEASE_MS) is SweepClaim.BUSY
    mine = await t.cold.claim_pending_sweep("worker-a", LEASE_MS)
    assert not isinstance(mine, SweepClaim) and mine.address == handed.address

    t.clock.advance(LEASE_MS)  # worker-a renewed its claim above; now that one is stale too
    taken = await t.cold.claim_pending_sweep("worker-b", LEASE_MS)
    assert not isinstance(taken, SweepClaim) and taken.address == handed.address
    row = t.uow.read_sync(lambda tx: store.by_address(tx, handed.address))
    assert row is not None and (row.claim_token, row.claimed_at_ms) == (
        "worker-b",
        T0_MS + 2 * LEASE_MS - 1,
    )


async def test_a_sweep_is_booked_node_to_cold_with_its_fee_once(t: Treasury) -> None:
    await _import(t, 1)
    address = await t.cold.allocate_sweep("worker")
    assert address is not None
    txid = "ab" * 32

    assert await t.cold.record_sweep(address.address, txid, 500_000, 1_200) is True
    assert await t.cold.record_sweep(address.address, txid, 500_000, 1_200) is False  # replay

    assert t.net_debit_msat(AccountKind.COLD) == 500_000_000
    assert t.net_debit_msat(AccountKind.ONCHAIN_FEE_EXPENSE) == 1_200_000
    assert t.net_debit_msat(AccountKind.NODE) == -501_200_000
    (listed,) = await t.cold.addresses()
    assert (listed.used, listed.txid, listed.amount_sat) == (True, txid, 500_000)
    assert await t.cold.claim_pending_sweep("worker", LEASE_MS) is SweepClaim.NONE
    with pytest.raises(InvariantBroken, match=f"sweep:{txid}"):  # the same txid, more money
        await t.cold.record_sweep(address.address, txid, 500_001, 1_200)


# -- channels ------------------------------------------------------------------------------------


async def test_a_channel_opens_to_a_fresh_cold_address_and_the_open_is_audited(
    t: Treasury,
) -> None:
    addresses = await _import(t, 2)

    opened = await t.channels.open_to_cold(
        "carol", 200_000, push_sat=10_000, actor="test:olivia", reason="liquidity"
    )

    assert (opened.peer, opened.amount_sat, opened.push_sat) == ("carol", 200_000, 10_000)
    assert opened.close_address == addresses[0]
    row = t.uow.read_sync(lambda tx: store.by_address(tx, addresses[0]))
    assert row is not None and row.channel_point == opened.channel_point
    assert row.used_at_ms == T0_MS
    (record,) = [r for r in t.uow.read_sync(audit.records) if r.action == "channel.open"]
    assert (record.actor, record.subject, record.reason) == (
        "test:olivia",
        "peer:carol",
        "liquidity",
    )
    assert record.details == opened.as_json()
    assert schemas.ChannelOpened.model_validate(opened).model_dump() == opened.as_json()


async def test_a_channel_refused_before_the_node_is_asked_costs_no_address(t: Treasury) -> None:
    await _import(t, 1)
    for amount_sat, push_sat in [(0, 0), (100_000, 100_000), (100_000, -1)]:
        with pytest.raises(InvalidAmount):
            await t.channels.open_to_cold(
                "carol", amount_sat, push_sat=push_sat, actor="test", reason="t"
            )
    assert t.uow.read_sync(store.counts) == store.ColdCounts(free=1, pending=0, used=0)


async def test_the_channel_list_says_which_close_addresses_are_cold(t: Treasury) -> None:
    await _import(t, 1)
    opened = await t.channels.open_to_cold("carol", 100_000, actor="test", reason="t")

    listed = {c.channel_point: c for c in await t.channels.list()}

    ours = listed.pop(opened.channel_point)
    assert (ours.close_address, ours.close_address_is_cold) == (opened.close_address, True)
    assert ours.capacity_sat == 100_000 and ours.peer_pubkey == t.network.pubkey("carol")
    assert listed and not any(c.close_address_is_cold for c in listed.values())
    as_api = schemas.Channel.model_validate(ours)
    assert as_api.model_dump() == ours.as_json()
    assert [f.name for f in dataclasses.fields(ChannelView)] == list(schemas.Channel.model_fields)


# -- on-chain books ------------------------------------------------------------------------------


async def test_a_cooperative_close_and_the_funding_fee_are_booked_once(t: Treasury) -> None:
    addresses = await _import(t, 1)
    opened = await t.channels.open_to_cold("carol", 200_000, actor="test", reason="t")
    funding_txid = opened.channel_point.split(":")[0]
    fee_sat = FUNDING_TX_VSIZE_VBYTES * 1  # simnet funds channels at 1 sat/vB

    assert await t.books.book_funding_fees() == [
        BookedFundingFee(opened.channel_point, funding_txid, fee_sat)
    ]
    assert await t.books.book_funding_fees() == []
    assert await t.books.book_closed_channels() == []  # still open

    t.clock.advance(1_000)
    closing_txid = t.network.close_channel("exchange", opened.channel_point)
    booked = await t.books.book_closed_channels()

    assert booked == [BookedClose(opened.channel_point, closing_txid, addresses[0], 200_000)]
    assert await t.books.book_closed_channels() == []
    assert t.net_debit_msat(AccountKind.COLD) == 200_000_000
    assert t.net_debit_msat(AccountKind.ONCHAIN_FEE_EXPENSE) == fee_sat * 1000
    (listed,) = await t.cold.addresses()
    assert (listed.close_txid, listed.close_amount_sat) == (closing_txid, 200_000)


async def test_a_force_close_is_not_booked_to_cold(t: Treasury) -> None:
    await _import(t, 1)
    opened = await t.channels.open_to_cold("carol", 200_000, actor="test", reason="t")
    t.network.close_channel("exchange", opened.channel_point, cooperative=False)

    assert await t.books.book_closed_channels() == []
    assert t.net_debit_msat(AccountKind.COLD) == 0


# -- status --------------------------------------------------------------------------------------


async def test_the_status_is_the_admin_apis_treasury_body_and_the_clis_output(
    t: Treasury,
) -> None:
    addresses = await _import(t, 3)
    opened = await t.channels.open_to_cold("carol", 150_000, actor="test", reason="t")
    await t.books.book_funding_fees()
    closing_txid = t.network.close_channel("carol", opened.channel_point)
    await t.books.book_closed_channels()
    pending = await t.cold.allocate_sweep("worker")
    assert pending is not None
    confirmed_sat = t.network.balances("exchange").onchain_confirmed_sat

    report = await t.status.report()

    assert report.onchain.confirmed_sat == confirmed_sat
    assert report.onchain.cap_sat == POLICY.hot_onchain_cap_sat
    assert report.channels.target_local_sat == POLICY.hot_channel_target_sat
    cold = report.cold
    assert (cold.addresses_free, cold.addresses_pending, cold.addresses_used) == (1, 1, 1)
    assert cold.pending_sweep_address == pending.address
    assert (cold.channel_closes, cold.channel_closes_sat) == (1, 150_000)
    assert cold.ledger_balance_msat == 150_000_000
    assert report.channel_closes == (
        BookedClose(opened.channel_point, closing_txid, addresses[0], 150_000),
    )
    # One record, two renderings: the API's model reads it as it is, and the CLI's JSON (in
    # the wire's field order) is what that model dumps.
    as_api = schemas.Treasury.model_validate(report)
    assert as_api.model_dump() == report.as_json()
    assert list(report.as_json()) == ["onchain", "channels", "cold", "channel_closes"]
