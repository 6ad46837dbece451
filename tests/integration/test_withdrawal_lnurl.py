"""Withdrawals to Lightning Addresses: what a callback returns is checked before money moves,
and callbacks may not point into our own network."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI

from lngate.bootstrap import Core
from lngate.client import AsyncClient
from lngate.config import Config
from lngate.lightning.simnet import SimnetNetwork
from lngate.services.lnurl_client import DestinationNotAllowed, check_destination
from tests.conftest import LiveServer, free_port, funded_user, started_core
from tests.helpers import available_msat, wait_status

FUNDS = 10_000_000


class FakeLnurlService:
    """An outside LNURL-pay service whose answers a test can spoil."""

    def __init__(self, simnet_dir: Path) -> None:
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.simnet_dir = simnet_dir
        self.metadata = json.dumps([["text/identifier", f"carol@{self.host}"]])
        self.amount_delta_msat = 0
        self.spoil_hash = False
        self.callback = f"http://{self.host}/cb"
        app = FastAPI()

        @app.get("/.well-known/lnurlp/carol")
        def pay_request() -> dict[str, Any]:
            return {
                "tag": "payRequest",
                "callback": self.callback,
                "minSendable": 1_000,
                "maxSendable": 10**9,
                "metadata": self.metadata,
            }

        @app.get("/cb")
        def cb(amount: int) -> dict[str, Any]:
            meta = self.metadata + (" " if self.spoil_hash else "")
            with SimnetNetwork(self.simnet_dir) as net:
                inv = net.create_invoice(
                    "carol",
                    amount + self.amount_delta_msat,
                    description_hash=hashlib.sha256(meta.encode()).digest(),
                )
            return {"pr": inv.bolt11, "routes": []}

        self._server = uvicorn.Server(
            uvicorn.Config(
                app, host="127.0.0.1", port=self.port, log_level="warning", loop="asyncio"
            )
        )
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def __enter__(self) -> FakeLnurlService:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


@pytest.fixture
def permissive_core(config: Config) -> Iterator[Core]:
    """Private hosts allowed (development setting), so a loopback LNURL service is reachable."""
    with started_core(dataclasses.replace(config, lnurl_allow_private_hosts=True)) as c:
        yield c


async def test_a_lightning_address_withdrawal_pays_the_checked_invoice(
    permissive_core: Core,
) -> None:
    with (
        LiveServer(permissive_core) as server,
        FakeLnurlService(permissive_core.config.simnet_dir) as lnurl_service,
    ):
        alice = funded_user(server.core, "alice", FUNDS)
        async with AsyncClient(server.url, alice.api_key, alice.api_secret) as c:
            r = await c.post(
                "/v1/withdrawals",
                {"lightning_address": f"carol@{lnurl_service.host}", "amount_msat": 25_000},
            )
            assert r.status_code == 201, r.text
            assert r.json()["destination"] == f"carol@{lnurl_service.host}"
            done = await wait_status(c, r.json()["id"], {"succeeded", "failed"})
            assert done["status"] == "succeeded"


@pytest.mark.parametrize("spoil", ["amount", "description_hash"])
async def test_a_callback_invoice_that_does_not_match_is_refused(
    permissive_core: Core, spoil: str
) -> None:
    with (
        LiveServer(permissive_core) as server,
        FakeLnurlService(permissive_core.config.simnet_dir) as lnurl_service,
    ):
        if spoil == "amount":
            lnurl_service.amount_delta_msat = 1_000
        else:
            lnurl_service.spoil_hash = True
        alice = funded_user(server.core, "alice", FUNDS)
        async with AsyncClient(server.url, alice.api_key, alice.api_secret) as c:
            r = await c.post(
                "/v1/withdrawals",
                {"lightning_address": f"carol@{lnurl_service.host}", "amount_msat": 25_000},
            )
            assert r.status_code == 400 or r.status_code == 422, r.text
            assert r.json()["error"]["code"] == "LNURL_FAILED"
            assert await available_msat(c) == FUNDS
            assert (await c.get("/v1/withdrawals")).json()["withdrawals"] == []


async def test_a_loopback_lnurl_service_is_refused_by_default(live_server: LiveServer) -> None:
    with FakeLnurlService(live_server.core.config.simnet_dir) as lnurl_service:
        alice = funded_user(live_server.core, "alice", FUNDS)
        async with AsyncClient(live_server.url, alice.api_key, alice.api_secret) as c:
            r = await c.post(
                "/v1/withdrawals",
                {"lightning_address": f"carol@{lnurl_service.host}", "amount_msat": 25_000},
            )
            assert r.json()["error"]["code"] == "DESTINATION_NOT_ALLOWED"
            assert await available_msat(c) == FUNDS


async def test_a_lightning_address_of_our_own_user_settles_internally(
    live_server: LiveServer,
) -> None:
    alice = funded_user(live_server.core, "alice", FUNDS)
    bob = funded_user(live_server.core, "bob")
    host = live_server.core.config.public_host
    async with AsyncClient(live_server.url, alice.api_key, alice.api_secret) as c:
        r = await c.post(
            "/v1/withdrawals", {"lightning_address": f"bob@{host}", "amount_msat": 42_000}
        )
        assert r.status_code == 201, r.text
        assert r.json()["internal"] is True and r.json()["status"] == "succeeded"
    async with AsyncClient(live_server.url, bob.api_key, bob.api_secret) as b:
        assert await available_msat(b) == 42_000


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/cb",
        "https://[::1]/cb",
        "https://169.254.169.254/latest/meta-data",
        "https://10.0.0.5/cb",
        "https://192.168.1.1/cb",
        "https://172.16.0.1/cb",
        "https://localhost/cb",
        "https://0.0.0.0/cb",
        "http://8.8.8.8/cb",  # plain http to a public host: refused too
        "ftp://example.com/cb",
    ],
)
async def test_callbacks_into_private_networks_are_refused(url: str) -> None:
    with pytest.raises(DestinationNotAllowed):
        await check_destination(url, allow_private=False)


async def test_public_destinations_pass_the_check() -> None:
    await check_destination("https://8.8.8.8/.well-known/lnurlp/x", allow_private=False)
