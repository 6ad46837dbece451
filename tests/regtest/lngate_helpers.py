"""Helpers for running lngate's services and workers on the regtest network's exchange lnd.

Each test gets a fresh lngate database (the ``config`` fixture of tests/conftest.py) over the one
shared regtest network: ``lnd_config`` points that config at the exchange's lnd. bob (the
outside) is driven over his own REST API. Every wait polls with a deadline.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import uvicorn

from lngate.api.app import Worker, create_app
from lngate.bootstrap import Core, open_signer_probe, use_cases
from lngate.config import Config, load_config
from lngate.domain.ledger import AccountKind, Balance
from lngate.lightning.lnd import LndNode
from lngate.regtest import LndRestError, Network, RegtestError
from lngate.services.withdrawals import WithdrawalRequests
from lngate.store import users
from lngate.store import withdrawals as withdrawal_store
from lngate.store.ledger import get_account
from lngate.store.withdrawals import Withdrawal
from lngate.workers.payment_sender import PaymentWorker
from tests.helpers import invoice_watcher

T = TypeVar("T")

WAIT_S = 30.0
POLL_S = 0.05
BOB_PAY_TIMEOUT_S = 30


def lnd_config(base: Config, network: Network) -> Config:
    """``base`` (a fresh database) with the node backend set to the exchange's lnd, credentials
    as the regtest network wrote them into its lngate.toml."""
    from_toml = load_config(config_file=Path(network.lngate_toml), env={})
    assert from_toml.node_backend == "lnd" and from_toml.lnd is not None
    return dataclasses.replace(base, node_backend="lnd", lnd=from_toml.lnd)


def invoice_node(config: Config) -> LndNode:
    """What the API process holds: the invoice-only macaroon."""
    assert config.lnd is not None
    return LndNode.from_files(
        config.lnd.rest_url,
        config.lnd.tls_cert,
        config.lnd.invoice_macaroon,
        signer=open_signer_probe(config),
    )


def spending_node(config: Config) -> LndNode:
    """What only the payment worker holds: the spending macaroon."""
    assert config.lnd is not None and config.lnd.spending_macaroon is not None
    return LndNode.from_files(
        config.lnd.rest_url,
        config.lnd.tls_cert,
        config.lnd.spending_macaroon,
        signer=open_signer_probe(config),
    )


# --- waiting ---------------------------------------------------------------------------------


async def eventually(
    what: str,
    probe: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    timeout_s: float = WAIT_S,
) -> T:
    """Await ``probe()`` until ``done`` holds for its answer; fail at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        answer = await probe()
        if done(answer):
            return answer
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}: {answer!r}")
        await asyncio.sleep(POLL_S)


def wait_for(what: str, check: Callable[[], T | None], timeout_s: float = WAIT_S) -> T:
    """Blocking: poll ``check`` until it returns something other than None, or fail."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(POLL_S)


@contextlib.asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[asyncio.Task[None]]:
    """Run a worker's ``run(stop)`` as a task for the block; stop it (and surface its error)
    at the end."""
    stop = asyncio.Event()
    task = asyncio.create_task(worker(stop))
    try:
        yield task
    finally:
        stop.set()
        async with asyncio.timeout(WAIT_S):
            await task


# --- the ledger ------------------------------------------------------------------------------


def user_balance(core: Core, user_id: str) -> Balance:
    def read(tx: Any) -> Balance:
        user = users.user_by_id(tx, user_id)
        assert user is not None
        account = get_account(tx, user.account_id)
        assert account is not None
        return account.balance

    return core.uow.read_sync(read)


def node_account_balance(core: Core) -> Balance:
    account_id = core.system_accounts[AccountKind.NODE.value]
    account = core.uow.read_sync(lambda tx: get_account(tx, account_id))
    assert account is not None
    return account.balance


async def available(core: Core, user_id: str) -> int:
    return (await asyncio.to_thread(user_balance, core, user_id)).available_msat


# --- withdrawals through the service layer ---------------------------------------------------


async def request(requests: WithdrawalRequests, user_id: str, bolt11: str) -> dict[str, Any]:
    """A withdrawal to ``bolt11`` as the API would request it (a fresh Idempotency-Key): its
    JSON, as the API answers it."""
    created = await requests.request(
        user_id,
        bolt11=bolt11,
        lightning_address=None,
        amount_msat=None,
        idempotency=(str(uuid.uuid4()), uuid.uuid4().hex),
    )
    return created.as_json()


def withdrawal(core: Core, withdrawal_id: str) -> Withdrawal:
    w = core.uow.read_sync(lambda tx: withdrawal_store.by_id(tx, withdrawal_id))
    assert w is not None
    return w


# --- bob and the exchange's lnd, over their REST APIs ----------------------------------------


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class PayRefused(Exception):
    """bob's lnd refused to start the payment (an HTTP error or an error in the stream)."""


def pay(
    network: Network, payer: str, bolt11: str, amount_msat: int | None = None
) -> dict[str, Any]:
    """``POST /v2/router/send`` from ``payer``: the final Payment (SUCCEEDED or FAILED); raises
    PayRefused when lnd refuses it outright (already paid, expired, ...)."""
    try:
        return network.pay_invoice(
            payer, bolt11, amount_msat=amount_msat, timeout_s=BOB_PAY_TIMEOUT_S
        )
    except (LndRestError, RegtestError) as exc:
        raise PayRefused(f"{payer}: {exc}") from exc


def invoice_state(network: Network, node_name: str, payment_hash_hex: str) -> dict[str, Any]:
    invoice: dict[str, Any] = network.rest(node_name, "GET", f"/v1/invoice/{payment_hash_hex}")
    return invoice


def bob_invoice(network: Network, amount_msat: int, memo: str = "") -> tuple[str, str]:
    """A plain invoice of bob's: (bolt11, payment hash hex)."""
    added = network.rest(
        "bob", "POST", "/v1/invoices", {"value_msat": str(amount_msat), "memo": memo}
    )
    return str(added["payment_request"]), base64.b64decode(added["r_hash"]).hex()


def bob_hold_invoice(network: Network, amount_msat: int) -> tuple[str, str, bytes]:
    """A hold invoice of bob's: (bolt11, payment hash hex, preimage). bob holds the HTLC until
    the test settles or cancels it."""
    import hashlib

    preimage = os.urandom(32)
    payment_hash = hashlib.sha256(preimage).digest()
    body = {"hash": b64(payment_hash), "value_msat": str(amount_msat), "memo": "held"}
    added = network.rest("bob", "POST", "/v2/invoices/hodl", body)
    return str(added["payment_request"]), payment_hash.hex(), preimage


def settle_hold(network: Network, preimage: bytes) -> None:
    network.rest("bob", "POST", "/v2/invoices/settle", {"preimage": b64(preimage)})


def cancel_hold(network: Network, payment_hash_hex: str) -> None:
    body = {"payment_hash": b64(bytes.fromhex(payment_hash_hex))}
    network.rest("bob", "POST", "/v2/invoices/cancel", body)


def exchange_payments(network: Network, payment_hash_hex: str) -> list[dict[str, Any]]:
    """Every payment the exchange's lnd recorded for the hash."""
    listed = network.rest(
        "exchange",
        "GET",
        "/v1/payments",
        params={"include_incomplete": "true", "max_payments": "10000", "reversed": "true"},
    )
    return [p for p in listed.get("payments", []) if p["payment_hash"] == payment_hash_hex]


def exchange_channel_balance(network: Network) -> dict[str, int]:
    """The exchange's channel balances in msat (its admin REST ``/v1/balance/channels``)."""
    raw = network.rest("exchange", "GET", "/v1/balance/channels")

    def msat(key: str) -> int:
        return int((raw.get(key) or {}).get("msat", "0"))

    return {
        key: msat(key)
        for key in (
            "local_balance",
            "remote_balance",
            "unsettled_local_balance",
            "unsettled_remote_balance",
            "pending_open_local_balance",
        )
    }


def settled_channel_balance(network: Network) -> int:
    """The exchange's local channel balance once no HTLC is in flight on its channels."""

    def quiet() -> int | None:
        b = exchange_channel_balance(network)
        if b["unsettled_local_balance"] or b["unsettled_remote_balance"]:
            return None
        return b["local_balance"]

    return wait_for("the exchange's channels to carry no HTLC", quiet)


# --- the API on a real socket, on the exchange's lnd -----------------------------------------


class LndServer:
    """The real app on a loopback socket, served by uvicorn in a thread (the pattern of
    ``tests.conftest.LiveServer``), over the exchange's lnd, with the invoice watcher and the
    payment worker. As in production, the API and the watcher hold the invoice-only macaroon
    and only the payment worker the spending one. Every node is closed on the server's loop."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self.port = core.config.port
        self.url = f"http://127.0.0.1:{self.port}"
        self.node = invoice_node(core.config)
        self.watcher = invoice_watcher(core, invoice_node(core.config), expiry_grace_s=0)
        # As in production (lngate.server): a watch-only node's signer is checked before sending.
        payment_node = spending_node(core.config)
        self.payments = PaymentWorker(
            use_cases(core, payment_node).payouts,  # with the signer probe, as in production
            payment_node,
            core.withdrawal_work,
            latency=core.metrics.withdrawal_latency,
            poll_s=0.05,
            track_every_s=0.1,
        )
        workers = [
            _closing(self.watcher.run, self.watcher._node),
            _closing(self.payments.run, self.payments._node),
            _closing(_until_stopped, self.node),
        ]
        cfg = uvicorn.Config(
            create_app(core, use_cases(core, self.node), workers=workers),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            access_log=False,
            loop="asyncio",
        )
        self.server = uvicorn.Server(cfg)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LndServer:
        self.thread.start()
        wait_for(
            "the API server to start",
            lambda: True if self.server.started else None,
            timeout_s=10,
        )
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=WAIT_S)
        assert not self.thread.is_alive(), "the API server did not stop"


async def _until_stopped(stop: asyncio.Event) -> None:
    await stop.wait()


def _closing(worker: Worker, node: Any) -> Worker:
    async def run(stop: asyncio.Event) -> None:
        try:
            await worker(stop)
        finally:
            await node.close()

    return run
