"""The hosted checkout page over real HTTP: what it shows of an order in each status, its JSON
status and live events, its headers (a strict CSP, nothing cached or sniffed), and what it
answers to ids and paths that are not orders. The browser tests (tests/browser) look at it."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx
import orjson

from lngate.bootstrap import accounts_for
from lngate.client import AsyncClient
from lngate.domain.users import Role
from lngate.services.order_records import CheckoutView
from lngate.web.checkout_view import checkout_page
from lngate.web.headers import CONTENT_SECURITY_POLICY
from tests.conftest import LiveServer, funded_user

ORDER = {
    "merchant_order_id": "cart-1",
    "amount_msat": 21_000_500,
    "description": "2 coffees & a <script>alert('x')</script> croissant",
    "redirect_url": "https://shop.example/thanks?order=1",
}


async def new_order(server: LiveServer, **changes: Any) -> dict[str, Any]:
    shop = accounts_for(server.core).create_user_sync("shop", Role.MERCHANT)
    async with AsyncClient(server.url, shop.api_key, shop.api_secret) as c:
        r = await c.post("/v1/orders", {**ORDER, **changes})
        assert r.status_code == 201, r.text
        order: dict[str, Any] = r.json()
        order["merchant_keys"] = shop
        return order


async def pay_from_balance(server: LiveServer, order_id: str) -> None:
    alice = funded_user(server.core, "alice", 100_000_000)
    async with AsyncClient(server.url, alice.api_key, alice.api_secret) as c:
        r = await c.post(f"/v1/orders/{order_id}/pay", None, idempotency_key="p")
        assert r.status_code == 200, r.text


async def test_an_open_order_shows_amount_qr_invoice_and_countdown(
    live_server: LiveServer,
) -> None:
    order = await new_order(live_server)
    async with httpx.AsyncClient(base_url=live_server.url) as http:
        r = await http.get(f"/pay/{order['id']}")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert r.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert (
        "script-src 'self'" in CONTENT_SECURITY_POLICY and "unsafe" not in CONTENT_SECURITY_POLICY
    )
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["referrer-policy"] == "no-referrer"
    html = r.text
    assert "21,000.5" in html and "0.000210005 BTC" in html  # exact to the msat
    assert "Pay <strong>shop</strong>" in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html  # escaped, not run
    assert "<script>alert" not in html
    assert html.count("<svg") == 1 and 'class="qr-code"' in html
    assert f'href="lightning:{order["bolt11"]}"' in html
    assert order["bolt11"] in html  # the invoice to copy
    assert re.search(r'<time id="countdown" datetime="PT(89\d|900)S">1[45]:\d\d</time>', html)
    assert '<meta http-equiv="refresh" content="10">' in html  # without JavaScript: reloads
    # Nothing from elsewhere: every script, style and image is lngate's own.
    for attr in re.findall(r'(?:src|href)="([^"]+)"', html):
        assert attr.startswith(("/assets/", "lightning:", "/app/pay/")), attr
    assert "style=" not in html and "onclick" not in html  # nothing inline for the CSP to block


async def test_the_page_turns_to_paid_with_a_safe_link_back_to_the_shop(
    live_server: LiveServer,
) -> None:
    order = await new_order(live_server)
    await pay_from_balance(live_server, order["id"])
    async with httpx.AsyncClient(base_url=live_server.url) as http:
        html = (await http.get(f"/pay/{order['id']}")).text
        status = (await http.get(f"/pay/{order['id']}/status")).json()
    assert '<h2 id="outcome-title">Paid</h2>' in html
    assert 'href="https://shop.example/thanks?order=1"' in html and "Back to shop.example" in html
    assert "<svg" not in html and "checkout.js" not in html and "refresh" not in html
    assert status["status"] == "paid" and status["id"] == order["id"] and status["paid_at"]
    assert set(status) == {"id", "status", "paid_at", "expires_at", "redirect_url"}


async def test_a_cancelled_order_says_so_and_offers_nothing_to_pay(
    live_server: LiveServer,
) -> None:
    order = await new_order(live_server)
    keys = order["merchant_keys"]
    async with AsyncClient(live_server.url, keys.api_key, keys.api_secret) as c:
        assert (await c.post(f"/v1/orders/{order['id']}/cancel", None)).status_code == 200
    async with httpx.AsyncClient(base_url=live_server.url) as http:
        html = (await http.get(f"/pay/{order['id']}")).text
    assert "This payment request was cancelled" in html
    assert "<svg" not in html and order["bolt11"] not in html


def test_an_order_past_its_expiry_shows_expired_before_the_sweep_closes_it() -> None:
    view = CheckoutView(
        id="ord_" + "a" * 26,
        status="open",
        amount_msat=5_000,
        description="tea",
        bolt11="lnbcrt50n1xyz",
        merchant="shop",
        created_at="2026-12-07T10:00:00.000+00:00",
        expires_at="2026-12-07T10:15:00.000+00:00",
        expires_at_s=1_796_638_500,
        paid_at=None,
        redirect_url="javascript:alert(1)",
    )
    page = checkout_page(view, now_ms=1_796_638_500_000)
    assert (page.view, page.countdown, page.qr_svg, page.refresh_s) == (
        "expired",
        "0:00",
        None,
        None,
    )
    assert page.redirect_url is None  # never a javascript: link
    waiting = checkout_page(view, now_ms=1_796_638_500_000 - 61_000)
    assert (waiting.view, waiting.countdown, waiting.refresh_s) == ("open", "1:01", 10)


async def test_the_event_stream_tells_the_page_when_the_order_is_paid(
    live_server: LiveServer,
) -> None:
    order = await new_order(live_server)
    seen: list[dict[str, Any]] = []
    async with (
        httpx.AsyncClient(base_url=live_server.url, timeout=15) as http,
        http.stream("GET", f"/pay/{order['id']}/events") as r,
    ):
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        async for line in r.aiter_lines():
            if line.startswith("data: "):
                seen.append(orjson.loads(line[6:]))
                if len(seen) == 1:
                    asyncio.get_running_loop().create_task(
                        pay_from_balance(live_server, order["id"])
                    )
    # The stream ends by itself after the final status.
    assert [e["status"] for e in seen] == ["open", "paid"]


async def test_what_is_not_an_order_gets_the_not_found_page(live_server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=live_server.url) as http:
        for path in (
            "/pay/ord_" + "a" * 26,
            "/pay/nope",
            "/pay/",
            "/pay/%00",
            "/pay/ord_" + "a" * 26 + "/x/y",
            "/pay/" + "x" * 5000,
        ):
            r = await http.get(path)
            assert r.status_code in (404, 400), path
            if r.status_code == 404:
                assert "Payment not found" in r.text, path
                assert r.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        for path in ("/pay/nope/status", "/pay/nope/events"):
            r = await http.get(path)
            assert (r.status_code, r.json()["error"]["code"]) == (404, "NOT_FOUND")
            assert r.headers["x-content-type-options"] == "nosniff"


async def test_assets_are_served_versioned_and_only_if_they_exist(
    live_server: LiveServer,
) -> None:
    order = await new_order(live_server)
    async with httpx.AsyncClient(base_url=live_server.url) as http:
        html = (await http.get(f"/pay/{order['id']}")).text
        urls = re.findall(r'(?:src|href)="(/assets/[^"]+)"', html)
        assert {u.split("?")[0] for u in urls} == {
            "/assets/favicon.svg",
            "/assets/lngate.css",
            "/assets/checkout.js",
        }
        for url in urls:
            r = await http.get(url)
            assert r.status_code == 200 and "immutable" in r.headers["cache-control"]
            assert r.headers["x-content-type-options"] == "nosniff"
        assert (await http.get("/assets/lngate.css")).headers["content-type"].startswith("text/css")
        for path in ("/assets/nope.js", "/assets/..%2fpyproject.toml", "/assets/%2e%2e"):
            assert (await http.get(path)).status_code == 404, path
