"""The treasury's guards on what it books are explicit checks that raise InvariantBroken, not
``assert`` statements that ``python -O`` would remove; a broken one writes nothing. On simnet,
SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import replace

import pytest

from lngate.bootstrap import Core
from lngate.config import Config
from lngate.domain.errors import InvariantBroken
from lngate.domain.treasury import TreasuryPolicy
from lngate.lightning.node import ClosedChannel, CloseType
from lngate.lightning.simnet import SimnetNetwork, SimnetNode
from lngate.services.onchain_books import record_close_op
from lngate.store import treasury as store
from tests import treasury_support as ts
from tests.conftest import started_core

POLICY = TreasuryPolicy(hot_onchain_cap_sat=2_000_000, sweep_sat_per_vbyte=3, sweep_min_sat=50_000)


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


async def _import(core: Core, network: SimnetNetwork, count: int) -> list[str]:
    cold = [network.new_address("dave") for _ in range(count)]
    await ts.cold_storage(core, SimnetNode(network)).import_addresses("\n".join(cold))
    return cold


def _books(core: Core) -> tuple[int, int, list[store.ColdAddress]]:
    """Transfers, sweeps and every cold address row: what a refused booking must leave as is."""
    return (
        int(core.uow.read_sync(lambda tx: tx.scalar("SELECT COUNT(*) FROM transfers"))),
        int(core.uow.read_sync(lambda tx: tx.scalar("SELECT COUNT(*) FROM sweeps"))),
        core.uow.read_sync(lambda tx: store.all_addresses(tx, limit=100)),
    )


async def test_a_sweep_booked_again_with_another_amount_is_refused_and_writes_nothing(
    tcore: Core, network: SimnetNetwork
) -> None:
    await _import(tcore, network, 2)
    network.fund_onchain("exchange", 3_000_000)
    swept = await ts.worker(tcore, SimnetNode(network)).sweep_once()
    assert swept is not None
    before = _books(tcore)
    cold = ts.cold_storage(tcore, SimnetNode(network))
    # The same txid again is a replay (nothing moves) ...
    assert (
        await cold.record_sweep(swept.address, swept.txid, swept.amount_sat, swept.fee_sat) is False
    )
    assert _books(tcore) == before
    # ... but the same txid with another amount is a bug: the ledger refuses the transfer.
    with pytest.raises(InvariantBroken, match=f"sweep:{swept.txid}"):
        await cold.record_sweep(swept.address, swept.txid, swept.amount_sat + 1, swept.fee_sat)
    assert _books(tcore) == before


async def test_a_sweep_to_a_channel_close_address_is_refused(
    tcore: Core, network: SimnetNetwork
) -> None:
    cold = await _import(tcore, network, 2)
    node = SimnetNode(network)
    opened = await ts.channels(tcore, node).open_to_cold("carol", 100_000, actor="test", reason="t")
    assert opened.close_address == cold[0]
    before = _books(tcore)
    with pytest.raises(InvariantBroken, match="no cold sweep address"):
        await ts.cold_storage(tcore, node).record_sweep(cold[0], "ab" * 32, 10_000, 100)
    assert _books(tcore) == before


async def test_a_close_of_another_channel_is_not_booked_to_this_address(
    tcore: Core, network: SimnetNetwork
) -> None:
    await _import(tcore, network, 1)
    node = SimnetNode(network)
    opened = await ts.channels(tcore, node).open_to_cold("carol", 100_000, actor="test", reason="t")
    before = _books(tcore)
    other = ClosedChannel("cd" * 32 + ":0", "ef" * 32, CloseType.COOPERATIVE, 90_000)
    op = record_close_op(opened.close_address, other, tcore.system_accounts, tcore.clock)
    with pytest.raises(InvariantBroken, match="belongs to channel"):
        await tcore.uow.write(op)
    assert _books(tcore) == before


def test_the_guards_hold_under_python_minus_o() -> None:
    """``python -O`` drops every ``assert``; these checks must not go with them."""
    script = textwrap.dedent(
        """
        import sys
        from lngate.domain.errors import InvariantBroken
        from lngate.lightning.node import ClosedChannel, CloseType
        from lngate.services.clock import FixedClock
        from lngate.services.cold_storage import record_sweep_op
        from lngate.services.onchain_books import record_close_op, record_funding_fee_op

        assert False, "asserts must be off here"
        accounts = {"node": 1, "cold": 2, "onchain_fee_expense": 3}
        clock = FixedClock(1_700_000_000_000)
        force = ClosedChannel("aa" * 32 + ":0", "bb" * 32, CloseType.LOCAL_FORCE, 1_000)
        attempts = [
            lambda: record_sweep_op("addr", "cc" * 32, 0, 0, accounts, clock),
            lambda: record_sweep_op("addr", "cc" * 32, 1_000, -1, accounts, clock),
            lambda: record_funding_fee_op("addr", "dd" * 32, -1, accounts),
            lambda: record_close_op("addr", force, accounts, clock),
        ]
        for attempt in attempts:
            try:
                attempt()
            except InvariantBroken:
                continue
            sys.exit("a guard vanished under -O")
        print("held")
        """
    )
    done = subprocess.run(
        [sys.executable, "-O", "-c", script], capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stdout.strip()) == (0, "held"), done.stderr
