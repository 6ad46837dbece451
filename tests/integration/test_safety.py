"""Safety controls: the circuit breaker, freezing, admin isolation, metrics, liquidity waits."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Iterator

import httpx
import pytest

from lngate.bootstrap import Core, accounts_for, administration_for
from lngate.client import AsyncClient
from lngate.config import Config
from lngate.lightning.simnet import SimnetNetwork
from lngate.store.users import Role
from tests.conftest import LiveServer, funded_user, started_core
from tests.helpers import available_msat, eventually, pay_from_wallet, wait_status, wallet_invoice

FUNDS = 1_000_000_000


@pytest.fixture
def watchful_core(config: Config) -> Iterator[Core]:
    with started_core(dataclasses.replace(config, reconcile_interval_s=0.2)) as c:
        yield c


def admin_client(server: LiveServer, core: Core) -> AsyncClient:
    creds = accounts_for(core).create_user_sync("operator", Role.ADMIN)
    return AsyncClient(server.admin_url, creds.api_key, creds.api_secret)


async def test_a_shortfall_halts_withdrawals_and_an_operator_resumes_them(
    watchful_core: Core,
) -> None:
    with LiveServer(watchful_core, admin=True, reconciler=True) as server:
        alice = funded_user(server.core, "alice", FUNDS)
        simnet = server.core.config.simnet_dir
        async with (
            admin_client(server, server.core) as admin,
            AsyncClient(server.url, alice.api_key, alice.api_secret) as c,
        ):

            async def checked() -> bool:
                return bool((await admin.get("/admin/v1/reconciliation")).json())

            await eventually(checked, what="a first reconciliation")
            assert (await admin.get("/admin/v1/status")).json()["withdrawals_halted"] is None
            # The node loses funds behind lngate's back: less than it owes its users remains.
            with SimnetNetwork(simnet) as net:
                b = net.balances("exchange")
                net.faults.lose_funds(
                    "exchange",
                    onchain_sat=b.onchain_confirmed_sat,
                    channel_msat=b.channel_local_msat - FUNDS // 2,
                )

            async def halted() -> bool:
                return (await admin.get("/admin/v1/status")).json()[
                    "withdrawals_halted"
                ] is not None

            # within an interval (0.2 s) on an idle machine; generous for a loaded CI
            await eventually(halted, timeout_s=5, what="the breaker to trip")
            r = await c.post("/v1/withdrawals", {"bolt11": wallet_invoice(simnet, "carol", 10_000)})
            assert r.status_code == 423 and r.json()["error"]["code"] == "WITHDRAWALS_HALTED"
            # deposits go on
            deposit = (await c.post("/v1/deposits", {"amount_msat": 7_000})).json()
            pay_from_wallet(simnet, "carol", deposit["bolt11"])

            async def credited() -> bool:
                return await available_msat(c) == FUNDS + 7_000

            await eventually(credited, what="a deposit while halted")
            # an operator looks into it, accepts the loss, and resumes
            last = (await admin.get("/admin/v1/reconciliation?limit=1")).json()[0]
            shortfall = last["shortfall_msat"]
            assert shortfall > 0 and last["ok"] is False
            resumed = await admin.post(
                "/admin/v1/resume",
                {
                    "reason": "node incident investigated; loss booked",
                    "acknowledge_shortfall_msat": shortfall,
                },
            )
            assert resumed.status_code == 200, resumed.text
            await asyncio.sleep(0.5)  # several more checks: the acknowledged loss does not re-trip
            assert (await admin.get("/admin/v1/status")).json()["withdrawals_halted"] is None
            w = await c.post("/v1/withdrawals", {"bolt11": wallet_invoice(simnet, "carol", 10_000)})
            assert w.status_code == 201
            assert (await wait_status(c, w.json()["id"], {"succeeded", "failed"}))["status"] == (
                "succeeded"
            )
            audit = (await admin.get("/admin/v1/audit")).json()["records"]
            actions = [r["action"] for r in audit]
            assert "withdrawals.halt" in actions and "withdrawals.resume" in actions
            resume = next(r for r in audit if r["action"] == "withdrawals.resume")
            assert resume["reason"].startswith("node incident")


async def test_approved_withdrawals_wait_while_halted(core: Core) -> None:
    from lngate.lightning.simnet import SimnetNode
    from tests.helpers import payment_worker

    with LiveServer(core, watcher=False) as server:  # no worker yet: it stays approved
        alice = funded_user(core, "alice", FUNDS)
        simnet = core.config.simnet_dir
        async with AsyncClient(server.url, alice.api_key, alice.api_secret) as c:
            r = await c.post("/v1/withdrawals", {"bolt11": wallet_invoice(simnet, "carol", 10_000)})
            assert r.json()["status"] == "approved"
            administration_for(core).halt_sync(reason="drill", actor="test")
            worker = payment_worker(core, SimnetNode(SimnetNetwork(simnet)), poll_s=0.05)
            stop = asyncio.Event()
            task = asyncio.create_task(worker.run(stop))

            async def waiting() -> bool:
                w = (await c.get(f"/v1/withdrawals/{r.json()['id']}")).json()
                return w["status"] == "approved" and "halted" in w["note"]

            await eventually(waiting, what="the approved withdrawal to wait while halted")
            administration_for(core).resume_sync(reason="drill over", actor="test")
            done = await wait_status(c, r.json()["id"], {"succeeded", "failed"})
            stop.set()
            await task
            assert done["status"] == "succeeded"


async def test_a_frozen_user_cannot_withdraw_or_transfer(
    live_server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    alice = funded_user(live_server.core, "alice", FUNDS)
    funded_user(live_server.core, "bob")
    simnet = live_server.core.config.simnet_dir
    admin = administration_for(live_server.core)
    admin.set_frozen_sync("alice", True, reason="kyc review", actor="test")
    caplog.set_level(logging.WARNING)
    async with AsyncClient(live_server.url, alice.api_key, alice.api_secret) as c:
        w = await c.post("/v1/withdrawals", {"bolt11": wallet_invoice(simnet, "carol", 10_000)})
        t = await c.post("/v1/transfers", {"to": "bob", "amount_msat": 1_000})
        for r in (w, t):
            assert r.status_code == 403 and r.json()["error"]["code"] == "ACCOUNT_FROZEN"
        assert await available_msat(c) == FUNDS
        assert (await c.get("/v1/account")).json()["status"] == "frozen"
        frozen = [r for r in caplog.records if "ACCOUNT_FROZEN" in r.getMessage()]
        assert len(frozen) == 2 and all(r.levelno == logging.WARNING for r in frozen)
        assert {getattr(r, "user_id", None) for r in frozen} == {alice.user_id}
        admin.set_frozen_sync("alice", False, reason="cleared", actor="t")
        assert (
            await c.post("/v1/transfers", {"to": "bob", "amount_msat": 1_000})
        ).status_code == 201


@pytest.fixture
def admin_server(core: Core) -> Iterator[LiveServer]:
    with LiveServer(core, admin=True) as server:
        yield server


async def test_user_keys_get_nothing_from_the_admin_listener(admin_server: LiveServer) -> None:
    alice = funded_user(admin_server.core, "alice", FUNDS)
    async with AsyncClient(admin_server.admin_url, alice.api_key, alice.api_secret) as as_user:
        for path in ("/admin/v1/withdrawals", "/admin/v1/audit", "/admin/v1/users/alice"):
            r = await as_user.get(path)
            assert r.status_code == 401, (path, r.text)
        r = await as_user.post("/admin/v1/halt", {"reason": "mine now"})
        assert r.status_code == 401
    async with admin_client(admin_server, admin_server.core) as admin:
        assert (await admin.get("/admin/v1/users/alice")).json()["available_msat"] == FUNDS
        assert (await admin.get("/admin/v1/status")).json()["withdrawals_halted"] is None


async def test_admin_routes_do_not_exist_on_the_public_listener(admin_server: LiveServer) -> None:
    admin_creds = accounts_for(admin_server.core).create_user_sync("root", Role.ADMIN)
    async with AsyncClient(admin_server.url, admin_creds.api_key, admin_creds.api_secret) as c:
        for path in ("/admin/v1/withdrawals", "/admin/v1/audit", "/metrics"):
            assert (await c.get(path)).status_code == 404
        # and an admin key is no key at all on the public API
        assert (await c.get("/v1/account")).status_code == 401
    async with httpx.AsyncClient() as http:
        spec = (await http.get(f"{admin_server.url}/openapi.json")).json()
        assert not [p for p in spec["paths"] if p.startswith("/admin")]


async def test_treasury_and_channels_on_the_admin_api(admin_server: LiveServer) -> None:
    from lngate.lightning.simnet import SimnetNode
    from tests.treasury_support import cold_storage

    with SimnetNetwork(admin_server.core.config.simnet_dir) as net:
        cold = [net.new_address("dave") for _ in range(3)]  # addresses the node holds no key to
        dave = net.pubkey("dave")
        net.fund_onchain("exchange", 2_000_000)
        await cold_storage(admin_server.core, SimnetNode(net)).import_addresses("\n".join(cold))
    async with admin_client(admin_server, admin_server.core) as admin:
        status = (await admin.get("/admin/v1/treasury")).json()
        assert status["cold"]["addresses_free"] == 3
        opened = await admin.post("/admin/v1/channels", {"peer": dave, "amount_sat": 500_000})
        assert opened.status_code == 200, opened.text
        assert opened.json()["close_address"] == cold[0]
        listed = (await admin.get("/admin/v1/channels")).json()
        assert any(ch.get("close_address") == cold[0] for ch in listed)
        actions = [r["action"] for r in (await admin.get("/admin/v1/audit")).json()["records"]]
        assert "channel.open" in actions


async def test_metrics_report_the_books(admin_server: LiveServer) -> None:
    funded_user(admin_server.core, "alice", 123_000)
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"{admin_server.url}/health")).status_code == 200
        text = (await http.get(f"{admin_server.admin_url}/metrics")).text
    assert "lngate_liabilities_msat 123000.0" in text
    assert "lngate_withdrawals_halted 0.0" in text
    assert 'lngate_http_request_seconds_bucket{le="0.001",listener="public",method="GET"' in text


async def test_a_withdrawal_beyond_outbound_liquidity_waits(live_server: LiveServer) -> None:
    alice = funded_user(live_server.core, "alice", FUNDS)
    simnet = live_server.core.config.simnet_dir
    with SimnetNetwork(simnet) as net:
        local = net.balances("exchange").channel_local_msat
        net.faults.lose_funds("exchange", channel_msat=local - 50_000)  # 50 sat left to send
    async with AsyncClient(live_server.url, alice.api_key, alice.api_secret) as c:
        r = await c.post("/v1/withdrawals", {"bolt11": wallet_invoice(simnet, "carol", 100_000)})
        assert r.status_code == 201

        async def waiting() -> bool:
            w = (await c.get(f"/v1/withdrawals/{r.json()['id']}")).json()
            return w["status"] == "approved" and "liquidity" in w["note"]

        await eventually(waiting, what="the withdrawal to wait for liquidity")
