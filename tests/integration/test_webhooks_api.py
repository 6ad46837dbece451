"""Webhooks through real HTTP, on SQLite and PostgreSQL, with the server's own sender running:
a shop's receiver gets ``order.paid`` for an order paid from an outside wallet within moments,
verifies it with the Standard Webhooks reference library, and reads and replays the delivery
log; and what a hostile client sends is refused without creating anything."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
from standardwebhooks import Webhook

from lngate.bootstrap import Core, accounts_for
from lngate.client import AsyncClient
from lngate.config import Config
from lngate.domain.users import Role
from tests.conftest import LiveServer, funded_user, started_core
from tests.helpers import eventually, pay_from_wallet
from tests.webhook_receiver import Receiver, webhook_receiver


@pytest.fixture
def core(config: Config) -> Iterator[Core]:
    # The receiver listens on loopback: a private address that production refuses.
    pay = dataclasses.replace(config.pay, webhook_allow_private_hosts=True)
    with started_core(dataclasses.replace(config, pay=pay)) as c:
        yield c


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with webhook_receiver() as r:
        yield r


def client(server: LiveServer, creds: Any) -> AsyncClient:
    return AsyncClient(server.url, creds.api_key, creds.api_secret)


def merchant(server: LiveServer, name: str = "shop") -> Any:
    return accounts_for(server.core).create_user_sync(name, Role.MERCHANT)


async def test_a_shop_is_told_an_order_was_paid_and_verifies_it(
    live_server: LiveServer, receiver: Receiver
) -> None:
    shop = merchant(live_server)
    async with client(live_server, shop) as c:
        r = await c.post("/v1/webhooks", {"url": receiver.url, "events": ["order.paid"]})
        assert r.status_code == 201, r.text
        endpoint = r.json()
        assert list(endpoint) == [
            "id",
            "url",
            "events",
            "status",
            "created_at",
            "failing_since",
            "disabled_at",
            "secret",
        ]
        secret = endpoint["secret"]
        assert secret.startswith("whsec_") and endpoint["status"] == "enabled"
        listed = (await c.get("/v1/webhooks")).json()["webhooks"]
        assert [e["id"] for e in listed] == [endpoint["id"]] and "secret" not in listed[0]

        order = (
            await c.post(
                "/v1/orders",
                {"merchant_order_id": "cart-7", "amount_msat": 120_000, "description": "tea"},
            )
        ).json()
        await asyncio.to_thread(
            pay_from_wallet, live_server.core.config.simnet_dir, "carol", order["bolt11"]
        )
        (got,) = await asyncio.to_thread(receiver.wait_for, 1)
        payload = Webhook(secret).verify(got.body, got.headers)
        assert payload["type"] == "order.paid"
        assert (payload["data"]["id"], payload["data"]["status"]) == (order["id"], "paid")
        assert payload["data"]["paid_via"] == "lightning"

        path = f"/v1/webhooks/{endpoint['id']}/deliveries"

        async def logged() -> bool:
            deliveries = (await c.get(path)).json()["deliveries"]
            return bool(deliveries) and deliveries[0]["status"] == "succeeded"

        await eventually(logged, what="the delivery logged")
        (delivery,) = (await c.get(path)).json()["deliveries"]
        assert delivery["webhook_id"] == got.headers["webhook-id"]
        assert (delivery["attempts"], delivery["last_status_code"]) == (1, 200)

        r = await c.post(f"{path}/{delivery['id']}/redeliver", None)
        assert r.status_code == 200 and r.json()["status"] == "pending"
        first, again = await asyncio.to_thread(receiver.wait_for, 2)
        assert again.headers["webhook-id"] == first.headers["webhook-id"]
        assert again.body == first.body

        assert (await c.delete(f"/v1/webhooks/{endpoint['id']}")).status_code == 204
        assert (await c.get("/v1/webhooks")).json() == {"webhooks": []}
        assert (await c.get(path)).status_code == 404
        assert (await c.delete(f"/v1/webhooks/{endpoint['id']}")).status_code == 404


HOSTILE: list[Any] = [
    {},
    {"url": "https://shop.example/h"},
    {"events": ["order.paid"]},
    {"url": None, "events": ["order.paid"]},
    {"url": 7, "events": ["order.paid"]},
    {"url": "https://shop.example/h", "events": "order.paid"},
    {"url": "https://shop.example/h", "events": []},
    {"url": "https://shop.example/h", "events": ["order.paid", "order.paid"]},
    {"url": "https://shop.example/h", "events": ["everything"]},
    {"url": "javascript:alert(1)", "events": ["order.paid"]},
    {"url": "https://a:b@shop.example/h", "events": ["order.paid"]},
    {"url": "https://shop.example/" + "x" * 5000, "events": ["order.paid"]},
    {"url": "https://shop.example/h", "events": ["order.paid"], "secret": "whsec_mine"},
    ["https://shop.example/h"],
]


@pytest.mark.parametrize("body", HOSTILE)
async def test_a_hostile_webhook_request_gets_a_clear_4xx_and_creates_nothing(
    live_server: LiveServer, body: Any
) -> None:
    shop = merchant(live_server)
    async with client(live_server, shop) as c:
        r = await c.post("/v1/webhooks", body)
        assert r.status_code == 400, r.text
        assert r.json()["error"]["code"] in ("INVALID_REQUEST", "MALFORMED_JSON")
        assert (await c.get("/v1/webhooks")).json() == {"webhooks": []}


async def test_webhooks_are_for_merchants_and_their_own_endpoints_only(
    live_server: LiveServer, receiver: Receiver
) -> None:
    alice = funded_user(live_server.core, "alice")
    async with client(live_server, alice) as a:
        r = await a.post("/v1/webhooks", {"url": receiver.url, "events": ["order.paid"]})
        assert (r.status_code, r.json()["error"]["code"]) == (403, "NOT_A_MERCHANT")
        assert (await a.get("/v1/webhooks")).status_code == 403
    shop, other = merchant(live_server), merchant(live_server, "other")
    async with client(live_server, shop) as c:
        mine = (
            await c.post("/v1/webhooks", {"url": receiver.url, "events": ["order.paid"]})
        ).json()
    async with client(live_server, other) as o:
        for path in (
            f"/v1/webhooks/{mine['id']}/deliveries",
            "/v1/webhooks/whe_nope/deliveries",
            "/v1/webhooks/%2e%2e/deliveries",
        ):
            assert (await o.get(path)).status_code == 404, path
        assert (await o.delete(f"/v1/webhooks/{mine['id']}")).status_code == 404
        r = await o.post(f"/v1/webhooks/{mine['id']}/deliveries/dlv_x/redeliver", None)
        assert r.status_code == 404
        assert (await o.get("/v1/webhooks")).json() == {"webhooks": []}
    async with client(live_server, shop) as c:
        assert [e["id"] for e in (await c.get("/v1/webhooks")).json()["webhooks"]] == [mine["id"]]
        r = await c.get(f"/v1/webhooks/{mine['id']}/deliveries?limit=0")
        assert r.status_code == 400
