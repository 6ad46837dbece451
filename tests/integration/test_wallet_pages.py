"""The web wallet and the operator console over real HTTP, as a browser without JavaScript
uses them: signing in (CSRF, lock-out, TOTP), the session cookie, each money form (and what a
hostile client posts to it), and the console's audited actions on the admin listener only.
The browser tests (tests/browser) look at the same pages in Chromium."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from lngate.bootstrap import Core, accounts_for, administration_for, web_logins_for
from lngate.client import AsyncClient
from lngate.config import Config
from lngate.domain.users import Role
from lngate.services.admin import AuditEntry
from lngate.web.headers import CONTENT_SECURITY_POLICY
from tests.conftest import LiveServer, funded_user, started_core
from tests.helpers import eventually, pay_from_wallet, wallet_invoice
from tests.web_support import PASSWORD, Pages, code, csrf_of, form_key_of

OPERATOR_PASSWORD = "operator password 1"


def wallet_user(core: Core, name: str, amount_msat: int = 0) -> None:
    funded_user(core, name, amount_msat)
    web_logins_for(core).set_password_sync(name, PASSWORD, actor="test")


def operator(core: Core, name: str = "ops") -> str:
    """A console operator; its TOTP secret (from the provisioning URI)."""
    created = web_logins_for(core).create_operator_sync(name, OPERATOR_PASSWORD, actor="test")
    match = re.search(r"secret=([A-Z2-7]+)", created.provisioning_uri)
    assert match is not None
    return match.group(1)


async def audit_records(core: Core) -> list[AuditEntry]:
    return list((await administration_for(core).audit_page(after=0, limit=1000)).records)


async def available_msat(core: Core, name: str) -> int:
    return (await administration_for(core).user(name)).available_msat


@pytest.fixture
def server(core: Core) -> Iterator[LiveServer]:
    with LiveServer(core, admin=True) as s:
        yield s


# --- signing in ------------------------------------------------------------------------------


async def test_signing_in_opens_a_server_side_session_in_a_strict_cookie(
    server: LiveServer,
) -> None:
    wallet_user(server.core, "alice", 12_345_678)
    async with Pages(server.url) as alice:
        r = await alice.get("/app/")
        assert r.status_code == 303 and r.headers["location"] == "/app/login?next=/app/"
        r = await alice.sign_in("alice")
        assert r.status_code == 303 and r.headers["location"] == "/app/"
        cookie = r.headers["set-cookie"]
        assert cookie.startswith("lngate_session=")
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie
        assert "Secure" not in cookie  # the public URL is http here
        r = await alice.get("/app/")
        assert r.status_code == 200
        assert r.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert r.headers["cache-control"] == "no-store"
        assert 'title="12,345,678 msat">12,345.678</span>' in r.text
        assert "alice@127.0.0.1" in r.text  # the Lightning Address

        token = alice.http.cookies["lngate_session"]
        r = await alice.post("/app/logout", {})
        assert r.status_code == 303 and r.headers["location"] == "/app/login"
        # The session is gone on the server, not only from this browser.
        async with Pages(server.url) as thief:
            thief.http.cookies.set("lngate_session", token)
            assert (await thief.get("/app/")).status_code == 303


async def test_wrong_passwords_lock_the_account_after_five_and_the_lock_is_audited(
    server: LiveServer,
) -> None:
    wallet_user(server.core, "alice")
    async with Pages(server.url) as attacker:
        for _ in range(5):
            r = await attacker.sign_in("alice", "not the password!")
            assert r.status_code == 401
            assert "wrong username, password or code" in r.text
        r = await attacker.sign_in("alice", "not the password!")
        assert r.status_code == 429 and "try again" in r.text.lower()
        r = await attacker.sign_in("alice")  # even the right password waits now
        assert r.status_code == 429 and "lngate_session" not in r.headers.get("set-cookie", "")
    locks = [a for a in (await audit_records(server.core)) if a.action == "web.login_locked"]
    assert [(a.subject, a.actor) for a in locks] == [("alice", "web")]


async def test_an_unknown_user_is_refused_like_a_wrong_password(server: LiveServer) -> None:
    async with Pages(server.url) as someone:
        r = await someone.sign_in("nobody", "whatever password")
        assert r.status_code == 401 and "wrong username, password or code" in r.text


async def test_a_form_without_its_csrf_token_is_refused_and_changes_nothing(
    server: LiveServer,
) -> None:
    wallet_user(server.core, "alice", 50_000_000)
    wallet_user(server.core, "bob")
    async with Pages(server.url) as alice:
        await alice.get("/app/login")
        fields = {"username": "alice", "password": PASSWORD}
        r = await alice.post("/app/login", fields, csrf=False)
        assert r.status_code == 403 and "this form is not from this session" in r.text
        assert (await alice.sign_in("alice")).status_code == 303
        await alice.get("/app/send")
        send = {"to": "bob", "amount_sat": "1000", "form_key": form_key_of(alice.last)}
        for forged in ({}, {"csrf_token": ""}, {"csrf_token": "x" * 43}):
            r = await alice.post("/app/send", {**send, **forged}, csrf=False)
            assert r.status_code == 403, forged
        # A cross-site form: no cookie is sent (SameSite), and even with it, no token.
        r = await alice.http.post("/app/send", data=send, headers={"Origin": "https://evil"})
        assert r.status_code == 403
    assert await available_msat(server.core, "bob") == 0
    assert await available_msat(server.core, "alice") == 50_000_000


async def test_sessions_expire_when_idle(config: Config) -> None:
    web = dataclasses.replace(config.web, session_idle_s=1)
    with started_core(dataclasses.replace(config, web=web)) as core:
        wallet_user(core, "alice")
        with LiveServer(core, watcher=False) as server:
            async with Pages(server.url) as alice:
                await alice.sign_in("alice")
                assert (await alice.get("/app/history")).status_code == 200
                await asyncio.sleep(1.2)
                r = await alice.get("/app/history")
                assert r.status_code == 303
                assert r.headers["location"] == "/app/login?next=/app/history"


async def test_hostile_form_bodies_get_a_page_with_the_reason_never_a_5xx(
    server: LiveServer,
) -> None:
    wallet_user(server.core, "alice", 5_000_000)
    async with Pages(server.url) as alice:
        await alice.sign_in("alice")
        await alice.get("/app/deposit")
        csrf = csrf_of(alice.last)
        bodies: list[tuple[str, bytes | str, str]] = [
            ("/app/deposit", '{"amount_sat": 1}', "application/json"),
            ("/app/deposit", b"\xff\xfe=\x00", "application/x-www-form-urlencoded"),
            (
                "/app/deposit",
                "&".join(f"f{i}=1" for i in range(100)),
                "application/x-www-form-urlencoded",
            ),
            (
                "/app/send",
                f"csrf_token={csrf}&to=alice&amount_sat=1",
                "application/x-www-form-urlencoded",
            ),
            (
                "/app/send",
                f"csrf_token={csrf}&to=bob&amount_sat=-5",
                "application/x-www-form-urlencoded",
            ),
            (
                "/app/send",
                f"csrf_token={csrf}&to=bob&amount_sat=1e9",
                "application/x-www-form-urlencoded",
            ),
            (
                "/app/withdraw/preview",
                f"csrf_token={csrf}&destination=lnbc1garbage",
                "application/x-www-form-urlencoded",
            ),
            (
                "/app/withdraw/preview",
                f"csrf_token={csrf}&destination=a@b@c&amount_sat=10",
                "application/x-www-form-urlencoded",
            ),
            (
                "/app/withdraw",
                f"csrf_token={csrf}&destination=&form_key=k",
                "application/x-www-form-urlencoded",
            ),
            (
                "/app/deposit",
                f"csrf_token={csrf}&amount_sat=99999999999999",
                "application/x-www-form-urlencoded",
            ),
            (
                "/app/pay/" + "x" * 40,
                f"csrf_token={csrf}&form_key=k",
                "application/x-www-form-urlencoded",
            ),
        ]
        for path, body, content_type in bodies:
            r = await alice.http.post(path, content=body, headers={"content-type": content_type})
            assert 400 <= r.status_code < 500, (path, body, r.status_code)
            assert r.headers["content-type"].startswith("text/html"), (path, body)
            assert 'class="alert error"' in r.text or "Not found" in r.text, (path, body)
        for path in ("/app/deposits/nope", "/app/withdrawals/../../etc", "/app/nothing/here"):
            assert (await alice.get(path)).status_code == 404
        for cursor in ("²", "١٢", "-1", "9" * 40):  # digits to Python, not to us
            assert (await alice.get("/app/history", cursor=cursor)).status_code == 200
    assert await available_msat(server.core, "alice") == 5_000_000


# --- money -----------------------------------------------------------------------------------


async def test_a_deposit_shows_its_invoice_and_turns_to_credited(server: LiveServer) -> None:
    wallet_user(server.core, "alice")
    async with Pages(server.url) as alice:
        await alice.sign_in("alice")
        await alice.get("/app/deposit")
        r = await alice.post(
            "/app/deposit",
            {"amount_sat": "2,100.5", "memo": "top up", "form_key": form_key_of(alice.last)},
        )
        assert r.status_code == 303
        page_path = r.headers["location"]
        r = await alice.get(page_path)
        assert r.status_code == 200 and "Deposit 2,100.5 sat" in r.text
        assert r.text.count("<svg") == 1
        bolt11 = re.search(r'id="bolt11"[^>]*>(ln[a-z0-9]+)<', r.text)
        assert bolt11 is not None
        status = await alice.get(page_path + "/status")
        assert status.json()["final"] is False
        await asyncio.to_thread(
            pay_from_wallet, server.core.config.simnet_dir, "carol", bolt11.group(1)
        )

        async def credited() -> bool:
            return bool((await alice.get(page_path + "/status")).json()["final"])

        await eventually(credited, what="the deposit credited")
        r = await alice.get(page_path)
        assert "Credited" in r.text and "2,100.5 sat" in r.text
    assert await available_msat(server.core, "alice") == 2_100_500


async def test_the_same_form_posted_twice_moves_money_once(server: LiveServer) -> None:
    wallet_user(server.core, "alice", 10_000_000)
    wallet_user(server.core, "bob")
    async with Pages(server.url) as alice:
        await alice.sign_in("alice")
        await alice.get("/app/send")
        send = {"to": "bob", "amount_sat": "1000", "memo": "lunch"}
        send["form_key"] = form_key_of(alice.last)
        first = await alice.post("/app/send", send)
        again = await alice.post("/app/send", {**send, "csrf_token": csrf_of(first.text)})
        assert first.status_code == again.status_code == 200
        assert "Sent 1,000 sat to bob" in again.text
        # The same key with another amount is not the same form: refused, nothing moves.
        other = await alice.post("/app/send", {**send, "amount_sat": "2000"})
        assert other.status_code == 409
    assert await available_msat(server.core, "bob") == 1_000_000


async def test_a_withdrawal_is_previewed_then_confirmed_and_followed(server: LiveServer) -> None:
    wallet_user(server.core, "alice", 50_000_000)
    bolt11 = wallet_invoice(server.core.config.simnet_dir, "carol", 7_000_000, memo="rent")
    async with Pages(server.url) as alice:
        await alice.sign_in("alice")
        await alice.get("/app/withdraw")
        r = await alice.post("/app/withdraw/preview", {"destination": f"lightning:{bolt11}"})
        assert r.status_code == 200
        preview = r.text
        assert "Withdraw 7,000 sat" in preview and "rent" in preview
        assert "Left of today's limit" in preview
        assert await available_msat(server.core, "alice") == 50_000_000  # a preview holds nothing
        fields = {
            "destination": bolt11,
            "amount_sat": "",
            "form_key": form_key_of(preview),
        }
        r = await alice.post("/app/withdraw", fields)
        assert r.status_code == 303
        page = r.headers["location"]
        again = await alice.post("/app/withdraw", {**fields, "csrf_token": csrf_of(preview)})
        assert again.headers["location"] == page  # one withdrawal, however often it is sent

        async def sent() -> bool:
            return bool((await alice.get(page + "/status")).json()["status"] == "succeeded")

        await eventually(sent, what="the withdrawal sent")
        assert "Sent" in (await alice.get(page)).text
    assert await available_msat(server.core, "alice") < 50_000_000 - 7_000_000 + 1


async def test_with_totp_on_a_withdrawal_needs_a_fresh_code(server: LiveServer) -> None:
    wallet_user(server.core, "alice", 50_000_000)
    async with Pages(server.url) as alice:
        await alice.sign_in("alice")
        await alice.get("/app/settings")
        r = await alice.post("/app/settings/totp", {}, follow=True)
        secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', r.text)
        assert secret is not None
        confirm = {"password": PASSWORD, "totp": "000000"}
        r = await alice.post("/app/settings/totp/confirm", confirm)
        assert r.status_code == 401 and "not the app" in r.text
        confirm = {"password": PASSWORD, "totp": code(secret.group(1))}
        r = await alice.post("/app/settings/totp/confirm", confirm)
        assert r.status_code == 200 and "Two-factor codes are on" in r.text

        bolt11 = wallet_invoice(server.core.config.simnet_dir, "carol", 1_000_000)
        r = await alice.post("/app/withdraw/preview", {"destination": bolt11})
        assert 'name="totp"' in r.text
        fields = {"destination": bolt11, "form_key": form_key_of(r.text)}
        r = await alice.post("/app/withdraw", fields)
        assert r.status_code == 401 and "enter the code" in r.text
        # The code that turned TOTP on was used: it cannot be used again.
        r = await alice.post("/app/withdraw", {**fields, "totp": code(secret.group(1))})
        assert r.status_code == 401
        assert await available_msat(server.core, "alice") == 50_000_000
        r = await alice.post(
            "/app/withdraw", {**fields, "totp": code(secret.group(1), steps_ahead=1)}
        )
        assert r.status_code == 303
        # A new sign-in asks for the code too.
        async with Pages(server.url) as again:
            r = await again.sign_in("alice")
            assert r.status_code == 401 and 'name="totp"' in r.text


# --- the console -----------------------------------------------------------------------------


async def test_the_console_is_absent_from_the_public_listener(server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        for path in ("/console/", "/console/login", "/console/reviews"):
            assert (await http.get(path)).status_code == 404
        assert (await http.post("/console/login", data={})).status_code in (404, 405)
    async with httpx.AsyncClient(base_url=server.admin_url) as http:
        assert (await http.get("/console/login")).status_code == 200
        assert (await http.get("/app/login")).status_code == 404


async def test_operators_need_totp_and_wallet_users_cannot_sign_in(server: LiveServer) -> None:
    secret = operator(server.core)
    wallet_user(server.core, "alice")
    async with Pages(server.admin_url, "/console/") as console:
        r = await console.sign_in("ops", OPERATOR_PASSWORD)
        assert r.status_code == 401 and "enter the code" in r.text
        r = await console.sign_in("alice", PASSWORD, code(secret))
        assert r.status_code == 401
        r = await console.sign_in("ops", OPERATOR_PASSWORD, code(secret))
        assert r.status_code == 303 and r.headers["location"] == "/console/"
        assert (await console.get("/console/")).status_code == 200
    # A wallet session never opens the console (its own cookie and realm).
    async with Pages(server.url) as alice:
        await alice.sign_in("alice")
        async with Pages(server.admin_url, "/console/") as stolen:
            stolen.http.cookies.set("lngate_console", alice.http.cookies["lngate_session"])
            assert (await stolen.get("/console/")).status_code == 303


async def test_an_operator_approves_a_withdrawal_under_review_and_it_is_sent(
    config: Config,
) -> None:
    withdrawals = dataclasses.replace(config.withdrawals, review_above_msat=5_000_000)
    with started_core(dataclasses.replace(config, withdrawals=withdrawals)) as core:
        wallet_user(core, "alice", 50_000_000)
        secret = operator(core)
        with LiveServer(core, admin=True) as server:
            bolt11 = wallet_invoice(core.config.simnet_dir, "carol", 8_000_000)
            async with Pages(server.url) as alice, Pages(server.admin_url, "/console/") as ops:
                await alice.sign_in("alice")
                await alice.get("/app/withdraw")
                r = await alice.post("/app/withdraw/preview", {"destination": bolt11})
                assert "An operator approves" in r.text
                r = await alice.post(
                    "/app/withdraw", {"destination": bolt11, "form_key": form_key_of(r.text)}
                )
                page = r.headers["location"]
                assert (await alice.get(page + "/status")).json()["status"] == "review"

                await ops.sign_in("ops", OPERATOR_PASSWORD, code(secret))
                r = await ops.get("/console/reviews")
                withdrawal_id = page.rsplit("/", 1)[1]
                assert (
                    f'id="review-{withdrawal_id}"' in r.text
                    and '8,000 sat</span> by <a href="/console/users/alice">alice</a>' in r.text
                )
                r = await ops.post(f"/console/reviews/{withdrawal_id}/approve", {"reason": ""})
                assert r.status_code == 400 and "give a reason" in r.text
                r = await ops.post(
                    f"/console/reviews/{withdrawal_id}/approve",
                    {"reason": "known customer"},
                    follow=True,
                )
                assert "Approved" in r.text and f"review-{withdrawal_id}" not in r.text

                async def sent() -> bool:
                    state = (await alice.get(page + "/status")).json()
                    return bool(state["status"] == "succeeded")

                await eventually(sent, what="the approved withdrawal sent")
                again = await ops.post(
                    f"/console/reviews/{withdrawal_id}/reject", {"reason": "too late"}
                )
                assert again.status_code == 404
        approvals = [a for a in (await audit_records(core)) if a.action == "withdrawal.approve"]
        assert [(a.actor, a.reason) for a in approvals] == [("operator:ops", "known customer")]


async def test_the_console_halts_freezes_reconciles_and_verifies_the_audit_chain(
    server: LiveServer,
) -> None:
    secret = operator(server.core)
    wallet_user(server.core, "alice", 1_000_000)
    async with Pages(server.admin_url, "/console/") as ops:
        await ops.sign_in("ops", OPERATOR_PASSWORD, code(secret))
        await ops.get("/console/")
        r = await ops.post("/console/halt", {"reason": "incident 7"}, follow=True)
        assert "Withdrawals are halted" in r.text and "incident 7" in r.text
        r = await ops.post(
            "/console/resume", {"reason": "fixed", "acknowledge_shortfall_msat": "x"}
        )
        assert r.status_code == 400
        r = await ops.post("/console/resume", {"reason": "fixed"}, follow=True)
        assert "running again" in r.text

        r = await ops.get("/console/users", q="ali")
        assert '<a href="/console/users/alice">alice</a>' in r.text and "1,000 sat" in r.text
        await ops.get("/console/users/alice")
        r = await ops.post("/console/users/alice/freeze", {"reason": "fraud check"}, follow=True)
        assert "The account is frozen" in r.text and 'id="user-status">frozen' in r.text
        r = await ops.post("/console/users/nobody/freeze", {"reason": "x"})
        assert r.status_code == 404

        await ops.get("/console/reconciliation")
        r = await ops.post("/console/reconciliation", {}, follow=True)
        assert "Reconciliation ran" in r.text and "Latest: <strong>OK</strong>" in r.text

        assert (await ops.get("/console/treasury")).status_code == 200
        r = await ops.get("/console/audit")
        assert "operator:ops" in r.text and "fraud check" in r.text
        r = await ops.post("/console/audit/verify", {})
        assert 'id="verified"' in r.text and "is intact" in r.text
    actions = [(a.action, a.actor) for a in (await audit_records(server.core))]
    for action in ("withdrawals.halt", "withdrawals.resume", "user.freeze"):
        assert (action, "operator:ops") in actions, action
    assert ("console.sign_in", "operator:ops") in actions


# --- paying an order from the balance --------------------------------------------------------


async def test_the_checkout_page_offers_the_balance_and_paying_it_is_done_once(
    server: LiveServer,
) -> None:
    wallet_user(server.core, "alice", 30_000_000)
    shop = accounts_for(server.core).create_user_sync("shop", Role.MERCHANT)
    async with AsyncClient(server.url, shop.api_key, shop.api_secret) as c:
        r = await c.post(
            "/v1/orders",
            {"merchant_order_id": "cart-9", "amount_msat": 12_000_000, "description": "tea"},
        )
        order = r.json()
    async with Pages(server.url) as alice:
        r = await alice.get(f"/pay/{order['id']}")
        assert f'href="/app/pay/{order["id"]}"' in r.text
        r = await alice.get(f"/app/pay/{order['id']}")
        assert r.headers["location"] == f"/app/login?next=/app/pay/{order['id']}"
        await alice.get(r.headers["location"])
        r = await alice.post(
            "/app/login",
            {"username": "alice", "password": PASSWORD, "next": f"/app/pay/{order['id']}"},
        )
        assert r.headers["location"] == f"/app/pay/{order['id']}"
        r = await alice.get(r.headers["location"])
        assert "Pay 12,000 sat" in r.text and "30,000 sat" in r.text
        form = {"form_key": form_key_of(r.text)}
        r = await alice.post(f"/app/pay/{order['id']}", form)
        assert r.status_code == 303 and r.headers["location"] == f"/pay/{order['id']}"
        again = await alice.post(
            f"/app/pay/{order['id']}", {**form, "csrf_token": csrf_of(alice.last)}
        )
        assert again.status_code == 303  # the same form: its first answer, nothing moves
        r = await alice.get(f"/app/pay/{order['id']}")
        assert "there is nothing to pay" in r.text
        fresh = await alice.post(f"/app/pay/{order['id']}", {"form_key": "another form"})
        assert fresh.status_code == 409 and "not open" in fresh.text
    assert await available_msat(server.core, "alice") == 18_000_000
    assert await available_msat(server.core, "shop") == 12_000_000


async def test_sign_in_never_sends_the_browser_to_another_site(server: LiveServer) -> None:
    wallet_user(server.core, "alice")
    async with Pages(server.url) as alice:
        await alice.get("/app/login")
        for target in (
            "https://evil.example/",
            "//evil.example/",
            "/\\evil.example",
            "/v1/account",
        ):
            r = await alice.post(
                "/app/login", {"username": "alice", "password": PASSWORD, "next": target}
            )
            assert r.headers["location"] == "/app/", target
            await alice.get("/app/")
            await alice.post("/app/logout", {})
            await alice.get("/app/login")


async def test_a_live_stream_ends_when_its_session_does_and_is_capped_per_user(
    server: LiveServer,
) -> None:
    wallet_user(server.core, "alice", 1_000)
    async with Pages(server.url) as alice:
        await alice.sign_in("alice")
        await alice.get("/app/")
        streams = [alice.http.stream("GET", "/app/balance/events") for _ in range(5)]
        opened = [await s.__aenter__() for s in streams]
        try:
            assert all(r.status_code == 200 for r in opened)
            sixth = await alice.http.get("/app/balance/events")
            assert sixth.status_code == 429 and sixth.json()["error"]["code"] == "TOO_MANY_STREAMS"
            lines = opened[0].aiter_lines()
            first = [line async for line in _until_blank(lines)]
            assert any('"available":"1"' in line for line in first)
            await alice.post("/app/logout", {})
            async with asyncio.timeout(10):
                rest = [line async for line in lines]
            assert any('"session":"ended"' in line for line in rest)
        finally:
            for s in streams:
                await s.__aexit__(None, None, None)


async def _until_blank(lines: AsyncIterator[str]) -> AsyncIterator[str]:
    """One event's lines (after the retry line)."""
    seen_data = False
    async for line in lines:
        yield line
        if line.startswith("data: "):
            seen_data = True
        elif seen_data and not line:
            return


async def test_history_is_paged_newest_first(server: LiveServer) -> None:
    wallet_user(server.core, "alice")
    accounts = accounts_for(server.core)
    for i in range(1, 26):
        accounts.adjust_sync("alice", i * 1_000, reason=f"credit {i}", actor="test")
    async with Pages(server.url) as alice:
        await alice.sign_in("alice")
        first = await alice.get("/app/history")
        assert first.text.count('class="entry ') == 20
        assert first.text.index("credit 25") < first.text.index("credit 6")
        assert "credit 5<" not in first.text
        older = re.search(r'href="/app/history\?cursor=([0-9]+)" rel="next"', first.text)
        assert older is not None
        second = await alice.get("/app/history", cursor=older.group(1))
        assert second.text.count('class="entry ') == 5
        assert "credit 5<" in second.text and "credit 1<" in second.text
        assert 'rel="next"' not in second.text
