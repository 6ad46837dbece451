"""Withdrawals on a real LND: the exchange's lnd pays bob's invoices (through alice), the payment
worker holds the spending macaroon and the request path only the invoice-only one.

The lifecycle tests of tests/integration/test_withdrawals.py where a real network allows them:
success with the right amounts posted, a no-route failure, a payment held in flight by a hold
invoice on bob until he settles or cancels it, internal settlement between two users of the
exchange's node, and its refusal once bob has paid the invoice. Then a crash test: the worker
process SIGKILLed at its crash points over a mix of withdrawals.

Each test has a fresh lngate database over the one shared regtest network; tests run one at a
time, so the exchange's channel balance moves only by what the test itself pays.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import os
import random
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from lngate.bootstrap import Core, use_cases
from lngate.client import AsyncClient
from lngate.config import Config
from lngate.domain.errors import DuplicatePaymentHash, InternalInvoicePaid
from lngate.domain.ledger import AccountKind
from lngate.domain.withdrawals import FINAL, WithdrawalStatus
from lngate.lightning.lnd import LndNode
from lngate.lightning.node import Network, Payment, PaymentStatus
from lngate.regtest import Network as RegtestNetwork
from lngate.services.reconciliation import check_ledger
from lngate.services.withdrawals import WithdrawalRequests
from lngate.store import deposits, events
from lngate.store import withdrawals as store
from lngate.store.deposits import DepositStatus
from lngate.store.ledger import all_accounts, get_account
from lngate.store.withdrawals import Withdrawal
from tests.conftest import funded_user
from tests.helpers import create_deposit, foreign_invoice, invoice_watcher
from tests.helpers import payment_worker as payment_worker_over
from tests.regtest.lngate_helpers import (
    LndServer,
    PayRefused,
    available,
    bob_hold_invoice,
    bob_invoice,
    cancel_hold,
    eventually,
    exchange_payments,
    invoice_node,
    invoice_state,
    lnd_config,
    node_account_balance,
    pay,
    request,
    running,
    settle_hold,
    settled_channel_balance,
    user_balance,
    wait_for,
    withdrawal,
)

pytestmark = pytest.mark.regtest

FUNDS = 10_000_000
FEE_BASE_MSAT = 500
FEE_PPM = 1_000


@pytest.fixture
def config(config: Config, regtest: RegtestNetwork) -> Config:
    """The fresh database of tests/conftest.py, on the exchange's lnd, with an exchange fee so
    that its posting is checked too."""
    policy = dataclasses.replace(config.withdrawals, fee_base_msat=FEE_BASE_MSAT, fee_ppm=FEE_PPM)
    return dataclasses.replace(lnd_config(config, regtest), withdrawals=policy)


@pytest.fixture
async def api_node(config: Config) -> AsyncIterator[LndNode]:
    """The request path's node (the API process): the invoice-only macaroon."""
    n = invoice_node(config)
    yield n
    await n.close()


@pytest.fixture
def service(core: Core, api_node: LndNode) -> WithdrawalRequests:
    return use_cases(core, api_node).withdrawal_requests


class SpyNode(LndNode):
    """The worker's adapter, recording the fee limits it was asked to pay with and what
    ``track_payment`` answered."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fee_limits: list[int] = []
        self.tracked: list[PaymentStatus] = []

    async def pay(self, bolt11: str, **kwargs: Any) -> Payment:
        self.fee_limits.append(int(kwargs["fee_limit_msat"]))
        return await super().pay(bolt11, **kwargs)

    async def track_payment(self, payment_hash: bytes) -> Payment:
        payment = await super().track_payment(payment_hash)
        self.tracked.append(payment.status)
        return payment


def spy_node(config: Config) -> SpyNode:
    assert config.lnd is not None and config.lnd.spending_macaroon is not None
    return SpyNode(
        config.lnd.rest_url,
        config.lnd.tls_cert,
        config.lnd.spending_macaroon.read_bytes().hex(),
    )


@asynccontextmanager
async def payment_worker(core: Core) -> AsyncIterator[SpyNode]:
    """The payment worker, running on its own adapter (spending macaroon) for the block."""
    node = spy_node(core.config)
    worker = payment_worker_over(core, node, poll_s=0.05, track_every_s=0.1)
    try:
        async with running(worker.run):
            yield node
    finally:
        await node.close()


async def until_status(
    core: Core, withdrawal_id: str, statuses: set[WithdrawalStatus], timeout_s: float = 60
) -> Withdrawal:
    return await eventually(
        f"withdrawal {withdrawal_id} to be {'/'.join(sorted(statuses))}",
        lambda: asyncio.to_thread(withdrawal, core, withdrawal_id),
        lambda w: w.status in statuses,
        timeout_s,
    )


FINISHED = {WithdrawalStatus.SUCCEEDED, WithdrawalStatus.FAILED}


def system_balance(core: Core, kind: AccountKind) -> Any:
    account = core.uow.read_sync(lambda tx: get_account(tx, core.system_accounts[kind.value]))
    assert account is not None
    return account.balance


def exchange_fee(amount_msat: int) -> int:
    return FEE_BASE_MSAT + -(-amount_msat * FEE_PPM // 1_000_000)


def bob_htlc_states(invoice: dict[str, Any]) -> list[str]:
    return [str(h["state"]) for h in invoice.get("htlcs", [])]


def succeeded_htlcs(payments: list[dict[str, Any]]) -> int:
    return sum(1 for p in payments for h in p.get("htlcs", []) if h["status"] == "SUCCEEDED")


# --- success, failure, in flight ---------------------------------------------------------------


async def test_a_withdrawal_to_bob_pays_once_and_posts_the_right_amounts(
    core: Core, service: WithdrawalRequests, regtest: RegtestNetwork
) -> None:
    alice = funded_user(core, "alice", FUNDS)
    mallory = funded_user(core, "mallory", FUNDS)
    bolt11, payment_hash = await asyncio.to_thread(bob_invoice, regtest, 100_000, "withdrawal")
    channel_before = await asyncio.to_thread(settled_channel_balance, regtest)

    w = await request(service, alice.user_id, bolt11)
    assert w["status"] == "approved" and w["amount_msat"] == 100_000
    assert w["fee_reserve_msat"] == 10_000 and w["exchange_fee_msat"] == exchange_fee(100_000)
    held = 100_000 + w["fee_reserve_msat"] + w["exchange_fee_msat"]
    assert user_balance(core, alice.user_id).debits_pending_msat == held
    # One payment hash, one withdrawal: another user cannot submit it as well.
    with pytest.raises(DuplicatePaymentHash):
        await request(service, mallory.user_id, bolt11)

    async with payment_worker(core) as node:
        done = await until_status(core, w["id"], FINISHED)
    assert done.status is WithdrawalStatus.SUCCEEDED, done
    assert node.fee_limits == [done.fee_reserve_msat]  # the fee limit is the reserve held
    assert done.routing_fee_msat is not None
    assert 0 < done.routing_fee_msat <= done.fee_reserve_msat
    assert done.preimage is not None
    assert hashlib.sha256(bytes.fromhex(done.preimage)).hexdigest() == payment_hash

    spent = 100_000 + done.routing_fee_msat + done.exchange_fee_msat
    balance = user_balance(core, alice.user_id)
    assert balance.available_msat == FUNDS - spent and balance.debits_pending_msat == 0
    assert await available(core, mallory.user_id) == FUNDS
    node_account = node_account_balance(core)
    assert node_account.credits_posted_msat == 100_000 + done.routing_fee_msat
    assert node_account.credits_pending_msat == 0
    revenue = system_balance(core, AccountKind.FEE_REVENUE)
    assert revenue.credits_posted_msat == done.exchange_fee_msat
    assert revenue.credits_pending_msat == 0

    # bob got the amount once; the exchange's lnd made one payment with one settled HTLC, and
    # its channel balance fell by exactly what the books say left the node.
    on_bob = await asyncio.to_thread(invoice_state, regtest, "bob", payment_hash)
    assert on_bob["state"] == "SETTLED" and int(on_bob["amt_paid_msat"]) == 100_000
    (payment,) = await asyncio.to_thread(exchange_payments, regtest, payment_hash)
    assert payment["status"] == "SUCCEEDED" and succeeded_htlcs([payment]) == 1
    assert int(payment["fee_msat"]) == done.routing_fee_msat
    channel_after = await asyncio.to_thread(settled_channel_balance, regtest)
    assert channel_before - channel_after == 100_000 + done.routing_fee_msat
    assert core.uow.read_sync(check_ledger).ok


async def test_an_amountless_invoice_and_an_uppercase_qr_invoice_are_paid(
    core: Core, service: WithdrawalRequests, regtest: RegtestNetwork
) -> None:
    """An amountless invoice of bob's is paid the amount the user asked for; an invoice as
    wallets scan it from a QR code (``LIGHTNING:LNBCRT...``, upper case) is paid as well."""
    alice = funded_user(core, "alice", FUNDS)
    amountless, amountless_hash = await asyncio.to_thread(bob_invoice, regtest, 0, "any")
    upper, upper_hash = await asyncio.to_thread(bob_invoice, regtest, 21_000, "qr")
    created = await service.request(
        alice.user_id,
        bolt11=amountless,
        lightning_address=None,
        amount_msat=17_000,
        idempotency=(str(uuid.uuid4()), uuid.uuid4().hex),
    )
    a = created.as_json()
    assert a["status"] == "approved" and a["amount_msat"] == 17_000, a
    b = await request(service, alice.user_id, "LIGHTNING:" + upper.upper())
    assert b["status"] == "approved" and b["amount_msat"] == 21_000, b
    async with payment_worker(core):
        done = [await until_status(core, x["id"], FINISHED) for x in (a, b)]
    assert [d.status for d in done] == [WithdrawalStatus.SUCCEEDED] * 2, done
    for d, payment_hash, amount in zip(
        done, (amountless_hash, upper_hash), (17_000, 21_000), strict=True
    ):
        on_bob = await asyncio.to_thread(invoice_state, regtest, "bob", payment_hash)
        assert on_bob["state"] == "SETTLED" and int(on_bob["amt_paid_msat"]) == amount
        assert d.routing_fee_msat is not None
    spent = sum(d.amount_msat + (d.routing_fee_msat or 0) + d.exchange_fee_msat for d in done)
    assert await available(core, alice.user_id) == FUNDS - spent
    assert node_account_balance(core).credits_posted_msat == sum(
        d.amount_msat + (d.routing_fee_msat or 0) for d in done
    )
    assert core.uow.read_sync(check_ledger).ok


def unroutable_invoice(amount_msat: int) -> tuple[str, str]:
    """An invoice signed by a random key: a node nobody knows, so there is no route."""
    payment_hash = hashlib.sha256(os.urandom(32)).digest()
    bolt11 = foreign_invoice(
        Network.REGTEST, amount_msat, payment_hash=payment_hash, description="nobody"
    )
    return bolt11, payment_hash.hex()


async def test_a_no_route_failure_releases_the_hold(
    core: Core, service: WithdrawalRequests, regtest: RegtestNetwork
) -> None:
    alice = funded_user(core, "alice", FUNDS)
    bolt11, payment_hash = unroutable_invoice(50_000)
    w = await request(service, alice.user_id, bolt11)
    assert w["status"] == "approved"
    async with payment_worker(core):
        done = await until_status(core, w["id"], FINISHED)
    assert done.status is WithdrawalStatus.FAILED, done
    assert "route" in done.note.lower(), done.note
    assert done.routing_fee_msat is None and done.preimage is None
    balance = user_balance(core, alice.user_id)
    assert balance.available_msat == FUNDS and balance.debits_pending_msat == 0
    node_account = node_account_balance(core)
    assert node_account.credits_posted_msat == 0 and node_account.credits_pending_msat == 0
    # lnd recorded the payment as failed before any HTLC went out
    payments = await asyncio.to_thread(exchange_payments, regtest, payment_hash)
    assert [p["status"] for p in payments] == ["FAILED"]
    assert succeeded_htlcs(payments) == 0
    assert core.uow.read_sync(check_ledger).ok


@pytest.mark.parametrize("settle", [True, False], ids=["bob-settles", "bob-cancels"])
async def test_a_payment_held_by_bob_keeps_the_hold_until_he_decides(
    core: Core, service: WithdrawalRequests, regtest: RegtestNetwork, settle: bool
) -> None:
    alice = funded_user(core, "alice", FUNDS)
    bolt11, payment_hash, preimage = await asyncio.to_thread(bob_hold_invoice, regtest, 40_000)
    channel_before = await asyncio.to_thread(settled_channel_balance, regtest)
    w = await request(service, alice.user_id, bolt11)
    held = 40_000 + w["fee_reserve_msat"] + w["exchange_fee_msat"]

    def bob_holds_it() -> bool | None:
        state = invoice_state(regtest, "bob", payment_hash)["state"]
        return True if state == "ACCEPTED" else None

    async with payment_worker(core):
        await asyncio.to_thread(wait_for, "bob to hold the HTLC", bob_holds_it)
        await until_status(core, w["id"], {WithdrawalStatus.SENDING})
    # The worker stopped mid-payment (lngate restarts); lnd and bob's held HTLC go on.
    assert withdrawal(core, w["id"]).status is WithdrawalStatus.SENDING

    async with payment_worker(core) as node:
        # The new worker asks lnd again and again; lnd says in flight; the hold stays.
        await eventually(
            "the worker to find the payment in flight three times",
            lambda: asyncio.sleep(0, list(node.tracked)),
            lambda tracked: tracked.count(PaymentStatus.IN_FLIGHT) >= 3,
        )
        still = withdrawal(core, w["id"])
        assert still.status is WithdrawalStatus.SENDING, still
        balance = user_balance(core, alice.user_id)
        assert balance.debits_pending_msat == held
        assert balance.available_msat == FUNDS - held
        assert node.fee_limits == []  # tracked, never sent a second time

        if settle:
            await asyncio.to_thread(settle_hold, regtest, preimage)
        else:
            await asyncio.to_thread(cancel_hold, regtest, payment_hash)
        done = await until_status(core, w["id"], FINISHED)

    balance = user_balance(core, alice.user_id)
    assert balance.debits_pending_msat == 0
    on_bob = await asyncio.to_thread(invoice_state, regtest, "bob", payment_hash)
    payments = await asyncio.to_thread(exchange_payments, regtest, payment_hash)
    channel_after = await asyncio.to_thread(settled_channel_balance, regtest)
    if settle:
        assert done.status is WithdrawalStatus.SUCCEEDED, done
        assert done.preimage == preimage.hex() and done.routing_fee_msat is not None
        spent = 40_000 + done.routing_fee_msat + done.exchange_fee_msat
        assert balance.available_msat == FUNDS - spent
        assert node_account_balance(core).credits_posted_msat == 40_000 + done.routing_fee_msat
        assert on_bob["state"] == "SETTLED" and int(on_bob["amt_paid_msat"]) == 40_000
        assert bob_htlc_states(on_bob) == ["SETTLED"]
        assert succeeded_htlcs(payments) == 1
        assert channel_before - channel_after == 40_000 + done.routing_fee_msat
    else:
        assert done.status is WithdrawalStatus.FAILED, done
        assert "incorrect_payment_details" in done.note, done.note
        assert balance.available_msat == FUNDS  # voided: amount, reserve and exchange fee
        assert node_account_balance(core).credits_posted_msat == 0
        # (lnd keeps amt_paid_msat of a canceled hold invoice at what was accepted: the
        # HTLCs' states tell that nothing was settled)
        assert on_bob["state"] == "CANCELED"
        assert bob_htlc_states(on_bob) == ["CANCELED"]
        assert succeeded_htlcs(payments) == 0
        assert channel_after == channel_before
    assert node_account_balance(core).credits_pending_msat == 0
    assert core.uow.read_sync(check_ledger).ok


async def test_a_withdrawal_over_http_is_paid(core: Core, regtest: RegtestNetwork) -> None:
    """The whole path: the API (invoice-only macaroon) takes the request, the payment worker
    (spending macaroon) pays bob."""
    alice = funded_user(core, "alice", FUNDS)
    bolt11, payment_hash = await asyncio.to_thread(bob_invoice, regtest, 33_000, "over http")
    with LndServer(core) as server:
        async with AsyncClient(server.url, alice.api_key, alice.api_secret) as c:
            r = await c.post("/v1/withdrawals", {"bolt11": bolt11})
            assert r.status_code == 201, r.text
            w = r.json()

            async def status() -> dict[str, Any]:
                return dict((await c.get(f"/v1/withdrawals/{w['id']}")).json())

            done = await eventually("the withdrawal to finish", status, _finished, 60)
            assert done["status"] == "succeeded", done
            account = (await c.get("/v1/account")).json()
            spent = 33_000 + done["routing_fee_msat"] + done["exchange_fee_msat"]
            assert account["available_msat"] == FUNDS - spent
            assert account["pending_msat"] == 0
    on_bob = await asyncio.to_thread(invoice_state, regtest, "bob", payment_hash)
    assert on_bob["state"] == "SETTLED" and int(on_bob["amt_paid_msat"]) == 33_000
    assert core.uow.read_sync(check_ledger).ok


def _finished(w: dict[str, Any]) -> bool:
    return w.get("status") in ("succeeded", "failed")


# --- internal settlement ---------------------------------------------------------------------


def deposit_status(core: Core, payment_hash: str) -> DepositStatus:
    d = core.uow.read_sync(lambda tx: deposits.by_hash(tx, payment_hash))
    assert d is not None
    return d.status


async def test_an_invoice_of_another_user_is_settled_internally_and_cancelled_on_lnd(
    core: Core, service: WithdrawalRequests, api_node: LndNode, regtest: RegtestNetwork
) -> None:
    alice = funded_user(core, "alice", FUNDS)
    bea = funded_user(core, "bea")
    watcher = invoice_watcher(core, invoice_node(core.config))
    try:
        async with running(watcher.run):
            deposit = await create_deposit(core, api_node, bea.user_id, 70_000)
            w = await request(service, alice.user_id, deposit["bolt11"])
            assert w["status"] == "succeeded" and w["internal"] is True, w
            assert w["routing_fee_msat"] == 0 and w["exchange_fee_msat"] == 0
            assert await available(core, alice.user_id) == FUNDS - 70_000
            assert await available(core, bea.user_id) == 70_000
            assert deposit_status(core, deposit["payment_hash"]) is DepositStatus.SETTLED

            # Cancelled on the exchange's lnd: bob can no longer pay it.
            on_lnd = await asyncio.to_thread(
                invoice_state, regtest, "exchange", deposit["payment_hash"]
            )
            assert on_lnd["state"] == "CANCELED"
            try:
                outside = await asyncio.to_thread(pay, regtest, "bob", deposit["bolt11"])
            except PayRefused:
                pass
            else:
                assert outside["status"] == "FAILED", outside
            on_lnd = await asyncio.to_thread(
                invoice_state, regtest, "exchange", deposit["payment_hash"]
            )
            assert on_lnd["state"] == "CANCELED" and int(on_lnd["amt_paid_msat"]) == 0

            # An amountless deposit invoice: settled internally for the amount alice gives.
            any_amount = await create_deposit(core, api_node, bea.user_id, None)
            created = await service.request(
                alice.user_id,
                bolt11=any_amount["bolt11"],
                lightning_address=None,
                amount_msat=15_000,
                idempotency=(str(uuid.uuid4()), uuid.uuid4().hex),
            )
            w2 = created.as_json()
            assert w2["status"] == "succeeded" and w2["internal"] is True, w2
            assert await available(core, bea.user_id) == 85_000
            settled = core.uow.read_sync(
                lambda tx: deposits.by_hash(tx, any_amount["payment_hash"])
            )
            assert settled is not None and settled.amount_paid_msat == 15_000

            # A sentinel deposit paid by bob: once it is credited the watcher has seen
            # everything before it, and bea was credited once for each internal one.
            sentinel = await create_deposit(core, api_node, bea.user_id, 2_000)
            paid = await asyncio.to_thread(pay, regtest, "bob", sentinel["bolt11"])
            assert paid["status"] == "SUCCEEDED", paid
            await eventually(
                "the sentinel deposit to be credited",
                lambda: available(core, bea.user_id),
                lambda got: got == 87_000,
            )
    finally:
        await watcher._node.close()
    assert node_account_balance(core).credits_posted_msat == 0  # nothing left the node
    types = [e.type for e in core.uow.read_sync(lambda tx: events.after(tx, bea.user_id, 0))]
    assert types == ["deposit.settled"] * 3
    assert await available(core, alice.user_id) == FUNDS - 85_000
    assert core.uow.read_sync(check_ledger).ok


async def test_internal_settlement_is_refused_once_bob_paid_the_invoice(
    core: Core, service: WithdrawalRequests, api_node: LndNode, regtest: RegtestNetwork
) -> None:
    alice = funded_user(core, "alice", FUNDS)
    bea = funded_user(core, "bea")
    first = await create_deposit(core, api_node, bea.user_id, 30_000)
    second = await create_deposit(core, api_node, bea.user_id, 20_000)
    for d in (first, second):
        paid = await asyncio.to_thread(pay, regtest, "bob", d["bolt11"])
        assert paid["status"] == "SUCCEEDED", paid

    # No watcher has seen bob's payment yet: the deposit is still open in our books, and only
    # the node can tell. It says settled: refused before any hold, and nothing recorded.
    assert deposit_status(core, first["payment_hash"]) is DepositStatus.OPEN
    with pytest.raises(InternalInvoicePaid):
        await request(service, alice.user_id, first["bolt11"])
    balance = user_balance(core, alice.user_id)
    assert balance.available_msat == FUNDS and balance.debits_pending_msat == 0
    assert core.uow.read_sync(lambda tx: store.active_with_hash(tx, first["payment_hash"])) is None

    watcher = invoice_watcher(core, invoice_node(core.config))
    try:
        async with running(watcher.run):
            await eventually(
                "bob's two payments to be credited",
                lambda: available(core, bea.user_id),
                lambda got: got == 50_000,
            )
    finally:
        await watcher._node.close()

    # Once credited, the deposit is closed in our books: refused before any hold.
    with pytest.raises(InternalInvoicePaid):
        await request(service, alice.user_id, second["bolt11"])
    assert await available(core, alice.user_id) == FUNDS
    assert await available(core, bea.user_id) == 50_000  # credited once, by bob's payments
    for d in (first, second):
        on_lnd = await asyncio.to_thread(invoice_state, regtest, "exchange", d["payment_hash"])
        assert on_lnd["state"] == "SETTLED"
        assert int(on_lnd["amt_paid_msat"]) == d["amount_msat"]
    assert node_account_balance(core).credits_posted_msat == 0
    assert core.uow.read_sync(check_ledger).ok


# --- the worker SIGKILLed at its crash points --------------------------------------------------

CRASH_USERS = 16  # 3 withdrawals each: nobody reaches the cap on payments in flight
CRASHPOINTS = "before_claim:0.02,after_sending_recorded:0.15,after_node_answered:0.15"
CRASH_DEADLINE_S = 120
HOLD_RESOLVE_AFTER_S = 1.5  # a held HTLC is decided after a worker crash, or after this


@dataclasses.dataclass
class Planned:
    kind: str  # "plain" (bob pays out), "no_route", "hold_settle" or "hold_cancel"
    amount_msat: int
    bolt11: str
    payment_hash: str
    preimage: bytes | None = None
    accepted: tuple[float, int] | None = None  # (when bob held the HTLC, crashes by then)
    resolved: bool = False


def crash_plan(regtest: RegtestNetwork, rng: random.Random) -> list[Planned]:
    kinds = ["plain"] * 28 + ["no_route"] * 8 + ["hold_settle"] * 7 + ["hold_cancel"] * 5
    rng.shuffle(kinds)
    plan = []
    for kind in kinds:
        amount = rng.randrange(5_000, 60_000)
        if kind == "plain":
            plan.append(Planned(kind, amount, *bob_invoice(regtest, amount, "crash test")))
        elif kind == "no_route":
            plan.append(Planned(kind, amount, *unroutable_invoice(amount)))
        else:
            bolt11, payment_hash, preimage = bob_hold_invoice(regtest, amount)
            plan.append(Planned(kind, amount, bolt11, payment_hash, preimage))
    return plan


def worker_config_file(core: Core, regtest: RegtestNetwork, path: Path) -> Path:
    """The config TOML of the worker process: the exchange's lnd, and no treasury sweep or
    reconciliation getting in the way of the measurement."""
    lnd = core.config.lnd
    assert lnd is not None and lnd.spending_macaroon is not None
    q = json.dumps  # a JSON string is a valid TOML basic string
    path.write_text(
        f"database_url = {q(core.config.effective_database_url)}\n"
        "log_json = false\n"
        "reconcile_interval_s = 3600.0\n"
        "[node]\n"
        'backend = "lnd"\n'
        "[lnd]\n"
        f"rest_url = {q(lnd.rest_url)}\n"
        f"tls_cert = {q(str(lnd.tls_cert))}\n"
        f"invoice_macaroon = {q(str(lnd.invoice_macaroon))}\n"
        f"spending_macaroon = {q(str(lnd.spending_macaroon))}\n"
        "[treasury]\n"
        "hot_onchain_cap_sat = 2100000000000000\n"
        "sweep_interval_s = 3600.0\n"
    )
    return path


def worker_env(core: Core, config_file: Path, crashpoints: str | None) -> dict[str, str]:
    env = {
        **os.environ,
        "LNGATE_DATA_DIR": str(core.config.data_dir),
        "LNGATE_DATABASE_URL": core.config.effective_database_url,
        "LNGATE_CONFIG": str(config_file),
    }
    env.pop("LNGATE_CRASHPOINTS", None)
    if crashpoints:
        env["LNGATE_CRASHPOINTS"] = crashpoints
    return env


UNFINISHED = "SELECT COUNT(*) FROM withdrawals WHERE status NOT IN ('succeeded', 'failed')"


def unfinished(core: Core) -> int:
    return int(core.uow.read_sync(lambda tx: tx.scalar(UNFINISHED)))


def decide_held(regtest: RegtestNetwork, plan: list[Planned], crashes: int) -> None:
    """Settle or cancel the hold invoices bob holds an HTLC for, each once a worker has crashed
    since (or, failing that, a moment later): the decision lands while workers die and restart."""
    now = time.monotonic()
    for p in plan:
        if p.kind not in ("hold_settle", "hold_cancel") or p.resolved:
            continue
        if p.accepted is None:
            if invoice_state(regtest, "bob", p.payment_hash)["state"] == "ACCEPTED":
                p.accepted = (now, crashes)
            continue
        since, crashes_then = p.accepted
        if crashes > crashes_then or now - since > HOLD_RESOLVE_AFTER_S:
            if p.kind == "hold_settle":
                assert p.preimage is not None
                settle_hold(regtest, p.preimage)
            else:
                cancel_hold(regtest, p.payment_hash)
            p.resolved = True


async def test_the_worker_survives_sigkill_on_lnd(
    core: Core, service: WithdrawalRequests, regtest: RegtestNetwork, tmp_path: Path
) -> None:
    rng = random.Random(20261125)
    plan = await asyncio.to_thread(crash_plan, regtest, rng)
    by_hash = {p.payment_hash: p for p in plan}
    users_ = [funded_user(core, f"u{i}", FUNDS) for i in range(CRASH_USERS)]
    for i, p in enumerate(plan):
        w = await request(service, users_[i % CRASH_USERS].user_id, p.bolt11)
        assert w["status"] == "approved", w
    config_file = worker_config_file(core, regtest, tmp_path / "worker.toml")
    log_path = tmp_path / "worker.log"
    # Nothing else pays or is paid by the exchange's lnd from here to the end of the test.
    channel_before = await asyncio.to_thread(settled_channel_balance, regtest)

    crashes, started, deadline = 0, 0, time.monotonic() + CRASH_DEADLINE_S
    with log_path.open("ab") as log:
        while unfinished(core) and time.monotonic() < deadline:
            proc = subprocess.Popen(
                [sys.executable, "-m", "lngate.cli", "worker"],
                env=worker_env(core, config_file, CRASHPOINTS),
                stdout=log,
                stderr=log,
            )
            started += 1
            try:
                while proc.poll() is None and unfinished(core) and time.monotonic() < deadline:
                    await asyncio.to_thread(decide_held, regtest, plan, crashes)
                    await asyncio.sleep(0.1)  # the pace of this polling loop
            finally:
                if proc.poll() is None:
                    proc.terminate()
                    proc.wait(timeout=30)
            if proc.returncode == -9:
                crashes += 1
            else:
                assert proc.returncode in (0, -15), (proc.returncode, log_path.read_text()[-3000:])
            await asyncio.to_thread(decide_held, regtest, plan, crashes)
    assert unfinished(core) == 0, f"withdrawals left unfinished after {started} worker starts"
    assert crashes >= 3, f"the test meant to crash the worker; it crashed {crashes} times"

    finished = core.uow.read_sync(
        lambda tx: (
            store.with_status(tx, WithdrawalStatus.SUCCEEDED, 1000)
            + store.with_status(tx, WithdrawalStatus.FAILED, 1000)
        )
    )
    assert len(finished) == len(plan)
    paid_out_msat = 0
    for w in finished:
        p = by_hash[w.payment_hash]
        assert w.status in FINAL
        payments = await asyncio.to_thread(exchange_payments, regtest, w.payment_hash)
        # No invoice paid twice: at most one settled HTLC for the hash, across all attempts.
        assert succeeded_htlcs(payments) == (1 if w.status is WithdrawalStatus.SUCCEEDED else 0)
        if p.kind in ("plain", "hold_settle"):
            assert w.status is WithdrawalStatus.SUCCEEDED, (p.kind, w)
            assert w.preimage is not None and w.routing_fee_msat is not None
            assert hashlib.sha256(bytes.fromhex(w.preimage)).hexdigest() == w.payment_hash
            on_bob = await asyncio.to_thread(invoice_state, regtest, "bob", w.payment_hash)
            assert on_bob["state"] == "SETTLED" and int(on_bob["amt_paid_msat"]) == w.amount_msat
            assert bob_htlc_states(on_bob) == ["SETTLED"]
            (paid,) = [x for x in payments if x["status"] == "SUCCEEDED"]
            assert int(paid["fee_msat"]) == w.routing_fee_msat <= w.fee_reserve_msat
            paid_out_msat += w.amount_msat + w.routing_fee_msat
        else:
            assert w.status is WithdrawalStatus.FAILED, (p.kind, w)
            if p.kind == "hold_cancel":
                on_bob = await asyncio.to_thread(invoice_state, regtest, "bob", w.payment_hash)
                assert on_bob["state"] == "CANCELED"
                assert "SETTLED" not in bob_htlc_states(on_bob)
    assert all(p.resolved for p in plan if p.kind.startswith("hold"))

    # Every hold posted or voided; no user has anything pending; the books balance.
    for account in core.uow.read_sync(all_accounts):
        assert account.balance.debits_pending_msat == 0, account
        assert account.balance.credits_pending_msat == 0, account
    node_account = node_account_balance(core)
    assert node_account.credits_posted_msat == paid_out_msat
    assert core.uow.read_sync(check_ledger).ok
    # The node's channel balance fell by exactly what the ledger says left it.
    channel_after = await asyncio.to_thread(settled_channel_balance, regtest)
    assert channel_before - channel_after == paid_out_msat

    reconcile = subprocess.run(
        [sys.executable, "-m", "lngate.cli", "reconcile"],
        capture_output=True,
        text=True,
        env=worker_env(core, config_file, None),
        timeout=120,
        check=False,
    )
    assert reconcile.returncode == 0, reconcile.stdout + reconcile.stderr
