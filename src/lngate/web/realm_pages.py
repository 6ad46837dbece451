"""What the wallet's and the console's pages share: their router with sign-in and sign-out,
rendering with the session's CSRF token, a POST's session and checked form, and a refusal
shown on the page it came from with the API's message and status."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from lngate.domain.errors import LngateError
from lngate.services.web_logins import WebSession
from lngate.web.forms import Form, read_form
from lngate.web.login_flow import LoginFlow
from lngate.web.pages import Pages, page_route
from lngate.web.sessions import Gate, check_csrf

StatusOf = Callable[[LngateError], int]


class RealmPages(ABC):
    def __init__(self, pages: Pages, gate: Gate, status_of: StatusOf) -> None:
        self.pages = pages
        self.gate = gate
        self.logins = gate.logins
        self.status_of = status_of
        self.login = LoginFlow(pages, gate, status_of)

    def render(
        self,
        template: str,
        session: WebSession | None,
        *,
        nav: str = "",
        status_code: int = 200,
        error: str | None = None,
        notice: str | None = None,
        **context: Any,
    ) -> HTMLResponse:
        return self.pages.render(
            template,
            status_code=status_code,
            session=session,
            csrf=session.csrf_token if session else "",
            nav=nav,
            error=error,
            notice=notice,
            **context,
        )

    def answer(
        self,
        template: str,
        session: WebSession | None,
        refusal: LngateError | None,
        **context: Any,
    ) -> HTMLResponse:
        """``template``; with a refusal, its message and the API's status for it."""
        if refusal is None:
            return self.render(template, session, **context)
        return self.render(
            template,
            session,
            status_code=self.status_of(refusal),
            error=refusal.message,
            **context,
        )

    async def signed_in(self, request: Request) -> WebSession | None:
        return await self.gate.session(request)

    async def posted(self, request: Request) -> tuple[WebSession | None, Form]:
        """The session and the form of a POST, its CSRF token checked (403 otherwise)."""
        session = await self.signed_in(request)
        form = await read_form(request)
        if session is not None:
            check_csrf(form, session.csrf_token)
        return session, form

    @abstractmethod
    def refused_page(self, exc: LngateError) -> Response:
        """A refusal no form can show again (a missing CSRF token, an unreadable form)."""

    def base_router(self, prefix: str) -> APIRouter:
        """The realm's router, with ``login`` (GET, POST) and ``logout`` (POST) on it."""
        r = APIRouter(
            prefix=prefix, include_in_schema=False, route_class=page_route(self.refused_page)
        )

        @r.get("/login")
        async def login_page(request: Request, next: str = "") -> Response:
            if await self.signed_in(request) is not None:
                return RedirectResponse(self.gate.safe_next(next), status_code=303)
            return self.login.form(request, next_path=next)

        @r.post("/login")
        async def login(request: Request) -> Response:
            return await self.login.sign_in(request)

        @r.post("/logout")
        async def logout(request: Request) -> Response:
            session, _form = await self.posted(request)
            if session is not None:
                await self.logins.sign_out(request.cookies.get(self.gate.cookie, ""))
            response = RedirectResponse(self.gate.login_path, status_code=303)
            self.gate.clear_session(response)
            return response

        return r
