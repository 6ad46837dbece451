"""The checkout page in a real Chromium, on a phone-sized screen: it shows the invoice's QR,
counts down, and turns to "paid" by itself when a simnet wallet pays (no reload); the
cancelled view; and it is usable with JavaScript off. Nothing breaks the CSP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from playwright.async_api import Browser, BrowserContext

from lngate.bootstrap import accounts_for
from lngate.client import AsyncClient
from lngate.domain.users import Role
from tests.browser.conftest import PHONE, page_problems, screenshot
from tests.conftest import LiveServer
from tests.helpers import pay_from_wallet

ORDER = {
    "merchant_order_id": "cart-42",
    "amount_msat": 25_000_000,
    "description": "2 flat whites and a croissant",
    "redirect_url": "https://coffee.example/thanks",
}


async def create_order(server: LiveServer, **changes: Any) -> dict[str, Any]:
    shop = accounts_for(server.core).create_user_sync("corner_coffee", Role.MERCHANT)
    async with AsyncClient(server.url, shop.api_key, shop.api_secret) as c:
        r = await c.post("/v1/orders", {**ORDER, **changes})
        assert r.status_code == 201, r.text
        order: dict[str, Any] = r.json()
        order["keys"] = shop
        return order


@pytest.fixture
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    made = await browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True)
    try:
        yield made
    finally:
        await made.close()


async def test_a_wallet_payment_turns_the_page_to_paid_without_a_reload(
    live_server: LiveServer, context: BrowserContext
) -> None:
    order = await create_order(live_server)
    page = await context.new_page()
    problems = page_problems(page)
    await page.goto(order["checkout_url"])

    qr = page.locator("svg.qr-code")
    await qr.wait_for()
    box = await qr.bounding_box()
    assert box is not None and box["width"] > 200  # big enough to scan from a phone
    assert await page.locator(".amount-sat").inner_text() == "25,000"
    assert await page.locator("#bolt11").input_value() == order["bolt11"]
    assert await page.locator("#copy").is_visible()  # shown only where the script runs
    first = await page.locator("#countdown").inner_text()
    await page.wait_for_function(
        "text => document.getElementById('countdown').textContent !== text", arg=first
    )
    await screenshot(page, "checkout-open", readme=True)

    await page.evaluate("window.stillTheSameDocument = true")
    await asyncio.to_thread(
        pay_from_wallet, live_server.core.config.simnet_dir, "carol", order["bolt11"]
    )
    heading = page.locator("#outcome-title")
    await heading.wait_for(timeout=15_000)
    assert await heading.inner_text() == "Paid"
    assert await page.evaluate("window.stillTheSameDocument === true")  # no reload
    back = page.get_by_role("link", name="Back to coffee.example")
    assert await back.get_attribute("href") == "https://coffee.example/thanks"
    assert await page.locator("svg.qr-code").count() == 0
    await screenshot(page, "checkout-paid", readme=True)
    assert problems == []


async def test_a_cancelled_order_shows_the_cancelled_view(
    live_server: LiveServer, context: BrowserContext
) -> None:
    order = await create_order(live_server)
    page = await context.new_page()
    problems = page_problems(page)
    await page.goto(order["checkout_url"])
    await page.locator("svg.qr-code").wait_for()
    keys = order["keys"]
    async with AsyncClient(live_server.url, keys.api_key, keys.api_secret) as c:
        assert (await c.post(f"/v1/orders/{order['id']}/cancel", None)).status_code == 200
    heading = page.locator("#outcome-title")
    await heading.wait_for(timeout=15_000)
    assert await heading.inner_text() == "This payment request was cancelled"
    await screenshot(page, "checkout-cancelled")
    assert problems == []


async def test_without_javascript_the_page_still_shows_everything_needed_to_pay(
    live_server: LiveServer, browser: Browser
) -> None:
    order = await create_order(live_server)
    context = await browser.new_context(viewport=PHONE, java_script_enabled=False)
    try:
        page = await context.new_page()
        await page.goto(order["checkout_url"])
        assert await page.locator("svg.qr-code").is_visible()
        assert await page.locator("#bolt11").input_value() == order["bolt11"]
        assert not await page.locator("#copy").is_visible()  # it needs the script
        wallet = page.get_by_role("link", name="Open in wallet")
        assert await wallet.get_attribute("href") == f"lightning:{order['bolt11']}"
        await screenshot(page, "checkout-no-javascript")
    finally:
        await context.close()


async def test_the_page_can_be_used_by_keyboard_alone(
    live_server: LiveServer, context: BrowserContext
) -> None:
    order = await create_order(live_server)
    page = await context.new_page()
    await page.goto(order["checkout_url"])
    await page.locator("svg.qr-code").wait_for()
    reached = []
    for _ in range(5):
        await page.keyboard.press("Tab")
        reached.append(
            await page.evaluate(
                "document.activeElement.id || document.activeElement.textContent.trim()"
            )
        )
    assert "Open in wallet" in reached and "bolt11" in reached and "copy" in reached
