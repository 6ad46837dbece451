"""Deposits on a real LND: the exchange's lnd issues the invoices, bob pays them from outside
(through alice), and lngate's invoice watcher credits them exactly once.

Each test has a fresh lngate database (SQLite and PostgreSQL) over the one shared regtest
network. A fresh database's watcher starts at settle index 0 and so replays every invoice ever
settled on the exchange's lnd (by earlier tests): those match no deposit and are recorded as
unmatched. The assertions only concern the test's own deposits.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from lngate.bootstrap import Core
from lngate.client import AsyncClient
from lngate.config import Config
from lngate.lightning.lnd import LndNode
from lngate.lightning.node import InvoiceState
from lngate.regtest import Network
from lngate.services.reconciliation import check_ledger
from lngate.store import deposits, events
from lngate.store.deposits import DepositStatus
from tests.conftest import funded_user, started_core
from tests.helpers import create_deposit, invoice_watcher, read_events
from tests.regtest.lngate_helpers import (
    LndServer,
    PayRefused,
    available,
    eventually,
    invoice_node,
    invoice_state,
    lnd_config,
    pay,
    running,
    wait_for,
)

pytestmark = pytest.mark.regtest


@pytest.fixture
def config(config: Config, regtest: Network) -> Config:
    """The fresh database of tests/conftest.py (SQLite or PostgreSQL), on the exchange's lnd."""
    return lnd_config(config, regtest)


@pytest.fixture
async def node(config: Config) -> AsyncIterator[LndNode]:
    """The API process's node: the invoice-only macaroon."""
    n = invoice_node(config)
    yield n
    await n.close()


def deposit_row(core: Core, payment_hash: str) -> deposits.Deposit:
    d = core.uow.read_sync(lambda tx: deposits.by_hash(tx, payment_hash))
    assert d is not None
    return d


def event_types(core: Core, user_id: str) -> list[str]:
    return [e.type for e in core.uow.read_sync(lambda tx: events.after(tx, user_id, 0, 1000))]


async def credited(core: Core, user_id: str, amount_msat: int) -> None:
    await eventually(
        f"{amount_msat} msat to be credited",
        lambda: available(core, user_id),
        lambda got: got == amount_msat,
    )


async def bob_pays(regtest: Network, bolt11: str, amount_msat: int | None = None) -> None:
    payment = await asyncio.to_thread(pay, regtest, "bob", bolt11, amount_msat)
    assert payment["status"] == "SUCCEEDED", payment


async def test_a_deposit_paid_by_bob_is_credited_exactly_once(
    core: Core, node: LndNode, regtest: Network
) -> None:
    user = funded_user(core, "dora")
    watcher = invoice_watcher(core, invoice_node(core.config))
    try:
        async with running(watcher.run):
            d = await create_deposit(core, node, user.user_id, 25_000, memo="top up")
            assert d["status"] == "open" and d["bolt11"].startswith("lnbcrt")
            assert (await node.decode(d["bolt11"])).payee == regtest.nodes["exchange"].pubkey
            await bob_pays(regtest, d["bolt11"])
            await credited(core, user.user_id, 25_000)
            row = deposit_row(core, d["payment_hash"])
            assert row.status is DepositStatus.SETTLED and row.amount_paid_msat == 25_000
            on_lnd = await asyncio.to_thread(invoice_state, regtest, "exchange", d["payment_hash"])
            assert on_lnd["state"] == "SETTLED" and int(on_lnd["amt_paid_msat"]) == 25_000

            # The same invoice cannot be paid twice: bob's lnd refuses to pay a hash it paid,
            # and the exchange's lnd fails alice's HTLC for a settled invoice.
            with pytest.raises(PayRefused):
                await asyncio.to_thread(pay, regtest, "bob", d["bolt11"])
            again = await asyncio.to_thread(pay, regtest, "alice", d["bolt11"])
            assert again["status"] == "FAILED", again
            assert again["failure_reason"] == "FAILURE_REASON_INCORRECT_PAYMENT_DETAILS"

            # A settlement seen again (a stream replay, the expiry poll) credits nothing.
            invoice = await node.lookup_invoice(bytes.fromhex(d["payment_hash"]))
            assert invoice.state is InvoiceState.SETTLED
            await watcher.handle(invoice)
            await watcher.handle(invoice)

            # A sentinel deposit paid after all that: once it is credited, the watcher has
            # seen everything before it, and the first deposit is still credited once.
            sentinel = await create_deposit(core, node, user.user_id, 1_000, memo="sentinel")
            await bob_pays(regtest, sentinel["bolt11"])
            await credited(core, user.user_id, 26_000)
    finally:
        await watcher._node.close()
    assert event_types(core, user.user_id) == ["deposit.settled", "deposit.settled"]
    settled = core.uow.read_sync(lambda tx: events.after(tx, user.user_id, 0))[0]
    assert settled.data["id"] == d["id"] and settled.data["amount_paid_msat"] == 25_000
    on_lnd = await asyncio.to_thread(invoice_state, regtest, "exchange", d["payment_hash"])
    assert int(on_lnd["amt_paid_msat"]) == 25_000
    assert core.uow.read_sync(check_ledger).ok


@pytest.fixture
def short_expiry_core(config: Config) -> Iterator[Core]:
    limits = dataclasses.replace(config.limits, invoice_expiry_s=1)
    with started_core(dataclasses.replace(config, limits=limits)) as c:
        yield c


async def test_an_expired_deposit_is_never_credited_and_is_swept_as_expired(
    short_expiry_core: Core, node: LndNode, regtest: Network
) -> None:
    core = short_expiry_core
    user = funded_user(core, "erin")
    d = await create_deposit(core, node, user.user_id, 5_000)
    expires_at_s = deposit_row(core, d["payment_hash"]).expires_at_ms / 1000

    def expired_on_lnd() -> bool | None:
        # BOLT11 time is in whole seconds: a second past expiry for sure, and lnd's own
        # expiry watcher has canceled it.
        if time.time() < expires_at_s + 1:
            return None
        state = invoice_state(regtest, "exchange", d["payment_hash"])["state"]
        return True if state == "CANCELED" else None

    await asyncio.to_thread(wait_for, "the deposit's invoice to expire on lnd", expired_on_lnd)
    try:
        refused = await asyncio.to_thread(pay, regtest, "bob", d["bolt11"])
    except PayRefused:
        pass  # bob's lnd refuses to pay an expired invoice
    else:
        assert refused["status"] == "FAILED", refused

    watcher = invoice_watcher(core, invoice_node(core.config), expiry_grace_s=0)
    try:
        assert await watcher.sweep_once() == 1
        assert await watcher.sweep_once() == 0  # closed once
    finally:
        await watcher._node.close()
    row = deposit_row(core, d["payment_hash"])
    assert row.status is DepositStatus.EXPIRED and row.amount_paid_msat is None
    assert await available(core, user.user_id) == 0
    assert event_types(core, user.user_id) == ["deposit.expired"]
    on_lnd = await asyncio.to_thread(invoice_state, regtest, "exchange", d["payment_hash"])
    assert on_lnd["state"] == "CANCELED" and int(on_lnd["amt_paid_msat"]) == 0


async def test_deposits_paid_while_the_watcher_was_down_are_credited_once(
    core: Core, node: LndNode, regtest: Network
) -> None:
    user = funded_user(core, "fred")
    first = invoice_watcher(core, invoice_node(core.config))
    try:
        async with running(first.run):
            warm_up = await create_deposit(core, node, user.user_id, 1_000, memo="warm-up")
            await bob_pays(regtest, warm_up["bolt11"])
            await credited(core, user.user_id, 1_000)
    finally:
        await first._node.close()
    assert first.credited == 1  # the warm-up; replays of older invoices match no deposit

    # Nobody watches: bob pays three deposits.
    paid = [
        await create_deposit(core, node, user.user_id, 2_000 * (i + 1), memo=f"while down {i}")
        for i in range(3)
    ]
    for d in paid:
        await bob_pays(regtest, d["bolt11"])
    assert await available(core, user.user_id) == 1_000
    assert all(deposit_row(core, d["payment_hash"]).status is DepositStatus.OPEN for d in paid)

    # A new watcher on a new adapter resumes from the settle index the first one committed.
    second = invoice_watcher(core, invoice_node(core.config))
    try:
        async with running(second.run):
            await credited(core, user.user_id, 1_000 + 2_000 + 4_000 + 6_000)
    finally:
        await second._node.close()
    assert second.credited == 3

    # A third start replays nothing twice: a sentinel paid now is the only credit it makes.
    third = invoice_watcher(core, invoice_node(core.config))
    try:
        async with running(third.run):
            sentinel = await create_deposit(core, node, user.user_id, 1_500, memo="sentinel")
            await bob_pays(regtest, sentinel["bolt11"])
            await credited(core, user.user_id, 13_000 + 1_500)
    finally:
        await third._node.close()
    assert third.credited == 1
    for d in paid:
        row = deposit_row(core, d["payment_hash"])
        assert row.status is DepositStatus.SETTLED and row.amount_paid_msat == d["amount_msat"]
    assert event_types(core, user.user_id) == ["deposit.settled"] * 5
    assert core.uow.read_sync(check_ledger).ok


async def test_an_amountless_deposit_credits_what_bob_paid(
    core: Core, node: LndNode, regtest: Network
) -> None:
    user = funded_user(core, "gina")
    watcher = invoice_watcher(core, invoice_node(core.config))
    try:
        async with running(watcher.run):
            d = await create_deposit(core, node, user.user_id, None, memo="any amount")
            assert d["amount_msat"] is None
            assert (await node.decode(d["bolt11"])).amount_msat is None
            await bob_pays(regtest, d["bolt11"], 12_345)
            await credited(core, user.user_id, 12_345)
    finally:
        await watcher._node.close()
    row = deposit_row(core, d["payment_hash"])
    assert row.status is DepositStatus.SETTLED
    assert row.amount_msat is None and row.amount_paid_msat == 12_345
    assert event_types(core, user.user_id) == ["deposit.settled"]
    assert core.uow.read_sync(check_ledger).ok


async def test_a_deposit_over_http_is_credited_and_announced_live(
    core: Core, regtest: Network
) -> None:
    """The whole path on lnd: the API (invoice-only macaroon) issues the invoice, bob pays it,
    the watcher credits it, and the account's event stream announces it."""
    user = funded_user(core, "hana")
    with LndServer(core) as server:
        async with AsyncClient(server.url, user.api_key, user.api_secret) as c:
            r = await c.post("/v1/deposits", {"amount_msat": 30_000, "memo": "over http"})
            assert r.status_code == 201, r.text
            deposit = r.json()
            started = asyncio.Event()
            listener = asyncio.create_task(
                read_events(
                    server.url,
                    user,
                    started=started,
                    timeout_s=60,
                    until=lambda evs: any(e["event"] == "deposit.settled" for e in evs),
                )
            )
            async with asyncio.timeout(10):
                await started.wait()
            await bob_pays(regtest, deposit["bolt11"])
            received = await listener
            settled = next(e for e in received if e["event"] == "deposit.settled")
            assert settled["data"]["data"]["id"] == deposit["id"]
            got = (await c.get(f"/v1/deposits/{deposit['id']}")).json()
            assert got["status"] == "settled" and got["amount_paid_msat"] == 30_000
            account = (await c.get("/v1/account")).json()
            assert account["available_msat"] == 30_000
    assert core.uow.read_sync(check_ledger).ok


@pytest.fixture
def second_core(config: Config) -> Iterator[Core]:
    """Another lngate process over the same database, issuing deposits that expire in 5 s."""
    limits = dataclasses.replace(config.limits, invoice_expiry_s=5)
    with started_core(dataclasses.replace(config, limits=limits)) as c:
        yield c


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_sweep_ahead_of_the_stream_makes_no_later_watcher_skip_a_settlement(
    core: Core, second_core: Core, node: LndNode, regtest: Network
) -> None:
    user = funded_user(core, "ivan")
    early = await create_deposit(core, node, user.user_id, 5_000, memo="expires in an hour")
    brief = await create_deposit(second_core, node, user.user_id, 6_000, memo="expires in 5 s")
    # Nobody watches: bob pays both, the long-lived one first (the lower settle index).
    await bob_pays(regtest, early["bolt11"])
    await bob_pays(regtest, brief["bolt11"])
    expires_at_s = deposit_row(core, brief["payment_hash"]).expires_at_ms / 1000
    await asyncio.to_thread(
        wait_for,
        "the short deposit to be past its expiry",
        lambda: True if time.time() > expires_at_s else None,
    )
    # The watcher's expiry sweep runs (its stream down, or not yet started): it finds the
    # short one settled on lnd and credits it, with its settle index.
    sweeper = invoice_watcher(core, invoice_node(core.config), expiry_grace_s=0)
    try:
        assert await sweeper.sweep_once() == 1
    finally:
        await sweeper._node.close()
    assert await available(core, user.user_id) == 6_000

    # A watcher starting now must still credit the earlier settlement (design: "resumes from
    # the last settle index it processed, so a restart misses nothing").
    watcher = invoice_watcher(core, invoice_node(core.config))
    try:
        async with running(watcher.run):
            await eventually(
                "the earlier settlement to be credited",
                lambda: available(core, user.user_id),
                lambda got: got == 11_000,
                timeout_s=10,
            )
    finally:
        await watcher._node.close()
