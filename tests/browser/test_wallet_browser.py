"""The web wallet and the operator console in a real Chromium: a user signs in, deposits and
watches the balance change by itself, turns on TOTP and withdraws with a code; an operator
approves a withdrawal under review and the user's page shows it sent; forged forms and idle
sessions are refused; the console is not on the public listener. Nothing breaks the CSP."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import AsyncIterator, Iterator

import pytest
from playwright.async_api import Browser, BrowserContext, Page

from lngate.bootstrap import Core, accounts_for, administration_for, web_logins_for
from lngate.client import AsyncClient
from lngate.config import Config
from lngate.domain.users import Role
from tests.browser.conftest import PHONE, page_problems, screenshot
from tests.conftest import LiveServer, funded_user, started_core
from tests.helpers import pay_from_wallet, wallet_invoice
from tests.web_support import PASSWORD, code

LAPTOP = {"width": 1280, "height": 860}
OPERATOR_PASSWORD = "operator password 1"


def wallet_user(core: Core, name: str, amount_msat: int = 0) -> None:
    funded_user(core, name, amount_msat)
    web_logins_for(core).set_password_sync(name, PASSWORD, actor="test")


@pytest.fixture
async def phone(browser: Browser) -> AsyncIterator[BrowserContext]:
    made = await browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True)
    try:
        yield made
    finally:
        await made.close()


@pytest.fixture
async def laptop(browser: Browser) -> AsyncIterator[BrowserContext]:
    made = await browser.new_context(viewport=LAPTOP)
    try:
        yield made
    finally:
        await made.close()


@pytest.fixture
def reviewed_core(config: Config) -> Iterator[Core]:
    """Withdrawals above 5,000 sat wait for an operator."""
    withdrawals = dataclasses.replace(config.withdrawals, review_above_msat=5_000_000)
    with started_core(dataclasses.replace(config, withdrawals=withdrawals)) as core:
        yield core


async def sign_in(page: Page, base_url: str, username: str, password: str = PASSWORD) -> None:
    await page.goto(base_url + "/app/")
    assert page.url.endswith("/app/login?next=/app/")
    await page.get_by_label("Username").fill(username)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(base_url + "/app/")


async def test_a_deposit_turns_to_credited_and_the_balance_changes_without_a_reload(
    live_server: LiveServer, phone: BrowserContext
) -> None:
    wallet_user(live_server.core, "alice", 1_234_567)
    home = await phone.new_page()
    problems = page_problems(home)
    await home.goto(live_server.url + "/app/")
    await home.get_by_label("Username").wait_for()
    await screenshot(home, "wallet-sign-in", readme=True)
    await sign_in(home, live_server.url, "alice")
    available = home.locator("#available")
    assert await available.inner_text() == "1,234.567"
    assert await available.get_attribute("title") == "1,234,567 msat"
    assert await home.locator("[data-copy-target=address]").is_visible()
    await home.evaluate("window.stillTheSameDocument = true")

    deposit = await phone.new_page()
    problems += page_problems(deposit)
    await deposit.goto(live_server.url + "/app/deposit")
    await deposit.get_by_label("Amount (sat)").fill("2,500")
    await deposit.get_by_role("button", name="Create invoice").click()
    qr = deposit.locator("svg.qr-code")
    await qr.wait_for()
    box = await qr.bounding_box()
    assert box is not None and box["width"] > 200
    bolt11 = await deposit.locator("#bolt11").input_value()
    first = await deposit.locator("#countdown").inner_text()
    await deposit.wait_for_function(
        "text => document.getElementById('countdown').textContent !== text", arg=first
    )
    await screenshot(deposit, "wallet-deposit", readme=True)
    await deposit.evaluate("window.stillTheSameDocument = true")

    await asyncio.to_thread(pay_from_wallet, live_server.core.config.simnet_dir, "carol", bolt11)
    heading = deposit.locator("#outcome-title")
    await heading.wait_for(timeout=15_000)
    assert await heading.inner_text() == "Credited"
    assert await deposit.evaluate("window.stillTheSameDocument === true")
    await home.wait_for_function(
        "() => document.getElementById('available').textContent === '3,734.567'",
        timeout=15_000,
    )
    assert await home.evaluate("window.stillTheSameDocument === true")  # no reload
    await home.reload()
    await screenshot(home, "wallet-home", readme=True)
    await home.goto(live_server.url + "/app/history")
    assert "Deposit" in await home.locator(".entries").inner_text()
    await screenshot(home, "wallet-history", readme=True)

    wallet_user(live_server.core, "bob")
    await home.get_by_role("link", name="Send").first.click()
    await home.get_by_label("Username").fill("bob")
    await home.get_by_label("Amount (sat)").fill("734.567")
    await home.get_by_label("Note (optional)").fill("half the pizza")
    await home.locator("form.stack").get_by_role("button", name="Send").click()
    await home.get_by_text("Sent 734.567 sat to bob.").wait_for()
    await screenshot(home, "wallet-send", readme=True)
    assert problems == []


async def test_with_totp_on_a_withdrawal_is_previewed_confirmed_with_a_code_and_followed(
    live_server: LiveServer, phone: BrowserContext
) -> None:
    wallet_user(live_server.core, "alice", 50_000_000)
    page = await phone.new_page()
    problems = page_problems(page)
    await sign_in(page, live_server.url, "alice")

    await page.get_by_role("link", name="Settings").click()
    await page.get_by_role("button", name="Set up two-factor codes").click()
    await page.locator("svg.qr-code").wait_for()
    await screenshot(page, "wallet-settings", readme=True)
    secret = await page.locator("#totp-secret").inner_text()
    await page.get_by_label("Your password").fill(PASSWORD)
    await page.get_by_label("Code from the app").fill(code(secret))
    await page.get_by_role("button", name="Turn on").click()
    await page.get_by_text("Two-factor codes are on").wait_for()

    bolt11 = wallet_invoice(live_server.core.config.simnet_dir, "carol", 4_200_000, memo="rent")
    await page.get_by_role("link", name="Withdraw").first.click()
    await page.get_by_label("Lightning invoice or Lightning Address").fill(bolt11)
    await page.get_by_role("button", name="Review").click()
    preview = page.locator("#preview")
    await preview.wait_for()
    text = await preview.inner_text()
    assert "4,200 sat" in text and "rent" in text and "Left of today's limit" in text
    await screenshot(page, "wallet-withdraw-preview", readme=True)

    await page.get_by_label("Code from your authenticator app").fill(code(secret, steps_ahead=1))
    await page.get_by_role("button", name="Withdraw 4,200 sat").click()
    await page.wait_for_url(re.compile(r".*/app/withdrawals/[0-9a-f-]+$"))
    status = page.locator("#status")
    await page.wait_for_function(
        "() => document.getElementById('status') && "
        "document.getElementById('status').textContent === 'Sent'",
        timeout=15_000,
    )
    assert await status.inner_text() == "Sent"
    await screenshot(page, "wallet-withdrawal", readme=True)
    assert problems == []


async def test_an_operator_approves_a_reviewed_withdrawal_and_the_users_page_shows_it_sent(
    reviewed_core: Core, phone: BrowserContext, laptop: BrowserContext
) -> None:
    core = reviewed_core
    wallet_user(core, "alice", 50_000_000)
    created = web_logins_for(core).create_operator_sync("ops", OPERATOR_PASSWORD, actor="test")
    secret = created.provisioning_uri.split("secret=")[1].split("&")[0]
    with LiveServer(core, admin=True) as server:
        user = await phone.new_page()
        problems = page_problems(user)
        await sign_in(user, server.url, "alice")
        bolt11 = wallet_invoice(core.config.simnet_dir, "carol", 8_000_000, memo="a bike")
        await user.goto(server.url + "/app/withdraw")
        await user.get_by_label("Lightning invoice or Lightning Address").fill(bolt11)
        await user.get_by_role("button", name="Review").click()
        await user.get_by_text("An operator approves").wait_for()
        await user.get_by_role("button", name="Withdraw 8,000 sat").click()
        status = user.locator("#status")
        await status.wait_for()
        assert await status.inner_text() == "Waiting for an operator's approval"
        await user.evaluate("window.stillTheSameDocument = true")

        ops = await laptop.new_page()
        problems += page_problems(ops)
        await ops.goto(server.admin_url + "/console/")
        await ops.get_by_label("Username").fill("ops")
        await ops.get_by_label("Password").fill(OPERATOR_PASSWORD)
        await ops.get_by_label("Code from your authenticator app").fill(code(secret))
        await ops.get_by_role("button", name="Sign in").click()
        await ops.wait_for_url(server.admin_url + "/console/")
        assert await ops.locator("#waiting").inner_text() == "1"
        await screenshot(ops, "console-overview", readme=True)
        await ops.get_by_role("link", name="Reviews").first.click()
        await ops.get_by_role("heading", name="8,000 sat by alice").wait_for()
        await screenshot(ops, "console-reviews", readme=True)
        await ops.get_by_placeholder("Reason to approve").fill("known customer, usual amount")
        await ops.get_by_role("button", name="Approve").click()
        await ops.get_by_text("Approved: the withdrawal is on its way.").wait_for()

        await user.wait_for_function(
            "() => document.getElementById('status') && "
            "document.getElementById('status').textContent === 'Sent'",
            timeout=15_000,
        )
        assert await user.evaluate("window.stillTheSameDocument === true")  # no reload

        await ops.get_by_role("link", name="Reconciliation").click()
        await ops.get_by_role("button", name="Run now").click()
        await ops.get_by_text("Reconciliation ran").wait_for()
        await screenshot(ops, "console-reconciliation", readme=True)
        await ops.get_by_role("link", name="Treasury").click()
        await ops.get_by_role("heading", name="Hot float").wait_for()
        await screenshot(ops, "console-treasury", readme=True)
        await ops.get_by_role("link", name="Users").click()
        await ops.get_by_label("Username starts with").fill("al")
        await ops.get_by_role("button", name="Search").click()
        await ops.get_by_role("link", name="alice").click()
        await ops.get_by_label("Why freeze").fill("checking a report")
        await ops.get_by_role("button", name="Freeze the account").click()
        await ops.get_by_text("The account is frozen.").wait_for()
        await screenshot(ops, "console-user", readme=True)
        await ops.get_by_role("link", name="Audit log").click()
        await ops.get_by_role("button", name="Verify chain").click()
        await ops.get_by_text("is intact").wait_for()
        assert "operator:ops" in await ops.locator("#audit").inner_text()
        await screenshot(ops, "console-audit", readme=True)
        assert problems == []


async def test_a_forged_form_and_an_idle_session_are_refused(
    config: Config, phone: BrowserContext
) -> None:
    web = dataclasses.replace(config.web, session_idle_s=2)
    with started_core(dataclasses.replace(config, web=web)) as core:
        wallet_user(core, "alice", 10_000_000)
        wallet_user(core, "bob")
        with LiveServer(core, watcher=False) as server:
            page = await phone.new_page()
            await sign_in(page, server.url, "alice")
            await page.goto(server.url + "/app/send")
            await page.get_by_label("Username").fill("bob")
            await page.get_by_label("Amount (sat)").fill("1000")
            # What another page would post: this form without this session's token.
            await page.evaluate(
                "document.querySelector('form.stack input[name=csrf_token]').value = 'forged'"
            )
            async with page.expect_response(lambda r: r.request.method == "POST") as posted:
                await page.locator("form.stack").get_by_role("button", name="Send").click()
            assert (await posted.value).status == 403
            await page.get_by_text("this form is not from this session").wait_for()
            await screenshot(page, "wallet-csrf-refused")

            await asyncio.sleep(2.5)  # idle past session_idle_s
            await page.goto(server.url + "/app/history")
            assert page.url.endswith("/app/login?next=/app/history")
            await page.get_by_label("Username").wait_for()
            # The console is not served on the public listener at all.
            response = await page.goto(server.url + "/console/")
            assert response is not None and response.status == 404
        bob = await administration_for(core).user("bob")
        assert bob.available_msat == 0


async def test_a_signed_in_user_pays_an_order_from_the_checkout_page_with_the_balance(
    live_server: LiveServer, phone: BrowserContext
) -> None:
    wallet_user(live_server.core, "alice", 40_000_000)
    shop = accounts_for(live_server.core).create_user_sync("corner_coffee", Role.MERCHANT)
    async with AsyncClient(live_server.url, shop.api_key, shop.api_secret) as c:
        r = await c.post(
            "/v1/orders",
            {"merchant_order_id": "cart-7", "amount_msat": 9_000_000, "description": "beans"},
        )
        order = r.json()
    page = await phone.new_page()
    problems = page_problems(page)
    await page.goto(order["checkout_url"])
    await page.get_by_role("link", name="Pay with my lngate balance").click()
    await page.get_by_label("Username").fill("alice")  # not signed in yet: then back here
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_role("button", name="Pay 9,000 sat").wait_for()
    assert "From your balance of 40,000 sat" in await page.locator("#main").inner_text()
    await screenshot(page, "wallet-pay-order", readme=True)
    await page.get_by_role("button", name="Pay 9,000 sat").click()
    await page.wait_for_url(order["checkout_url"])
    assert await page.locator("#outcome-title").inner_text() == "Paid"
    assert problems == []


async def test_signing_in_and_moving_around_works_by_keyboard_alone(
    live_server: LiveServer, phone: BrowserContext
) -> None:
    wallet_user(live_server.core, "alice", 1_000_000)
    page = await phone.new_page()
    await page.goto(live_server.url + "/app/login")
    await page.keyboard.type("alice")  # the username field has the focus
    await page.keyboard.press("Tab")
    await page.keyboard.type(PASSWORD)
    await page.keyboard.press("Enter")
    await page.wait_for_url(live_server.url + "/app/")
    await page.keyboard.press("Tab")  # first: the skip link, then the page
    assert await page.evaluate("document.activeElement.textContent") == "Skip to content"
    await page.keyboard.press("Enter")
    assert await page.evaluate("document.activeElement.id") == "main"
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.textContent") == "Deposit"
    await page.keyboard.press("Enter")
    await page.wait_for_url(live_server.url + "/app/deposit")
    assert await page.evaluate("document.activeElement.id") == "amount_sat"
