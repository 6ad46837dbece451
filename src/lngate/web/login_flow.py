"""Signing in to a realm's pages (the wallet's or the console's): the form, its pre-session
CSRF token, and the sign-in itself, which asks for a code when the account has TOTP."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from lngate.domain.errors import LngateError, TotpRequired
from lngate.services.web_logins import Realm
from lngate.web.forms import read_form
from lngate.web.pages import Pages
from lngate.web.sessions import Gate, check_csrf


class LoginFlow:
    def __init__(self, pages: Pages, gate: Gate, status_of: Callable[[LngateError], int]) -> None:
        self.pages = pages
        self.gate = gate
        self.status_of = status_of

    def form(
        self,
        request: Request,
        *,
        next_path: str = "",
        username: str = "",
        ask_code: bool = False,
        refusal: LngateError | None = None,
    ) -> HTMLResponse:
        token, new = self.gate.pre_session_token(request)
        response = self.pages.render(
            "login.html",
            status_code=self.status_of(refusal) if refusal else 200,
            session=None,
            csrf=token,
            nav="",
            error=refusal.message if refusal else None,
            notice=None,
            action=self.gate.login_path,
            next_path=self.gate.safe_next(next_path),
            username=username,
            ask_code=ask_code,
            console=self.gate.realm is Realm.CONSOLE,
        )
        if new:
            self.gate.set_pre_session(request, response, token)
        return response

    async def sign_in(self, request: Request) -> Response:
        """A session and a redirect to where the user was going; or the form again, with the
        refusal (403 without the form's CSRF token, 429 once the account waits)."""
        form = await read_form(request)
        expected, new = self.gate.pre_session_token(request)
        check_csrf(form, "" if new else expected)
        username, next_path = form.get("username").lower(), form.get("next")
        try:
            done = await self.gate.logins.sign_in(
                self.gate.realm, username, form.raw("password"), form.get("totp")
            )
        except TotpRequired as exc:
            return self.form(
                request, next_path=next_path, username=username, ask_code=True, refusal=exc
            )
        except LngateError as exc:
            ask_code = bool(form.get("totp"))
            return self.form(
                request, next_path=next_path, username=username, ask_code=ask_code, refusal=exc
            )
        response = RedirectResponse(self.gate.safe_next(next_path), status_code=303)
        self.gate.set_session(request, response, done.token)
        return response
