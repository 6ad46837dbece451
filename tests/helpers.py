"""Small helpers the integration and e2e tests share: paying from outside, waiting, SSE."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import orjson

from lngate.client import AsyncClient, signed_headers
from lngate.lightning.bolt11 import encode_bolt11
from lngate.lightning.node import Network, Payment
from lngate.lightning.simnet import SimnetNetwork

if TYPE_CHECKING:
    from lngate.services.withdrawal_review import WithdrawalReview
    from lngate.workers.payment_sender import PaymentWorker

FEE_LIMIT_MSAT = 50_000


def pay_from_wallet(
    simnet_dir: Path, wallet: str, bolt11: str, amount_msat: int | None = None
) -> Payment:
    """Pay as an outside wallet would: a separate simnet handle, like `lngate simnet pay`."""
    with SimnetNetwork(simnet_dir) as net:
        return net.pay(wallet, bolt11, amount_msat=amount_msat, fee_limit_msat=FEE_LIMIT_MSAT)


async def eventually(
    check: Callable[[], Awaitable[bool]], *, timeout_s: float = 30, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


async def available_msat(c: AsyncClient) -> int:
    r = await c.get("/v1/account")
    assert r.status_code == 200, r.text
    return int(r.json()["available_msat"])


async def read_events(
    base_url: str,
    creds: Any,
    *,
    until: Callable[[list[dict[str, Any]]], bool],
    after: int | None = None,
    timeout_s: float = 30,
    started: asyncio.Event | None = None,
) -> list[dict[str, Any]]:
    """Read the signed SSE stream until ``until(events)`` holds."""
    path = "/v1/events" if after is None else f"/v1/events?after={after}"
    headers = signed_headers(creds.api_key, creds.api_secret, "GET", path)
    got: list[dict[str, Any]] = []
    async with httpx.AsyncClient(base_url=base_url, timeout=timeout_s) as http:
        async with asyncio.timeout(timeout_s):
            async with http.stream("GET", path, headers=headers) as r:
                assert r.status_code == 200, await r.aread()
                if started is not None:
                    started.set()
                event: dict[str, Any] = {}
                async for line in r.aiter_lines():
                    if line.startswith("id: "):
                        event["id"] = int(line[4:])
                    elif line.startswith("event: "):
                        event["event"] = line[7:]
                    elif line.startswith("data: "):
                        event["data"] = orjson.loads(line[6:])
                    elif line == "" and event:
                        got.append(event)
                        event = {}
                        if until(got):
                            return got
    return got


async def request_withdrawal(core: Any, node: Any, user: Any, bolt11: str) -> dict[str, Any]:
    """A withdrawal through the service layer, as the API would make it (a fresh key): its
    JSON, as the API answers it."""
    from lngate.bootstrap import use_cases

    created = await use_cases(core, node).withdrawal_requests.request(
        user.user_id,
        bolt11=bolt11,
        lightning_address=None,
        amount_msat=None,
        idempotency=(str(uuid.uuid4()), "request"),
    )
    return created.as_json()


def withdrawal_review(core: Any) -> WithdrawalReview:
    """The operators' review over ``core`` (it needs no node)."""
    from lngate.services.withdrawal_review import WithdrawalReview

    return WithdrawalReview(core.uow, core.withdrawal_work)


def payment_worker(core: Any, node: Any, **options: Any) -> PaymentWorker:
    """The payment worker over ``node``, wired as ``lngate serve`` wires it."""
    from lngate.bootstrap import use_cases
    from lngate.workers.payment_sender import PaymentWorker

    payouts = use_cases(core, node).payouts
    latency = core.metrics.withdrawal_latency
    return PaymentWorker(payouts, node, core.withdrawal_work, latency=latency, **options)


def wallet_invoice(simnet_dir: Path, wallet: str, amount_msat: int | None, **kw: Any) -> str:
    with SimnetNetwork(simnet_dir) as net:
        return net.create_invoice(wallet, amount_msat, **kw).bolt11


async def wait_status(
    c: AsyncClient, withdrawal_id: str, statuses: set[str], timeout_s: float = 30
) -> dict[str, Any]:
    found: dict[str, Any] = {}

    async def done() -> bool:
        nonlocal found
        found = (await c.get(f"/v1/withdrawals/{withdrawal_id}")).json()
        return found.get("status") in statuses

    await eventually(done, timeout_s=timeout_s, what=f"withdrawal to reach {statuses}")
    return found


def foreign_invoice(
    network: Network,
    amount_msat: int | None = 10_000,
    *,
    created_at: int | None = None,
    expiry_s: int = 3600,
    payment_hash: bytes | None = None,
    description: str = "test",
) -> str:
    """A valid BOLT11 invoice signed by a random key: a payee no route reaches (or a forger)."""
    return encode_bolt11(
        private_key=os.urandom(32),
        network=network,
        payment_hash=payment_hash or hashlib.sha256(os.urandom(32)).digest(),
        payment_secret=os.urandom(32),
        amount_msat=amount_msat,
        created_at=created_at or int(time.time()),
        expiry_s=expiry_s,
        description=description,
    )


async def create_deposit(
    core: Any, node: Any, user_id: str, amount_msat: int | None, **kw: Any
) -> dict[str, Any]:
    """A deposit through the service layer (``Deposits.create``): its JSON, as the API
    answers it."""
    from lngate.bootstrap import use_cases

    created = await use_cases(core, node).deposits.create(user_id, amount_msat, **kw)
    return created.as_json()


def invoice_watcher(core: Any, node: Any, **kw: Any) -> Any:
    """An invoice watcher following ``node``, over the deposits of ``core`` and ``node``."""
    from lngate.bootstrap import use_cases
    from lngate.workers.invoice_watcher import InvoiceWatcher

    return InvoiceWatcher(use_cases(core, node).deposits, node, **kw)
