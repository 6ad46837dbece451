"""Every bad withdrawal gets its own 4xx code and changes nothing; limits and review work."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator

import pytest

from lngate.bootstrap import Core
from lngate.client import AsyncClient
from lngate.config import Config
from lngate.lightning.node import Network
from lngate.lightning.simnet import SimnetNetwork
from lngate.services.reconciliation import check_ledger
from tests.conftest import LiveServer, funded_user, started_core
from tests.helpers import (
    available_msat,
    foreign_invoice,
    wait_status,
    wallet_invoice,
    withdrawal_review,
)

FUNDS = 10_000_000


async def assert_refused(
    server: LiveServer, creds: object, body: dict[str, object], code: str
) -> None:
    async with AsyncClient(server.url, creds.api_key, creds.api_secret) as c:  # type: ignore[attr-defined]
        before = await available_msat(c)
        r = await c.post("/v1/withdrawals", body)
        assert 400 <= r.status_code < 500, r.text
        assert r.json()["error"]["code"] == code, r.text
        assert await available_msat(c) == before
        assert (await c.get("/v1/account")).json()["pending_msat"] == 0
        assert (await c.get("/v1/withdrawals")).json()["withdrawals"] == []


@pytest.fixture
def carol_invoice(live_server: LiveServer) -> Iterator[SimnetNetwork]:
    with SimnetNetwork(live_server.core.config.simnet_dir) as net:
        yield net


async def test_each_bad_invoice_has_its_own_code(
    live_server: LiveServer, carol_invoice: SimnetNetwork
) -> None:
    alice = funded_user(live_server.core, "alice", FUNDS)
    net = carol_invoice
    cases: list[tuple[dict[str, object], str]] = [
        ({"bolt11": "lnbcrt1notaninvoice"}, "INVALID_INVOICE"),
        ({"bolt11": ""}, "INVALID_INVOICE"),
        ({"bolt11": foreign_invoice(Network.MAINNET)}, "WRONG_NETWORK"),
        ({"bolt11": foreign_invoice(Network.TESTNET)}, "WRONG_NETWORK"),
        (
            {
                "bolt11": net.create_invoice(
                    "carol", 10_000, expiry_s=60, created_at=int(time.time()) - 3600
                ).bolt11
            },
            "INVOICE_EXPIRED",
        ),
        ({"bolt11": net.create_invoice("carol", 10_000, expiry_s=30).bolt11}, "INVOICE_EXPIRED"),
        ({"bolt11": net.create_invoice("carol", None).bolt11}, "AMOUNT_REQUIRED"),
        ({"bolt11": net.create_invoice("carol", None).bolt11, "amount_msat": 0}, "INVALID_AMOUNT"),
        ({"bolt11": net.create_invoice("carol", None).bolt11, "amount_msat": -3}, "INVALID_AMOUNT"),
        (
            {"bolt11": net.create_invoice("carol", 10_000).bolt11, "amount_msat": 10_000},
            "AMOUNT_NOT_ALLOWED",
        ),
        ({"bolt11": net.create_invoice("carol", 999).bolt11}, "AMOUNT_OUT_OF_RANGE"),
        ({"bolt11": net.create_invoice("carol", 2_000_000_000).bolt11}, "AMOUNT_OUT_OF_RANGE"),
        ({"bolt11": net.create_invoice("exchange", 10_000).bolt11}, "OWN_NODE_INVOICE"),
        ({}, "INVALID_REQUEST"),
        (
            {
                "bolt11": net.create_invoice("carol", 10_000).bolt11,
                "lightning_address": "bob@example.com",
            },
            "INVALID_REQUEST",
        ),
        ({"bolt11": 12345}, "INVALID_REQUEST"),
        ({"lightning_address": "not-an-address", "amount_msat": 10_000}, "INVALID_REQUEST"),
        ({"lightning_address": "bob@example.com"}, "AMOUNT_REQUIRED"),
    ]
    for body, code in cases:
        await assert_refused(live_server, alice, body, code)


async def test_a_payment_hash_is_withdrawn_once(live_server: LiveServer) -> None:
    alice = funded_user(live_server.core, "alice", FUNDS)
    bolt11 = wallet_invoice(live_server.core.config.simnet_dir, "carol", 10_000)
    async with AsyncClient(live_server.url, alice.api_key, alice.api_secret) as c:
        first = await c.post("/v1/withdrawals", {"bolt11": bolt11})
        assert first.status_code == 201
        await wait_status(c, first.json()["id"], {"succeeded"})
        again = await c.post("/v1/withdrawals", {"bolt11": bolt11})
        assert again.status_code == 409
        assert again.json()["error"]["code"] == "DUPLICATE_PAYMENT_HASH"


@pytest.fixture
def strict_core(config: Config) -> Iterator[Core]:
    policy = dataclasses.replace(
        config.withdrawals,
        user_daily_max_msat=300_000,
        review_above_msat=150_000,
    )
    with started_core(dataclasses.replace(config, withdrawals=policy)) as c:
        yield c


async def test_blocked_nodes_are_refused(config: Config) -> None:
    with SimnetNetwork(config.simnet_dir) as net:
        dave = net.pubkey("dave")
        bolt11 = net.create_invoice("dave", 10_000).bolt11
    policy = dataclasses.replace(config.withdrawals, blocked_payees=frozenset({dave}))
    with (
        started_core(dataclasses.replace(config, withdrawals=policy)) as core,
        LiveServer(core) as server,
    ):
        alice = funded_user(core, "alice", FUNDS)
        await assert_refused(server, alice, {"bolt11": bolt11}, "BLOCKED_DESTINATION")


async def test_limits_and_review(strict_core: Core) -> None:
    with LiveServer(strict_core) as server:
        alice = funded_user(server.core, "alice", FUNDS)
        simnet = server.core.config.simnet_dir
        async with AsyncClient(server.url, alice.api_key, alice.api_secret) as c:
            small = await c.post(
                "/v1/withdrawals", {"bolt11": wallet_invoice(simnet, "carol", 100_000)}
            )
            assert small.json()["status"] == "approved"
            big = await c.post(
                "/v1/withdrawals", {"bolt11": wallet_invoice(simnet, "carol", 160_000)}
            )
            assert big.status_code == 201 and big.json()["status"] == "review"
            over = await c.post(
                "/v1/withdrawals", {"bolt11": wallet_invoice(simnet, "carol", 50_000)}
            )
            assert over.status_code == 422 or over.status_code == 400
            assert over.json()["error"]["code"] == "LIMIT_EXCEEDED"
            await wait_status(c, small.json()["id"], {"succeeded"})
            # an operator approves: the worker pays it
            review = withdrawal_review(server.core)
            approved = await review.approve(big.json()["id"], "test", "looks fine")
            assert approved is not None and approved.status == "approved"
            await wait_status(c, big.json()["id"], {"succeeded"})
            third = await c.post(
                "/v1/withdrawals", {"bolt11": wallet_invoice(simnet, "dave", 30_000)}
            )
            assert third.json()["status"] == "approved"
        bob = funded_user(server.core, "bob", FUNDS)
        async with AsyncClient(server.url, bob.api_key, bob.api_secret) as c:
            big = await c.post(
                "/v1/withdrawals", {"bolt11": wallet_invoice(simnet, "carol", 200_000)}
            )
            assert big.json()["status"] == "review"
            assert (await c.get("/v1/account")).json()["pending_msat"] > 0
            review = withdrawal_review(server.core)
            rejected = await review.reject(big.json()["id"], "test", "no")
            assert rejected is not None and rejected.status == "rejected"
            assert (await c.get("/v1/account")).json()["pending_msat"] == 0
            assert await available_msat(c) == FUNDS
            # a second decision on the same withdrawal changes nothing
            assert await review.approve(big.json()["id"], "test", "x") is None
        assert server.core.uow.read_sync(check_ledger).ok


async def test_a_forged_invoice_reusing_a_deposit_hash_is_not_settled_internally(
    live_server: LiveServer,
) -> None:
    """LNbits PR #1681: internal settlement matched on the hash alone."""
    alice = funded_user(live_server.core, "alice", FUNDS)
    bob = funded_user(live_server.core, "bob")
    async with AsyncClient(live_server.url, bob.api_key, bob.api_secret) as b:
        deposit = (await b.post("/v1/deposits", {"amount_msat": 500_000})).json()
    forged = foreign_invoice(
        Network.REGTEST, 10_000, payment_hash=bytes.fromhex(deposit["payment_hash"])
    )
    async with AsyncClient(live_server.url, alice.api_key, alice.api_secret) as c:
        r = await c.post("/v1/withdrawals", {"bolt11": forged})
        assert r.status_code == 201 and r.json()["internal"] is False
        done = await wait_status(c, r.json()["id"], {"succeeded", "failed"})
        assert done["status"] == "failed"  # nobody routes to the forger's random key
        assert await available_msat(c) == FUNDS
    async with AsyncClient(live_server.url, bob.api_key, bob.api_secret) as b:
        assert await available_msat(b) == 0
        assert (await b.get(f"/v1/deposits/{deposit['id']}")).json()["status"] == "open"
    assert live_server.core.uow.read_sync(check_ledger).ok
