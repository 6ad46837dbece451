"""Pay through real HTTP, on SQLite and PostgreSQL, with the order watcher running: orders,
paying from a balance and from an outside wallet, refunds, and what a hostile client sends."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from lngate.bootstrap import accounts_for
from lngate.client import AsyncClient, signed_headers
from lngate.domain.users import Role
from lngate.services.reconciliation import check_ledger
from tests.conftest import LiveServer, funded_user
from tests.helpers import available_msat, eventually, pay_from_wallet, read_events, wallet_invoice


def client(server: LiveServer, creds: Any) -> AsyncClient:
    return AsyncClient(server.url, creds.api_key, creds.api_secret)


def merchant(server: LiveServer, name: str = "shop") -> Any:
    return accounts_for(server.core).create_user_sync(name, Role.MERCHANT)


ORDER = {"merchant_order_id": "cart-1", "amount_msat": 150_000, "description": "2 coffees"}


async def test_an_order_is_created_once_per_merchant_order_id(live_server: LiveServer) -> None:
    shop = merchant(live_server)
    async with client(live_server, shop) as c:
        first = await c.post("/v1/orders", {**ORDER, "metadata": {"table": 4}})
        assert first.status_code == 201, first.text
        body = first.json()
        assert list(body) == [
            "id",
            "merchant_order_id",
            "status",
            "amount_msat",
            "fee_msat",
            "description",
            "bolt11",
            "payment_hash",
            "checkout_url",
            "created_at",
            "expires_at",
            "paid_at",
            "paid_via",
            "refunded_msat",
            "redirect_url",
            "metadata",
        ]
        assert (body["status"], body["metadata"]) == ("open", {"table": 4})
        assert body["checkout_url"] == f"{live_server.url}/pay/{body['id']}"
        again = await c.post("/v1/orders", {**ORDER, "metadata": {"table": 4}})
        assert again.status_code == 200 and again.json() == body
        other = await c.post("/v1/orders", {**ORDER, "amount_msat": 1_000})
        assert other.status_code == 409
        assert other.json()["error"]["code"] == "MERCHANT_ORDER_ID_REUSED"
        fetched = await c.get(f"/v1/orders/{body['id']}")
        assert fetched.json() == body
        listed = (await c.get("/v1/orders?status=open&merchant_order_id=cart-1")).json()
        assert [o["id"] for o in listed["orders"]] == [body["id"]]
        assert listed["next_cursor"] is None


async def test_pay_calls_need_a_merchant_key(live_server: LiveServer) -> None:
    alice = funded_user(live_server.core, "alice")
    async with client(live_server, alice) as c:
        for method, path in [("POST", "/v1/orders"), ("GET", "/v1/orders")]:
            r = await c.request(method, path, ORDER if method == "POST" else None)
            assert r.status_code == 403 and r.json()["error"]["code"] == "NOT_A_MERCHANT"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"merchant_order_id": "x", "amount_msat": "1000"},
        {"merchant_order_id": "x", "amount_msat": True},
        {"merchant_order_id": "x", "amount_msat": 1e3},
        {"merchant_order_id": "x/../y", "amount_msat": 1_000},
        {"merchant_order_id": "x", "amount_msat": 1_000, "expires_in_s": 10},
        {"merchant_order_id": "x", "amount_msat": 1_000, "metadata": "text"},
        {"merchant_order_id": "x", "amount_msat": 1_000, "redirect_url": "data:text/html,hi"},
        {"merchant_order_id": "x", "amount_msat": 1_000, "surprise": 1},
        {"merchant_order_id": "x", "amount_msat": 2**70},
        [1, 2],
    ],
)
async def test_a_hostile_order_request_gets_a_clear_4xx_and_creates_nothing(
    live_server: LiveServer, body: Any
) -> None:
    shop = merchant(live_server)
    async with client(live_server, shop) as c:
        r = await c.post("/v1/orders", body)
        assert 400 <= r.status_code < 500, r.text
        assert r.json()["error"]["code"]
        assert (await c.get("/v1/orders")).json()["orders"] == []


async def test_unknown_and_foreign_orders_are_not_found(live_server: LiveServer) -> None:
    shop, other = merchant(live_server), merchant(live_server, "other")
    async with client(live_server, shop) as c:
        order = (await c.post("/v1/orders", ORDER)).json()
    async with client(live_server, other) as c:
        for path in [f"/v1/orders/{order['id']}", "/v1/orders/ord_nope", "/v1/orders/x%20y"]:
            r = await c.get(path)
            assert r.status_code == 404, (path, r.text)
        r = await c.post(f"/v1/orders/{order['id']}/cancel", None)
        assert r.status_code == 404


async def test_an_order_paid_from_an_outside_wallet_is_credited_once(
    live_server: LiveServer,
) -> None:
    shop = merchant(live_server)
    async with client(live_server, shop) as c:
        order = (await c.post("/v1/orders", ORDER)).json()
        await asyncio.to_thread(
            pay_from_wallet, live_server.core.config.simnet_dir, "carol", order["bolt11"]
        )

        async def paid() -> bool:
            return (await c.get(f"/v1/orders/{order['id']}")).json()["status"] == "paid"

        await eventually(paid, what="the order paid")
        assert await available_msat(c) == 150_000
        late = await asyncio.to_thread(
            pay_from_wallet, live_server.core.config.simnet_dir, "dave", order["bolt11"]
        )
        assert late.status.value == "failed"  # a second payment goes back to its payer
        assert await available_msat(c) == 150_000
    events = await read_events(
        live_server.url,
        shop,
        after=0,
        until=lambda got: any(e["event"] == "order.paid" for e in got),
    )
    assert [e["event"] for e in events] == ["order.paid"]
    assert events[0]["data"]["data"]["id"] == order["id"]


async def test_paying_from_a_balance_needs_an_idempotency_key(live_server: LiveServer) -> None:
    shop = merchant(live_server)
    alice = funded_user(live_server.core, "alice", 1_000_000)
    async with client(live_server, shop) as c:
        order = (await c.post("/v1/orders", ORDER)).json()
    async with client(live_server, alice) as c:
        path = f"/v1/orders/{order['id']}/pay"
    async with httpx.AsyncClient(base_url=live_server.url) as http:
        headers = signed_headers(alice.api_key, alice.api_secret, "POST", path, b"")
        r = await http.post(path, headers=headers)  # no Idempotency-Key
        assert (r.status_code, r.json()["error"]["code"]) == (400, "INVALID_REQUEST")
        assert "Idempotency-Key" in r.json()["error"]["message"]
    async with client(live_server, alice) as c:
        r = await c.post(path, None, idempotency_key="p1")
        assert r.status_code == 200, r.text
        assert (r.json()["status"], r.json()["merchant"]) == ("paid", "shop")
        assert (await c.post(path, None, idempotency_key="p1")).json() == r.json()
        r2 = await c.post(path, None, idempotency_key="p2")
        assert r2.status_code == 409 and r2.json()["error"]["code"] == "ORDER_NOT_OPEN"
        assert await available_msat(c) == 850_000
        assert (
            await c.post("/v1/orders/ord_nope/pay", None, idempotency_key="x")
        ).status_code == 404
    assert check_ledger_ok(live_server)


def check_ledger_ok(server: LiveServer) -> bool:
    with server.core.db.transaction(write=False) as tx:
        return check_ledger(tx).ok


async def test_refunds_over_http(live_server: LiveServer) -> None:
    shop = merchant(live_server)
    alice = funded_user(live_server.core, "alice", 1_000_000)
    async with client(live_server, shop) as c:
        order = (await c.post("/v1/orders", ORDER)).json()
    async with client(live_server, alice) as a:
        await a.post(f"/v1/orders/{order['id']}/pay", None, idempotency_key="p")
    async with client(live_server, shop) as c:
        path = f"/v1/orders/{order['id']}/refunds"
        r = await c.post(path, {"amount_msat": 50_000, "reason": "cold"}, idempotency_key="r1")
        assert r.status_code == 201, r.text
        assert list(r.json())[:6] == [
            "id",
            "order_id",
            "amount_msat",
            "status",
            "destination",
            "reason",
        ]
        assert (r.json()["status"], r.json()["destination"]) == ("succeeded", "balance")
        too_much = await c.post(path, {"amount_msat": 100_001}, idempotency_key="r2")
        assert too_much.status_code == 422
        assert too_much.json()["error"]["code"] == "REFUND_EXCEEDS_PAID"
        bad = await c.post(path, {"amount_msat": -5}, idempotency_key="r3")
        assert bad.status_code in (400, 422)
        both = await c.post(
            path,
            {"amount_msat": 5, "bolt11": "lnbc1", "lightning_address": "a@b.c"},
            idempotency_key="r4",
        )
        assert both.status_code == 400
        listed = (await c.get(path)).json()["refunds"]
        assert [x["amount_msat"] for x in listed] == [50_000]
    async with client(live_server, alice) as a:
        assert await available_msat(a) == 900_000


async def test_a_refund_of_a_lightning_payment_goes_out_as_a_withdrawal(
    live_server: LiveServer,
) -> None:
    shop = merchant(live_server)
    simnet_dir = live_server.core.config.simnet_dir
    async with client(live_server, shop) as c:
        order = (await c.post("/v1/orders", {**ORDER, "amount_msat": 500_000})).json()
        await asyncio.to_thread(pay_from_wallet, simnet_dir, "carol", order["bolt11"])

        async def paid() -> bool:
            return (await c.get(f"/v1/orders/{order['id']}")).json()["status"] == "paid"

        await eventually(paid, what="the order paid")
        bolt11 = wallet_invoice(simnet_dir, "carol", 200_000)
        r = await c.post(
            f"/v1/orders/{order['id']}/refunds",
            {"amount_msat": 200_000, "bolt11": bolt11},
            idempotency_key="r",
        )
        assert r.status_code == 201, r.text
        refund = r.json()
        assert refund["withdrawal_id"] and refund["destination"] == bolt11

        async def refunded() -> bool:
            listed = (await c.get(f"/v1/orders/{order['id']}/refunds")).json()["refunds"]
            return listed[0]["status"] == "succeeded"

        await eventually(refunded, what="the refund paid")
        view = (await c.get(f"/v1/orders/{order['id']}")).json()
        assert (view["status"], view["refunded_msat"]) == ("paid", 200_000)
    events = await read_events(
        live_server.url,
        shop,
        after=0,
        until=lambda got: any(e["event"] == "refund.succeeded" for e in got),
    )
    pay_events = [e["event"] for e in events if e["event"].split(".")[0] in ("order", "refund")]
    assert pay_events == ["order.paid", "refund.succeeded"]  # its withdrawal's events besides
