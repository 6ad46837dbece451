"""Internal settlement always finishes: a withdrawal to another user's deposit invoice credits
the recipient exactly once, whatever the node's latency, whatever order the invoice watcher,
the expiry poll and the worker see our own cancel in, and across crashes; any failure ends it
``failed`` with the hold voided; and a node that is down before the hold creates nothing."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from lngate.bootstrap import Core, use_cases
from lngate.client import AsyncClient
from lngate.config import Config
from lngate.domain.withdrawals import WithdrawalStatus
from lngate.lightning import errors as node_errors
from lngate.lightning.node import InvoiceState
from lngate.lightning.simnet import FaultKind, SimnetNetwork, SimnetNode
from lngate.services.accounts import Credentials, account_view
from lngate.services.reconciliation import check_ledger
from lngate.store import deposits, users
from lngate.store import withdrawals as store
from lngate.store.db import Tx
from lngate.workers.invoice_watcher import InvoiceWatcher
from tests.conftest import LiveServer, funded_user, started_core
from tests.helpers import (
    available_msat,
    create_deposit,
    eventually,
    pay_from_wallet,
    payment_worker,
    request_withdrawal,
    wait_status,
    withdrawal_review,
)

FUNDS = 10_000_000
AMOUNT = 70_000


def client(server: LiveServer, creds: Credentials) -> AsyncClient:
    return AsyncClient(server.url, creds.api_key, creds.api_secret)


async def deposit_invoice(
    server: LiveServer, creds: Credentials, amount_msat: int
) -> dict[str, Any]:
    async with client(server, creds) as c:
        r = await c.post("/v1/deposits", {"amount_msat": amount_msat})
        assert r.status_code == 201, r.text
        return dict(r.json())


def balance_msat(core: Core, creds: Credentials) -> int:
    def read(tx: Tx) -> int:
        user = users.user_by_id(tx, creds.user_id)
        assert user is not None
        return account_view(tx, user, "test").available_msat

    return core.uow.read_sync(read)


def assert_settled_once(
    core: Core, payer: Credentials, recipient: Credentials, hash_hex: str
) -> None:
    assert balance_msat(core, payer) == FUNDS - AMOUNT
    assert balance_msat(core, recipient) == AMOUNT
    deposit = core.uow.read_sync(lambda tx: deposits.by_hash(tx, hash_hex))
    assert deposit is not None and deposit.status.value == "settled"
    assert core.uow.read_sync(check_ledger).ok


@pytest.mark.parametrize("latency_ms", [0, 5, 20, 100])
async def test_an_internal_withdrawal_finishes_whatever_the_node_latency(
    live_server: LiveServer, latency_ms: int
) -> None:
    alice = funded_user(live_server.core, "alice", FUNDS)
    bob = funded_user(live_server.core, "bob")
    if latency_ms:
        live_server.network.faults.set(FaultKind.SLOW, node="exchange", delay_ms=latency_ms)
    deposit = await deposit_invoice(live_server, bob, AMOUNT)
    async with client(live_server, alice) as c:
        r = await c.post("/v1/withdrawals", {"bolt11": deposit["bolt11"]})
        assert r.status_code == 201, r.text
        w = r.json()
        assert w["internal"] is True
        done = await wait_status(c, w["id"], {"succeeded", "failed"})
        assert done["status"] == "succeeded", done
    # the watcher and the expiry poll have seen our cancel by now; the outcome stands
    await asyncio.sleep(max(0.5, latency_ms / 100))
    assert_settled_once(live_server.core, alice, bob, deposit["payment_hash"])
    async with client(live_server, bob) as b:
        assert (await b.get(f"/v1/deposits/{deposit['id']}")).json()["status"] == "settled"


async def test_a_node_that_is_down_before_the_hold_creates_nothing(
    live_server: LiveServer,
) -> None:
    alice = funded_user(live_server.core, "alice", FUNDS)
    bob = funded_user(live_server.core, "bob")
    deposit = await deposit_invoice(live_server, bob, AMOUNT)
    live_server.network.faults.set(FaultKind.OFFLINE, node="exchange")
    async with client(live_server, alice) as c:
        r = await c.post("/v1/withdrawals", {"bolt11": deposit["bolt11"]})
        assert r.status_code == 503 and r.json()["error"]["code"] == "NODE_UNREACHABLE"
        assert (await c.get("/v1/withdrawals")).json()["withdrawals"] == []
        account = (await c.get("/v1/account")).json()
        assert account["available_msat"] == FUNDS and account["pending_msat"] == 0
    stored = live_server.core.uow.read_sync(
        lambda tx: deposits.by_hash(tx, deposit["payment_hash"])
    )
    assert stored is not None and stored.status.value == "open" and stored.reserved_by is None


class FlakyCancel(SimnetNode):
    """The exchange node whose cancel fails (unreachable) a given number of times, after the
    hold: the request must still answer with the withdrawal, and the worker finish it."""

    def __init__(self, network: SimnetNetwork, failures: int) -> None:
        super().__init__(network)
        self.failures = failures

    async def cancel_invoice(self, payment_hash: bytes) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise node_errors.NodeUnreachable("connection refused (test)")
        await super().cancel_invoice(payment_hash)


async def test_a_node_failing_after_the_hold_never_answers_an_error(core: Core) -> None:
    alice = funded_user(core, "alice", FUNDS)
    bob = funded_user(core, "bob")
    network = SimnetNetwork(core.config.simnet_dir)
    node = FlakyCancel(network, failures=3)
    deposit = await create_deposit(core, node, bob.user_id, AMOUNT)
    w = await request_withdrawal(core, node, alice, deposit["bolt11"])
    assert w["status"] == "sending"  # held, durable, and not an error
    worker = payment_worker(core, node, poll_s=0.01, track_every_s=0.0)
    await worker.run_until_idle(timeout_s=10)
    finished = core.uow.read_sync(lambda tx: store.by_id(tx, w["id"]))
    assert finished is not None and finished.status is WithdrawalStatus.SUCCEEDED
    assert_settled_once(core, alice, bob, deposit["payment_hash"])
    network.close()


WatcherStep = Callable[[InvoiceWatcher, SimnetNode, bytes], Awaitable[None]]


async def watcher_sees_cancel(
    watcher: InvoiceWatcher, node: SimnetNode, payment_hash: bytes
) -> None:
    """The stream's update for our own cancel, and an expiry poll that looks at every open
    deposit (a negative grace), both handled now."""
    await watcher.handle(await node.lookup_invoice(payment_hash))
    await watcher.sweep_once()


class CancelSeenAtOnce(SimnetNode):
    """The watcher handles the cancel right after the node did it: before the settlement."""

    watcher: InvoiceWatcher | None = None

    async def cancel_invoice(self, payment_hash: bytes) -> None:
        await super().cancel_invoice(payment_hash)
        if self.watcher is not None:
            await watcher_sees_cancel(self.watcher, self, payment_hash)


class CancelSeenDuring(SimnetNode):
    """The watcher's close is queued together with the settlement's write."""

    watcher: InvoiceWatcher | None = None
    pending: list[asyncio.Task[None]] = []  # noqa: RUF012

    async def cancel_invoice(self, payment_hash: bytes) -> None:
        await super().cancel_invoice(payment_hash)
        if self.watcher is not None:
            self.pending.append(
                asyncio.create_task(watcher_sees_cancel(self.watcher, self, payment_hash))
            )


@pytest.mark.parametrize("when", ["before", "during", "after"])
async def test_the_watcher_seeing_our_cancel_never_closes_the_deposit_first(
    core: Core, when: str
) -> None:
    alice = funded_user(core, "alice", FUNDS)
    bob = funded_user(core, "bob")
    network = SimnetNetwork(core.config.simnet_dir)
    node_class = {"before": CancelSeenAtOnce, "during": CancelSeenDuring, "after": SimnetNode}
    node = node_class[when](network)
    watcher_node = SimnetNode(network)
    watcher = InvoiceWatcher(
        use_cases(core, watcher_node).deposits, watcher_node, expiry_grace_s=-100_000
    )
    node.watcher = watcher  # type: ignore[attr-defined]
    deposit = await create_deposit(core, node, bob.user_id, AMOUNT)
    w = await request_withdrawal(core, node, alice, deposit["bolt11"])
    if when == "during":
        await asyncio.gather(*CancelSeenDuring.pending)
        CancelSeenDuring.pending.clear()
    if when == "after":
        await watcher_sees_cancel(watcher, node, bytes.fromhex(deposit["payment_hash"]))
    assert w["status"] == "succeeded", w
    assert_settled_once(core, alice, bob, deposit["payment_hash"])
    network.close()


async def test_an_invoice_paid_from_outside_meanwhile_fails_the_withdrawal_and_credits_once(
    core: Core,
) -> None:
    """Between our lookup and our cancel, a wallet pays the invoice: the withdrawal fails with
    a reason and its hold voided, and the outside payment is credited to the recipient, once."""
    alice = funded_user(core, "alice", FUNDS)
    bob = funded_user(core, "bob")
    network = SimnetNetwork(core.config.simnet_dir)

    class PaidFirst(SimnetNode):
        async def cancel_invoice(self, payment_hash: bytes) -> None:
            invoice = await self.lookup_invoice(payment_hash)
            pay_from_wallet(core.config.simnet_dir, "carol", invoice.bolt11)
            await super().cancel_invoice(payment_hash)

    node = PaidFirst(network)
    deposit = await create_deposit(core, node, bob.user_id, AMOUNT)
    w = await request_withdrawal(core, node, alice, deposit["bolt11"])
    assert w["status"] == "failed" and "outside" in w["note"], w
    assert balance_msat(core, alice) == FUNDS
    assert balance_msat(core, bob) == AMOUNT  # the outside payment, credited once
    watcher_node = SimnetNode(network)
    watcher = InvoiceWatcher(use_cases(core, watcher_node).deposits, watcher_node)
    await watcher.handle(await node.lookup_invoice(bytes.fromhex(deposit["payment_hash"])))
    assert balance_msat(core, bob) == AMOUNT
    assert core.uow.read_sync(check_ledger).ok
    network.close()


@pytest.fixture
def review_core(config: Config) -> Iterator[Core]:
    """Internal withdrawals above 10 sat wait for an operator, so a crash-looping worker (not
    the request) is the one to settle them."""
    policy = dataclasses.replace(config.withdrawals, review_above_msat=10_000)
    with started_core(dataclasses.replace(config, withdrawals=policy)) as c:
        yield c


INTERNAL_CRASHPOINTS = (
    "before_claim:0.05,after_sending_recorded:0.1,internal_before_cancel:0.1,"
    "internal_after_cancel:0.15"
)
UNFINISHED = "SELECT COUNT(*) FROM withdrawals WHERE status NOT IN ('succeeded', 'failed')"


@pytest.mark.slow
async def test_internal_settlement_survives_a_crash_at_every_step(review_core: Core) -> None:
    core = review_core
    network = SimnetNetwork(core.config.simnet_dir)
    node = SimnetNode(network)
    payers = [funded_user(core, f"payer{i}", FUNDS) for i in range(4)]
    recipients = [funded_user(core, f"recipient{i}") for i in range(4)]
    requests = use_cases(core, node).withdrawal_requests
    review = withdrawal_review(core)
    hashes = []
    for i in range(40):
        deposit = await create_deposit(core, node, recipients[i % 4].user_id, AMOUNT)
        w = await requests.request(
            payers[i % 4].user_id,
            bolt11=deposit["bolt11"],
            lightning_address=None,
            amount_msat=None,
            idempotency=(str(uuid.uuid4()), str(i)),
        )
        assert w.status is WithdrawalStatus.REVIEW
        await review.approve(w.id, "test", "looks fine")
        hashes.append(deposit["payment_hash"])
    env = {
        **os.environ,
        "LNGATE_DATA_DIR": str(core.config.data_dir),
        "LNGATE_DATABASE_URL": core.config.effective_database_url,
        "LNGATE_CRASHPOINTS": INTERNAL_CRASHPOINTS,
    }
    env.pop("LNGATE_CONFIG", None)
    crashes, deadline = 0, time.monotonic() + 120

    def unfinished() -> int:
        return int(core.uow.read_sync(lambda tx: tx.scalar(UNFINISHED)))

    while unfinished() and time.monotonic() < deadline:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lngate.cli", "worker"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        while proc.poll() is None and unfinished() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)
        elif proc.returncode == -9:
            crashes += 1
    assert unfinished() == 0
    assert crashes >= 3, f"the test meant to crash the worker; it crashed {crashes} times"
    for payer in payers:
        assert balance_msat(core, payer) == FUNDS - 10 * AMOUNT
    for recipient in recipients:
        assert balance_msat(core, recipient) == 10 * AMOUNT
    for payment_hash in hashes:
        deposit = core.uow.read_sync(lambda tx, h=payment_hash: deposits.by_hash(tx, h))
        assert deposit is not None and deposit.status.value == "settled"
        invoice = await node.lookup_invoice(bytes.fromhex(payment_hash))
        assert invoice.state is InvoiceState.CANCELED  # nobody outside can pay it as well
    assert core.uow.read_sync(check_ledger).ok
    network.close()


async def test_the_worker_never_loops_on_an_internal_withdrawal(live_server: LiveServer) -> None:
    """Under a slow node, every internal withdrawal ends (succeeded here), none stays held."""
    alice = funded_user(live_server.core, "alice", FUNDS)
    bobs = [funded_user(live_server.core, f"bob{i}") for i in range(5)]
    live_server.network.faults.set(FaultKind.SLOW, node="exchange", delay_ms=25)
    invoices = [await deposit_invoice(live_server, bob, AMOUNT) for bob in bobs]
    async with client(live_server, alice) as c:
        ids = []
        for invoice in invoices:
            r = await c.post("/v1/withdrawals", {"bolt11": invoice["bolt11"]})
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])

        async def all_finished() -> bool:
            listed = (await c.get("/v1/withdrawals")).json()["withdrawals"]
            return all(w["status"] == "succeeded" for w in listed)

        await eventually(all_finished, timeout_s=20, what="every internal withdrawal to finish")
        assert (await c.get("/v1/account")).json()["pending_msat"] == 0
        assert await available_msat(c) == FUNDS - 5 * AMOUNT


class RefusesCancel(SimnetNode):
    """A node credential that may not cancel invoices, or a node that ignores the cancel."""

    def __init__(self, network: SimnetNetwork, *, deny: bool) -> None:
        super().__init__(network)
        self.deny = deny

    async def cancel_invoice(self, payment_hash: bytes) -> None:
        if self.deny:
            raise node_errors.PermissionDenied("permission denied (test)")


@pytest.mark.parametrize("deny", [True, False], ids=["denied", "ignored"])
async def test_a_cancel_the_node_refuses_fails_the_withdrawal_instead_of_looping(
    core: Core, deny: bool
) -> None:
    alice = funded_user(core, "alice", FUNDS)
    bob = funded_user(core, "bob")
    network = SimnetNetwork(core.config.simnet_dir)
    node = RefusesCancel(network, deny=deny)
    deposit = await create_deposit(core, node, bob.user_id, AMOUNT)
    w = await request_withdrawal(core, node, alice, deposit["bolt11"])
    assert w["status"] == "failed" and "cancel" in w["note"], w
    assert balance_msat(core, alice) == FUNDS and balance_msat(core, bob) == 0
    released = core.uow.read_sync(lambda tx: deposits.by_hash(tx, deposit["payment_hash"]))
    assert released is not None and released.status.value == "open"
    assert released.reserved_by is None  # an ordinary deposit again: payable from outside
    assert core.uow.read_sync(check_ledger).ok
    network.close()
