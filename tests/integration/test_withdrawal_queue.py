"""The payment queue is fair and a freeze holds: one user's hundreds of queued withdrawals never
delay anyone else's; a user's own withdrawals never overtake each other; a frozen user's
withdrawals that were not yet sent wait (internal ones too) until unfrozen or rejected; and
internal withdrawals obey the same rules as external ones."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Iterator
from typing import Any

import pytest

from lngate.bootstrap import Core, administration_for
from lngate.client import AsyncClient
from lngate.config import Config
from lngate.domain.withdrawals import WithdrawalStatus
from lngate.lightning.node import InvoiceState
from lngate.lightning.simnet import FaultKind, SimnetNetwork, SimnetNode
from lngate.services.accounts import Credentials
from lngate.services.reconciliation import check_ledger
from lngate.store import deposits
from lngate.store import withdrawals as store
from tests.conftest import LiveServer, funded_user, started_core
from tests.helpers import (
    available_msat,
    create_deposit,
    payment_worker,
    request_withdrawal,
    wait_status,
    wallet_invoice,
    withdrawal_review,
)

FUNDS = 1_000_000_000
QUEUED = 300


def client(server: LiveServer, creds: Credentials) -> AsyncClient:
    return AsyncClient(server.url, creds.api_key, creds.api_secret)


def statuses(core: Core, ids: list[str]) -> list[WithdrawalStatus]:
    def read(tx: Any) -> list[WithdrawalStatus]:
        found = [store.by_id(tx, i) for i in ids]
        return [w.status for w in found if w is not None]

    return core.uow.read_sync(read)


async def test_one_users_long_queue_never_delays_another_users_withdrawal(
    live_server: LiveServer,
) -> None:
    """Hundreds of one user's withdrawals to a payee that holds HTLCs: five go in flight (the
    cap), the rest wait; another user's withdrawal is sent at once all the same."""
    core = live_server.core
    node = SimnetNode(live_server.network)
    mallory = funded_user(core, "mallory", FUNDS)
    alice = funded_user(core, "alice", FUNDS)
    live_server.network.faults.set(FaultKind.STUCK, node="carol", hold_ms=120_000)
    queued = []
    for _ in range(QUEUED):
        bolt11 = live_server.network.create_invoice("carol", 1_000).bolt11
        queued.append(str((await request_withdrawal(core, node, mallory, bolt11))["id"]))
    cap = core.config.withdrawals.user_sending_max_count

    async def mallory_capped() -> bool:
        return statuses(core, queued).count(WithdrawalStatus.SENDING) == cap

    deadline = time.monotonic() + 30
    while not await mallory_capped():
        assert time.monotonic() < deadline, "mallory's first withdrawals never went in flight"
        await asyncio.sleep(0.05)
    async with client(live_server, alice) as c:
        started = time.monotonic()
        r = await c.post(
            "/v1/withdrawals", {"bolt11": wallet_invoice(core.config.simnet_dir, "dave", 50_000)}
        )
        assert r.status_code == 201, r.text
        done = await wait_status(c, r.json()["id"], {"succeeded", "failed"}, timeout_s=60)
        waited_s = time.monotonic() - started
    assert done["status"] == "succeeded", done
    assert waited_s < 5, f"alice waited {waited_s:.1f}s behind mallory's queue"
    # mallory's queue still waits, oldest first: none of the later ones overtook an earlier one
    now = statuses(core, queued)
    assert now[:cap] == [WithdrawalStatus.SENDING] * cap
    assert set(now[cap:]) == {WithdrawalStatus.APPROVED}


@pytest.fixture
def roomy_core(config: Config) -> Iterator[Core]:
    policy = dataclasses.replace(
        config.withdrawals,
        max_msat=5_000_000_000,
        review_above_msat=5_000_000_000,
        user_daily_max_msat=10_000_000_000,
    )
    with started_core(dataclasses.replace(config, withdrawals=policy)) as c:
        yield c


async def test_a_users_withdrawals_are_sent_in_the_order_they_were_made(roomy_core: Core) -> None:
    """The user's first withdrawal is more than they may have in flight at once, so it waits;
    a later, smaller one that would fit must wait behind it, not pass it."""
    core = roomy_core
    network = SimnetNetwork(core.config.simnet_dir)
    node = SimnetNode(network)
    alice = funded_user(core, "alice", 2 * FUNDS * 5)
    too_much = core.config.withdrawals.user_sending_max_msat + 1_000_000
    first = await request_withdrawal(
        core, node, alice, network.create_invoice("carol", too_much).bolt11
    )
    second = await request_withdrawal(
        core, node, alice, network.create_invoice("carol", 10_000).bolt11
    )
    worker = payment_worker(core, node, poll_s=0.01, track_every_s=0.0)
    await worker.run_until_idle(timeout_s=2)
    assert statuses(core, [first["id"], second["id"]]) == [WithdrawalStatus.APPROVED] * 2
    network.close()


@pytest.fixture
def review_core(config: Config) -> Iterator[Core]:
    policy = dataclasses.replace(config.withdrawals, review_above_msat=50_000)
    with started_core(dataclasses.replace(config, withdrawals=policy)) as c:
        yield c


async def test_a_freeze_stops_every_withdrawal_not_yet_sent_internal_ones_too(
    review_core: Core,
) -> None:
    core = review_core
    network = SimnetNetwork(core.config.simnet_dir)
    node = SimnetNode(network)
    alice = funded_user(core, "alice", FUNDS)
    bob = funded_user(core, "bob")
    external = [
        await request_withdrawal(core, node, alice, network.create_invoice("carol", 20_000).bolt11)
        for _ in range(20)
    ]
    deposit = await create_deposit(core, node, bob.user_id, 60_000)
    internal = await request_withdrawal(core, node, alice, deposit["bolt11"])
    assert internal["status"] == "review"  # the same review rule as external withdrawals
    await administration_for(core).freeze("alice", reason="investigating", actor="test")
    await withdrawal_review(core).approve(internal["id"], "test", "fine")
    worker = payment_worker(core, node, poll_s=0.01, track_every_s=0.0)
    await worker.run_until_idle(timeout_s=1.5)
    ids = [str(w["id"]) for w in external]
    assert set(statuses(core, [*ids, internal["id"]])) == {WithdrawalStatus.APPROVED}
    assert (await node.lookup_invoice(bytes.fromhex(deposit["payment_hash"]))).state is (
        InvoiceState.OPEN
    )
    # an operator rejects one that waits: its hold is released
    rejected = await withdrawal_review(core).reject(ids[0], "test", "fraud")
    assert rejected is not None and rejected.status is WithdrawalStatus.REJECTED
    await administration_for(core).unfreeze("alice", reason="cleared", actor="test")
    await worker.run_until_idle(timeout_s=30)
    assert set(statuses(core, ids[1:])) == {WithdrawalStatus.SUCCEEDED}
    assert statuses(core, [internal["id"]]) == [WithdrawalStatus.SUCCEEDED]
    settled = core.uow.read_sync(lambda tx: deposits.by_hash(tx, deposit["payment_hash"]))
    assert settled is not None and settled.status.value == "settled"
    assert core.uow.read_sync(check_ledger).ok
    network.close()


async def test_a_rejected_internal_withdrawal_releases_the_deposit(review_core: Core) -> None:
    core = review_core
    network = SimnetNetwork(core.config.simnet_dir)
    node = SimnetNode(network)
    alice = funded_user(core, "alice", FUNDS)
    bob = funded_user(core, "bob")
    deposit = await create_deposit(core, node, bob.user_id, 60_000)
    w = await request_withdrawal(core, node, alice, deposit["bolt11"])
    assert w["status"] == "review"
    await withdrawal_review(core).reject(w["id"], "test", "no")
    released = core.uow.read_sync(lambda tx: deposits.by_hash(tx, deposit["payment_hash"]))
    assert released is not None and released.status.value == "open"
    assert released.reserved_by is None
    carol_pays = network.pay("carol", deposit["bolt11"], fee_limit_msat=50_000)
    assert carol_pays.status.value == "succeeded"  # still payable from outside
    network.close()


@pytest.fixture
def strict_core(config: Config) -> Iterator[Core]:
    policy = dataclasses.replace(
        config.withdrawals, max_msat=500_000, user_daily_max_msat=800_000, review_above_msat=400_000
    )
    with started_core(dataclasses.replace(config, withdrawals=policy)) as c:
        yield c


async def test_internal_withdrawals_obey_the_amount_review_and_daily_limits(
    strict_core: Core,
) -> None:
    with LiveServer(strict_core) as server:
        alice = funded_user(server.core, "alice", FUNDS)
        bob = funded_user(server.core, "bob")
        async with client(server, bob) as b:

            async def invoice(amount_msat: int) -> str:
                r = await b.post("/v1/deposits", {"amount_msat": amount_msat})
                return str(r.json()["bolt11"])

            too_big, reviewed = await invoice(600_000), await invoice(450_000)
            fine, over_daily = await invoice(300_000), await invoice(100_000)
        async with client(server, alice) as c:
            r = await c.post("/v1/withdrawals", {"bolt11": too_big})
            assert r.status_code == 400 and r.json()["error"]["code"] == "AMOUNT_OUT_OF_RANGE"
            r = await c.post("/v1/withdrawals", {"bolt11": reviewed})
            assert r.status_code == 201 and r.json()["status"] == "review"
            r = await c.post("/v1/withdrawals", {"bolt11": fine})
            assert r.status_code == 201 and r.json()["status"] == "succeeded"
            r = await c.post("/v1/withdrawals", {"bolt11": over_daily})  # 450 + 300 + 100 > 800
            assert r.json()["error"]["code"] == "LIMIT_EXCEEDED", r.text
            assert await available_msat(c) == FUNDS - 450_000 - 300_000


async def test_nothing_is_credited_to_a_frozen_user(live_server: LiveServer) -> None:
    alice = funded_user(live_server.core, "alice", FUNDS)
    bob = funded_user(live_server.core, "bob")
    async with client(live_server, bob) as b:
        deposit = (await b.post("/v1/deposits", {"amount_msat": 70_000})).json()
    await administration_for(live_server.core).freeze("bob", reason="kyc", actor="test")
    async with client(live_server, alice) as c:
        r = await c.post("/v1/withdrawals", {"bolt11": deposit["bolt11"]})
        assert r.status_code == 403 and r.json()["error"]["code"] == "ACCOUNT_FROZEN", r.text
        transfer = await c.post("/v1/transfers", {"to": "bob", "amount_msat": 1_000})
        assert transfer.json()["error"]["code"] == "ACCOUNT_FROZEN"  # the same rule
        assert await available_msat(c) == FUNDS
    assert live_server.core.uow.read_sync(check_ledger).ok


async def test_a_refused_lightning_address_withdrawal_leaves_no_open_invoice(
    live_server: LiveServer,
) -> None:
    """alice cannot afford it: the invoice minted for bob's address is cancelled, and his
    deposit closed, so nothing dangles on his account."""
    alice = funded_user(live_server.core, "alice", 5_000)
    bob = funded_user(live_server.core, "bob")
    address = f"bob@{live_server.core.config.public_host}"
    async with client(live_server, alice) as c:
        r = await c.post("/v1/withdrawals", {"lightning_address": address, "amount_msat": 50_000})
        assert r.json()["error"]["code"] == "INSUFFICIENT_FUNDS", r.text
    async with client(live_server, bob) as b:
        listed = (await b.get("/v1/deposits")).json()["deposits"]
    assert [d["status"] for d in listed] == ["cancelled"]
    node = SimnetNode(live_server.network)
    invoice = await node.lookup_invoice(bytes.fromhex(listed[0]["payment_hash"]))
    assert invoice.state is InvoiceState.CANCELED
