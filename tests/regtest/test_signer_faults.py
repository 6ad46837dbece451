"""The remote signer goes away while lngate runs on the watch-only exchange (remote-signer mode).

What lnd does (lnd's rpcwallet): a watch-only node answers reads without its signer, but the
first thing it must sign (a payment, a new invoice, an incoming HTLC, a peer's handshake) fails
with the signer unreachable and lnd shuts itself down; it cannot start again (unlock) before its
signer is back. A payment it was starting at that moment stays IN_FLIGHT on it, with no HTLC on
any channel, after the restart (lnd #5152).

What lngate must do, and this test checks:

- a withdrawal in flight when the signer goes away keeps its hold while it may still succeed,
  through the signer's absence and the node's shutdown, and succeeds when bob settles after;
- a withdrawal requested meanwhile waits (approved, with a note): the payment worker does not
  send while the signer is unreachable, which also keeps the node up for reads;
- no new deposit invoice is asked for (503 NODE_UNREACHABLE: lnd would shut down signing it);
- reads go on while the node is up: invoice lookups, balances, reconciliation;
- lngate reports the signer unreachable: the ``lngate_signer_reachable`` metric, ``lngate
  reconcile`` and the admin status (and reconcile names the node unreachable once lnd stopped);
- a deposit to an existing invoice that bob pays meanwhile (the HTLC makes lnd shut down) is
  credited exactly once after ``node start signer`` (which starts the exchange again, as a
  supervisor would), and the withdrawal that waited completes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from lngate.api.admin_app import create_admin_app
from lngate.bootstrap import Core, accounts_for, use_cases
from lngate.client import AsyncClient
from lngate.config import Config
from lngate.domain.errors import NodeUnreachable
from lngate.domain.withdrawals import WithdrawalStatus
from lngate.lightning.lnd import LndNode
from lngate.lightning.lnd.signer import MAX_AGE_S as SIGNER_PROBE_MAX_AGE_S
from lngate.lightning.node import InvoiceState
from lngate.regtest import SIGNER, Network
from lngate.services.reconciliation import check_ledger
from lngate.store import deposits
from lngate.store.deposits import DepositStatus
from lngate.store.users import Role
from lngate.store.withdrawals import Withdrawal
from lngate.workers.payment_sender import SIGNER_AWAY_NOTE, SIGNER_CHECK_MAX_AGE_S
from tests.conftest import free_port, funded_user, started_core
from tests.helpers import create_deposit
from tests.regtest.lngate_helpers import (
    LndServer,
    PayRefused,
    bob_hold_invoice,
    bob_invoice,
    cancel_hold,
    eventually,
    exchange_payments,
    invoice_node,
    invoice_state,
    lnd_config,
    pay,
    request,
    settle_hold,
    spending_node,
    user_balance,
    wait_for,
    withdrawal,
)

pytestmark = [pytest.mark.regtest, pytest.mark.regtest_modes("remote-signer")]

FUNDS = 10_000_000
HELD_MSAT = 30_000
QUEUED_MSAT = 25_000
DEPOSIT_MSAT = 20_000
# Long enough for lnd to shut down, start again and settle what waited on it.
OUTAGE_WAIT_S = 90.0
# Rounds of the payment worker (it polls every 0.05 s) during which nothing may be sent.
QUIET_S = 1.5


@pytest.fixture
def core(tmp_path: Path, regtest: Network) -> Iterator[Core]:
    port = free_port()
    base = Config(
        data_dir=tmp_path / "lngate",
        log_json=False,
        port=port,
        public_url=f"http://127.0.0.1:{port}",
    )
    with started_core(lnd_config(base, regtest)) as c:
        yield c


@pytest.fixture
async def api_node(core: Core) -> AsyncIterator[LndNode]:
    n = invoice_node(core.config)
    yield n
    await n.close()


@contextlib.asynccontextmanager
async def admin_api(core: Core) -> AsyncIterator[AsyncClient]:
    """The admin app in process (its lifespan run), with an operator's key."""
    node = spending_node(core.config)
    app = create_admin_app(core, use_cases(core, node))
    creds = accounts_for(core).create_user_sync("operator", Role.ADMIN)
    try:
        async with (
            app.router.lifespan_context(app),
            AsyncClient(
                "http://admin",
                creds.api_key,
                creds.api_secret,
                transport=httpx.ASGITransport(app=app),
            ) as client,
        ):
            yield client
    finally:
        await node.close()


def cli_config(core: Core, path: Path) -> Path:
    """lngate's TOML for the CLI: the exchange's lnd and its signer, as in lngate.toml."""
    lnd = core.config.lnd
    assert lnd is not None and lnd.spending_macaroon is not None and lnd.signer_rpc_host
    q = json.dumps  # a JSON string is a valid TOML basic string
    path.write_text(
        "log_json = false\n"
        "[node]\n"
        'backend = "lnd"\n'
        "[lnd]\n"
        f"rest_url = {q(lnd.rest_url)}\n"
        f"tls_cert = {q(str(lnd.tls_cert))}\n"
        f"invoice_macaroon = {q(str(lnd.invoice_macaroon))}\n"
        f"spending_macaroon = {q(str(lnd.spending_macaroon))}\n"
        f"signer_rpc_host = {q(lnd.signer_rpc_host)}\n"
        f"signer_tls_cert = {q(str(lnd.signer_tls_cert))}\n"
    )
    return path


def reconcile(core: Core, config_file: Path) -> tuple[int, dict[str, Any]]:
    """``lngate reconcile`` in its own process: exit code and the report it prints."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LNGATE_")},
        "LNGATE_DATA_DIR": str(core.config.data_dir),
        "LNGATE_DATABASE_URL": core.config.effective_database_url,
        "LNGATE_CONFIG": str(config_file),
    }
    done = subprocess.run(
        [sys.executable, "-m", "lngate.cli", "reconcile"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.stdout.strip(), done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return done.returncode, report


async def signer_reported(admin: AsyncClient) -> tuple[bool, float]:
    """What the admin status and the metric say of the signer: (reachable, gauge value)."""
    status = (await admin.get("/admin/v1/status")).json()
    metrics = (await admin.get("/metrics")).text
    (gauge,) = [
        float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith("lngate_signer_reachable ")
    ]
    return bool(status["signer"]["reachable"]), gauge


async def until(core: Core, withdrawal_id: str, status: WithdrawalStatus) -> Withdrawal:
    return await eventually(
        f"withdrawal {withdrawal_id} to be {status.value}",
        lambda: asyncio.to_thread(withdrawal, core, withdrawal_id),
        lambda w: w.status is status,
        OUTAGE_WAIT_S,
    )


def deposit_status(core: Core, payment_hash: str) -> DepositStatus:
    d = core.uow.read_sync(lambda tx: deposits.by_hash(tx, payment_hash))
    assert d is not None
    return d.status


def bob_pays_and_waits(regtest: Network, bolt11: str) -> str:
    """bob's payment of a deposit invoice: SUCCEEDED, FAILED, or "refused" (lnd refused it or
    the stream ended while the exchange was down)."""
    try:
        return str(pay(regtest, "bob", bolt11)["status"])
    except PayRefused:
        return "refused"


async def test_with_the_signer_away_nothing_is_lost_and_what_waited_completes(
    core: Core, api_node: LndNode, regtest: Network, tmp_path: Path
) -> None:
    regtest.reload()  # another test may have restarted nodes through the CLI
    config_file = cli_config(core, tmp_path / "lngate.toml")
    service = use_cases(core, api_node).withdrawal_requests
    alice = funded_user(core, "alice", FUNDS)
    bolt0, hash0, preimage0 = await asyncio.to_thread(bob_hold_invoice, regtest, HELD_MSAT)
    try:
        with LndServer(core):
            async with admin_api(core) as admin:
                assert await signer_reported(admin) == (True, 1.0)
                # Before: a withdrawal in flight (bob holds its HTLC), a deposit invoice open.
                w0 = await request(service, alice.user_id, bolt0)
                await asyncio.to_thread(
                    wait_for,
                    "bob to hold the HTLC",
                    lambda: invoice_state(regtest, "bob", hash0)["state"] == "ACCEPTED" or None,
                )
                await until(core, w0["id"], WithdrawalStatus.SENDING)
                held = user_balance(core, alice.user_id).debits_pending_msat
                d1 = await create_deposit(core, api_node, alice.user_id, DEPOSIT_MSAT, memo="d1")

                assert regtest.stop_node(SIGNER)

                # Reads go on while lnd needs no signature; lngate says the signer is away.
                looked_up = await api_node.lookup_invoice(bytes.fromhex(d1["payment_hash"]))
                assert looked_up.state is InvoiceState.OPEN
                assert await signer_reported(admin) == (False, 0.0)
                # No new invoice is asked for: lnd would shut down signing it.
                await asyncio.sleep(SIGNER_PROBE_MAX_AGE_S)
                with pytest.raises(NodeUnreachable, match="remote signer is unreachable"):
                    await create_deposit(core, api_node, alice.user_id, DEPOSIT_MSAT, memo="d2")
                assert "exchange" in regtest.running_nodes()
                code, report = await asyncio.to_thread(reconcile, core, config_file)
                assert code == 0 and report["ok"], report
                assert report["signer"]["reachable"] is False, report
                assert report["node"]["pending_htlcs_msat"] > 0  # w0's HTLC, read from lnd

                # A withdrawal requested now waits, unsent: lnd would shut down on it and
                # keep the payment in flight for ever (lnd #5152). (Requested once the worker's
                # last check of the signer, shared by a round's claims, is older than the stop.)
                await asyncio.sleep(SIGNER_CHECK_MAX_AGE_S)
                bolt1, hash1 = await asyncio.to_thread(bob_invoice, regtest, QUEUED_MSAT, "w1")
                w1 = await request(service, alice.user_id, bolt1)
                await eventually(
                    "the queued withdrawal's note",
                    lambda: asyncio.to_thread(withdrawal, core, w1["id"]),
                    lambda w: w.note == SIGNER_AWAY_NOTE,
                )
                await asyncio.sleep(QUIET_S)
                assert withdrawal(core, w1["id"]).status is WithdrawalStatus.APPROVED
                assert await asyncio.to_thread(exchange_payments, regtest, hash1) == []
                assert "exchange" in regtest.running_nodes()
                assert withdrawal(core, w0["id"]).status is WithdrawalStatus.SENDING

                # bob pays the open deposit invoice: lnd must sign for the HTLC, cannot, and
                # shuts the exchange's node down.
                bob_paying = asyncio.create_task(
                    asyncio.to_thread(bob_pays_and_waits, regtest, d1["bolt11"])
                )
                await asyncio.to_thread(
                    wait_for,
                    "lnd to shut the watch-only exchange down",
                    lambda: "exchange" not in regtest.running_nodes() or None,
                    60,
                )
                code, report = await asyncio.to_thread(reconcile, core, config_file)
                assert code == 1 and report["error"]["code"] == "NODE_UNREACHABLE", report
                assert report["signer"]["reachable"] is False
                await asyncio.sleep(QUIET_S)
                # Nothing decided while nobody can tell: the hold stays, w1 waits, no credit.
                assert withdrawal(core, w0["id"]).status is WithdrawalStatus.SENDING
                assert user_balance(core, alice.user_id).debits_pending_msat >= held
                assert withdrawal(core, w1["id"]).status is WithdrawalStatus.APPROVED
                assert deposit_status(core, d1["payment_hash"]) is DepositStatus.OPEN

                # The signer is back; the exchange, which lnd had shut down, starts with it.
                started = await asyncio.to_thread(regtest.start_node, SIGNER)
                assert started == [SIGNER, "exchange"]
                assert await signer_reported(admin) == (True, 1.0)

                done1 = await until(core, w1["id"], WithdrawalStatus.SUCCEEDED)
                assert invoice_state(regtest, "bob", hash1)["state"] == "SETTLED"
                if await bob_paying != "SUCCEEDED":  # the stream may end while lnd is down
                    on_exchange = invoice_state(regtest, "exchange", d1["payment_hash"])
                    if on_exchange["state"] != "SETTLED":
                        assert await asyncio.to_thread(bob_pays_and_waits, regtest, d1["bolt11"])
                await eventually(
                    "the deposit to be credited",
                    lambda: asyncio.to_thread(deposit_status, core, d1["payment_hash"]),
                    lambda s: s is DepositStatus.SETTLED,
                    OUTAGE_WAIT_S,
                )
                await asyncio.to_thread(settle_hold, regtest, preimage0)
                done0 = await until(core, w0["id"], WithdrawalStatus.SUCCEEDED)
    finally:
        # Whatever happened, leave the network as the next test expects it: both nodes up, and
        # no HTLC held by bob (a held one would keep the exchange's channel busy for ever).
        for name in (SIGNER, "exchange"):
            if not regtest.is_running(name):
                await asyncio.to_thread(regtest.start_node, name)
        if invoice_state(regtest, "bob", hash0)["state"] in ("OPEN", "ACCEPTED"):
            await asyncio.to_thread(cancel_hold, regtest, hash0)

    assert done0.preimage == preimage0.hex()
    assert invoice_state(regtest, "exchange", d1["payment_hash"])["state"] == "SETTLED"
    balance = user_balance(core, alice.user_id)
    assert balance.debits_pending_msat == 0
    spent = sum(
        w.amount_msat + (w.routing_fee_msat or 0) + w.exchange_fee_msat for w in (done0, done1)
    )
    # Credited once, each withdrawal paid once.
    assert balance.available_msat == FUNDS - spent + DEPOSIT_MSAT
    for payment_hash in (hash0, hash1):
        payments = await asyncio.to_thread(exchange_payments, regtest, payment_hash)
        assert [p["status"] for p in payments] == ["SUCCEEDED"]
    assert core.uow.read_sync(check_ledger).ok
