"""The web wallet, ``/app/`` on the public listener: sign in, balance, deposit, withdraw, send,
history, settings (TOTP), and paying an order from the balance.

Routes read the form, call one use case (``services.wallet``) and render its record; every
refusal shows the API's message with the API's status (``status_of``), and changes nothing.
Every POST carries the CSRF token of the page that rendered it (403 otherwise); a page that
needs a session sends the browser to the sign-in page and back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from lngate.domain.errors import InvalidRequest, LngateError, NotFound
from lngate.domain.orders import ORDER_ID
from lngate.services.clock import SYSTEM_CLOCK
from lngate.services.ports import Clock, Wakeup
from lngate.services.wallet import Wallet, WithdrawTo
from lngate.services.web_logins import Realm, WebLogins, WebSession
from lngate.web import live
from lngate.web.checkout_view import checkout_page
from lngate.web.formatting import sat_text, utc_text
from lngate.web.forms import Form, sat_to_msat, whole_number
from lngate.web.pages import Pages, install
from lngate.web.qr import text_qr_svg
from lngate.web.realm_pages import RealmPages, StatusOf
from lngate.web.sessions import Gate, new_form_key
from lngate.web.wallet_views import (
    balance_state,
    deposit_page,
    deposit_state,
    history_row,
    msat_title,
    withdrawal_state,
)

PREFIX = "/app"
STREAMS_MAX = 1_000  # live pages per process; past it a page polls instead
STREAMS_PER_USER = 5  # as the API's event streams per account
_SESSION_ENDED: live.State = {"fields": {}, "final": True, "session": "ended"}
_SIGN_IN_FIRST = orjson.dumps({"error": {"code": "UNAUTHORIZED", "message": "sign in first"}})


def mount_wallet(
    app: FastAPI,
    wallet: Wallet,
    logins: WebLogins,
    wakeup: Wakeup,
    *,
    status_of: StatusOf,
    secure_cookies: bool,
    session_max_s: int,
    clock: Clock = SYSTEM_CLOCK,
) -> None:
    pages = install(app, PREFIX + "/")
    gate = Gate(logins, Realm.APP, "lngate_session", PREFIX + "/", secure_cookies, session_max_s)
    app.include_router(WalletPages(pages, gate, wallet, wakeup, status_of, clock).router())


class WalletPages(RealmPages):
    def __init__(
        self,
        pages: Pages,
        gate: Gate,
        wallet: Wallet,
        wakeup: Wakeup,
        status_of: StatusOf,
        clock: Clock,
    ) -> None:
        super().__init__(pages, gate, status_of)
        self.wallet = wallet
        self.wakeup = wakeup
        self.clock = clock
        self.streams = asyncio.Semaphore(STREAMS_MAX)
        self.streams_of: dict[str, int] = {}  # live streams per user id

    # --- routes ------------------------------------------------------------------------------

    def router(self) -> APIRouter:
        r = self.base_router(PREFIX)

        @r.get("/")
        async def home(request: Request) -> Response:
            session = await self.signed_in(request)
            if session is None:
                return self.gate.to_login(request)
            account = await self.wallet.account(session)
            recent = await self.wallet.history(session, None)
            return self.render(
                "wallet_home.html",
                session,
                nav="home",
                account=account,
                available_sat=sat_text(account.available_msat),
                available_title=msat_title(account.available_msat),
                pending_sat=sat_text(account.pending_msat),
                pending_title=msat_title(account.pending_msat),
                recent=[history_row(e) for e in recent.entries[:5]],
            )

        @r.get("/balance/events")
        async def balance_events(request: Request) -> Response:
            return await self.stream(
                request, lambda s: _state(self.wallet.account(s), balance_state)
            )

        @r.get("/balance/status")
        async def balance_status(request: Request) -> Response:
            return await self.state(
                request, lambda s: _state(self.wallet.account(s), balance_state)
            )

        # --- deposits ---

        @r.get("/deposit")
        async def deposit_form(request: Request) -> Response:
            session = await self.signed_in(request)
            if session is None:
                return self.gate.to_login(request)
            return self.render("deposit_new.html", session, nav="deposit", **_deposit_form())

        @r.post("/deposit")
        async def deposit(request: Request) -> Response:
            session, form = await self.posted(request)
            if session is None:
                return self.gate.to_login(request)
            filled = _deposit_form(form)
            try:
                amount_msat = sat_to_msat(form.get("amount_sat"))
                record = await self.wallet.deposit(
                    session, amount_msat, form.get("memo"), form.get("form_key")
                )
            except LngateError as exc:
                return self.answer("deposit_new.html", session, exc, nav="deposit", **filled)
            return RedirectResponse(f"{PREFIX}/deposits/{record.id}", status_code=303)

        @r.get("/deposits/{deposit_id}")
        async def deposit_view(request: Request, deposit_id: str) -> Response:
            session = await self.signed_in(request)
            if session is None:
                return self.gate.to_login(request)
            try:
                record = await self.wallet.deposit_status(session, deposit_id)
            except NotFound:
                return self.not_found(session)
            page = deposit_page(record, self.clock.now_ms())
            return self.render("deposit.html", session, nav="deposit", page=page)

        @r.get("/deposits/{deposit_id}/events")
        async def deposit_events(request: Request, deposit_id: str) -> Response:
            return await self.stream(
                request,
                lambda s: _state(self.wallet.deposit_status(s, deposit_id), deposit_state),
            )

        @r.get("/deposits/{deposit_id}/status")
        async def deposit_status(request: Request, deposit_id: str) -> Response:
            return await self.state(
                request,
                lambda s: _state(self.wallet.deposit_status(s, deposit_id), deposit_state),
            )

        # --- withdrawals ---

        @r.get("/withdraw")
        async def withdraw_form(request: Request) -> Response:
            session = await self.signed_in(request)
            if session is None:
                return self.gate.to_login(request)
            return self.render("withdraw.html", session, nav="withdraw", destination="", amount="")

        @r.post("/withdraw/preview")
        async def withdraw_preview(request: Request) -> Response:
            session, form = await self.posted(request)
            if session is None:
                return self.gate.to_login(request)
            return await self.preview(session, form)

        @r.post("/withdraw")
        async def withdraw(request: Request) -> Response:
            session, form = await self.posted(request)
            if session is None:
                return self.gate.to_login(request)
            try:
                to = _withdraw_to(form)
                done = await self.wallet.withdraw(
                    session, to, form.get("totp"), form.get("form_key")
                )
            except LngateError as exc:
                return await self.preview(session, form, refusal=exc)
            return RedirectResponse(f"{PREFIX}/withdrawals/{done.id}", status_code=303)

        @r.get("/withdrawals/{withdrawal_id}")
        async def withdrawal_view(request: Request, withdrawal_id: str) -> Response:
            session = await self.signed_in(request)
            if session is None:
                return self.gate.to_login(request)
            try:
                w = await self.wallet.withdrawal(session, withdrawal_id)
            except NotFound:
                return self.not_found(session)
            return self.render(
                "withdrawal.html",
                session,
                nav="withdraw",
                w=w,
                state=withdrawal_state(w),
                amount_sat=sat_text(w.amount_msat),
                amount_title=msat_title(w.amount_msat),
                fee_sat=sat_text(w.exchange_fee_msat + (w.routing_fee_msat or 0)),
                created=utc_text(w.created_at),
            )

        @r.get("/withdrawals/{withdrawal_id}/events")
        async def withdrawal_events(request: Request, withdrawal_id: str) -> Response:
            return await self.stream(
                request,
                lambda s: _state(self.wallet.withdrawal(s, withdrawal_id), withdrawal_state),
            )

        @r.get("/withdrawals/{withdrawal_id}/status")
        async def withdrawal_status(request: Request, withdrawal_id: str) -> Response:
            return await self.state(
                request,
                lambda s: _state(self.wallet.withdrawal(s, withdrawal_id), withdrawal_state),
            )

        # --- transfers ---

        @r.get("/send")
        async def send_form(request: Request) -> Response:
            session = await self.signed_in(request)
            if session is None:
                return self.gate.to_login(request)
            return self.render("send.html", session, nav="send", **_send_form())

        @r.post("/send")
        async def send(request: Request) -> Response:
            session, form = await self.posted(request)
            if session is None:
                return self.gate.to_login(request)
            try:
                amount_msat = sat_to_msat(form.get("amount_sat"))
                if amount_msat is None:
                    raise InvalidRequest("enter an amount")
                receipt = await self.wallet.send(
                    session, form.get("to"), amount_msat, form.get("memo"), form.get("form_key")
                )
            except LngateError as exc:
                return self.answer("send.html", session, exc, nav="send", **_send_form(form))
            notice = f"Sent {sat_text(receipt.amount_msat)} sat to {receipt.to}."
            return self.render("send.html", session, nav="send", notice=notice, **_send_form())

        # --- history and settings ---

        @r.get("/history")
        async def history(request: Request, cursor: str = "") -> Response:
            session = await self.signed_in(request)
            if session is None:
                return self.gate.to_login(request)
            before = whole_number(cursor)
            page = await self.wallet.history(session, before)
            return self.render(
                "history.html",
                session,
                nav="history",
                rows=[history_row(e) for e in page.entries],
                next_cursor=page.next_cursor,
                first_page=before is None,
            )

        @r.get("/settings")
        async def settings(request: Request) -> Response:
            session = await self.signed_in(request)
            if session is None:
                return self.gate.to_login(request)
            return await self.settings_page(session)

        @r.post("/settings/totp")
        async def totp_start(request: Request) -> Response:
            session, _form = await self.posted(request)
            if session is None:
                return self.gate.to_login(request)
            try:
                await self.logins.start_totp(session)
            except LngateError as exc:
                return await self.settings_page(session, refusal=exc)
            return RedirectResponse(f"{PREFIX}/settings", status_code=303)

        @r.post("/settings/totp/confirm")
        async def totp_confirm(request: Request) -> Response:
            session, form = await self.posted(request)
            if session is None:
                return self.gate.to_login(request)
            try:
                await self.logins.confirm_totp(session, form.raw("password"), form.get("totp"))
            except LngateError as exc:
                return await self.settings_page(session, refusal=exc)
            fresh = await self.signed_in(request)
            return await self.settings_page(
                fresh or session, notice="Two-factor codes are on for sign-in and withdrawals."
            )

        # --- paying an order from the balance ---

        @r.get("/pay/{order_id}")
        async def pay_order_page(request: Request, order_id: str) -> Response:
            session = await self.signed_in(request)
            if session is None:
                return self.gate.to_login(request)
            return await self.pay_page(session, order_id)

        @r.post("/pay/{order_id}")
        async def pay_order(request: Request, order_id: str) -> Response:
            session, form = await self.posted(request)
            if session is None:
                return self.gate.to_login(request)
            try:
                await self.wallet.pay_order(
                    session, order_id, form.get("totp"), form.get("form_key")
                )
            except LngateError as exc:
                return await self.pay_page(session, order_id, refusal=exc)
            return RedirectResponse(f"/pay/{order_id}", status_code=303)

        @r.get("/{anything:path}")
        async def unknown(request: Request, anything: str) -> Response:
            return self.not_found(await self.signed_in(request))

        return r

    # --- pages with more than one way in -----------------------------------------------------

    async def preview(
        self, session: WebSession, form: Form, *, refusal: LngateError | None = None
    ) -> HTMLResponse:
        """The decoded withdrawal with its confirm form; or the first form with the refusal."""
        destination, amount = form.get("destination"), form.get("amount_sat")
        try:
            to = _withdraw_to(form)
            preview = await self.wallet.preview(session, to)
        except LngateError as exc:
            return self.answer(
                "withdraw.html",
                session,
                exc,
                nav="withdraw",
                destination=destination,
                amount=amount,
            )
        needs_code = session.totp_enabled and self.logins.totp_needed(preview.amount_msat)
        context: dict[str, Any] = {
            "nav": "withdraw",
            "p": preview,
            "destination": destination,
            "amount": amount,
            "amount_sat": sat_text(preview.amount_msat),
            "amount_title": msat_title(preview.amount_msat),
            "fee_sat": sat_text(preview.exchange_fee_msat),
            "reserve_sat": sat_text(preview.fee_reserve_msat),
            "total_sat": sat_text(preview.total_hold_msat),
            "available_sat": sat_text(preview.available_msat),
            "daily_left_sat": sat_text(preview.daily_left_msat),
            "expires": utc_text(preview.expires_at) if preview.expires_at else None,
            "needs_code": needs_code,
            "form_key": form.get("form_key") or new_form_key(),
        }
        return self.answer("withdraw_preview.html", session, refusal, **context)

    async def settings_page(
        self,
        session: WebSession,
        *,
        refusal: LngateError | None = None,
        notice: str | None = None,
    ) -> HTMLResponse:
        pending = None if session.totp_enabled else await self.logins.pending_totp(session)
        context: dict[str, Any] = {
            "nav": "settings",
            "pending": pending,
            "qr_svg": text_qr_svg(pending.provisioning_uri, "QR code to set up two-factor codes")
            if pending
            else None,
            "notice": notice,
        }
        return self.answer("settings.html", session, refusal, **context)

    async def pay_page(
        self, session: WebSession, order_id: str, *, refusal: LngateError | None = None
    ) -> HTMLResponse:
        if ORDER_ID.fullmatch(order_id) is None:
            return self.not_found(session)
        try:
            order = await self.wallet.order(order_id)
            account = await self.wallet.account(session)
        except NotFound:
            return self.not_found(session)
        context: dict[str, Any] = {
            "nav": "",
            "page": checkout_page(order, self.clock.now_ms()),
            "available_sat": sat_text(account.available_msat),
            "needs_code": session.totp_enabled and self.logins.totp_needed(order.amount_msat),
            "form_key": new_form_key(),
        }
        return self.answer("pay_order.html", session, refusal, **context)

    def not_found(self, session: WebSession | None) -> HTMLResponse:
        return self.render("wallet_not_found.html", session, status_code=404)

    def refused_page(self, exc: LngateError) -> Response:
        return self.render(
            "wallet_error.html", None, status_code=self.status_of(exc), error=exc.message
        )

    # --- live state --------------------------------------------------------------------------

    async def stream(
        self, request: Request, read: Callable[[WebSession], Awaitable[live.State]]
    ) -> Response:
        session = await self.signed_in(request)
        if session is None:
            return Response(_SIGN_IN_FIRST, status_code=401, media_type="application/json")
        try:
            first = await read(session)  # an unknown id is a 404 now, not an empty stream
        except NotFound:
            return _json_error(404, "NOT_FOUND", "not found")
        user_id = session.user_id
        if self.streams.locked() or self.streams_of.get(user_id, 0) >= STREAMS_PER_USER:
            return _json_error(429, "TOO_MANY_STREAMS", "too many live pages; poll the status")
        await self.streams.acquire()  # not locked: taken at once, so a burst cannot overshoot
        self.streams_of[user_id] = self.streams_of.get(user_id, 0) + 1
        token = request.cookies.get(self.gate.cookie, "")

        async def read_live() -> live.State:
            # Each read checks the session again: signed out, frozen or expired ends the
            # stream (a final state; the page then reloads to the sign-in page).
            current = await self.logins.session(self.gate.realm, token)
            return await read(current) if current is not None else _SESSION_ENDED

        def release() -> None:
            self.streams.release()
            left = self.streams_of.pop(user_id, 1) - 1
            if left:
                self.streams_of[user_id] = left

        try:
            events = live.follow_states(read_live, first, self.wakeup, request.is_disconnected)
            return live.EventStream(events, on_close=release)
        except BaseException:  # the response will never run: give the slots back now
            release()
            raise

    async def state(
        self, request: Request, read: Callable[[WebSession], Awaitable[live.State]]
    ) -> Response:
        session = await self.signed_in(request)
        if session is None:
            return Response(_SIGN_IN_FIRST, status_code=401, media_type="application/json")
        try:
            return Response(orjson.dumps(await read(session)), media_type="application/json")
        except NotFound:
            return _json_error(404, "NOT_FOUND", "not found")


async def _state(record: Awaitable[Any], to_state: Callable[[Any], live.State]) -> live.State:
    return to_state(await record)


def _json_error(status: int, code: str, message: str) -> Response:
    body = orjson.dumps({"error": {"code": code, "message": message}})
    return Response(body, status_code=status, media_type="application/json")


def _withdraw_to(form: Form) -> WithdrawTo:
    destination = form.get("destination")
    if not destination:
        raise InvalidRequest("paste a Lightning invoice or a Lightning Address")
    if destination.lower().startswith("lightning:"):
        destination = destination[len("lightning:") :]
    is_address = "@" in destination
    return WithdrawTo(
        bolt11=None if is_address else destination,
        lightning_address=destination if is_address else None,
        amount_msat=sat_to_msat(form.get("amount_sat")),
    )


def _deposit_form(form: Form | None = None) -> dict[str, Any]:
    return {
        "amount": form.get("amount_sat") if form else "",
        "memo": form.get("memo") if form else "",
        "form_key": (form.get("form_key") if form else "") or new_form_key(),
    }


def _send_form(form: Form | None = None) -> dict[str, Any]:
    return {
        "to": form.get("to") if form else "",
        "amount": form.get("amount_sat") if form else "",
        "memo": form.get("memo") if form else "",
        "form_key": (form.get("form_key") if form else "") or new_form_key(),
    }
