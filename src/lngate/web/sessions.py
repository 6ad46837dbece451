"""The pages' sessions on the browser's side: the cookie, the CSRF token of every form, and
the gate a signed-in page goes through.

The cookie holds a random token (the database keeps its hash, ``services.web_logins``):
``HttpOnly`` (no script reads it), ``SameSite=Strict`` (no other site's page sends it) and
``Secure`` when the public URL is https. The wallet's and the console's cookies have their own
names and realms: browsers send cookies to every port of a host, and a wallet session must
never open the console. Before sign-in, the form's CSRF token is a random cookie of its own
(double submit); after, it is the session's.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import RedirectResponse, Response

from lngate.domain.errors import CsrfRefused
from lngate.services.web_logins import Realm, WebLogins, WebSession
from lngate.web.forms import Form

PRE_SESSION_COOKIE = "lngate_csrf"


@dataclass(frozen=True, slots=True)
class Gate:
    """The sessions of one realm, as its pages see them."""

    logins: WebLogins
    realm: Realm
    cookie: str  # the session cookie's name
    home: str  # where a signed-in user lands: "/app/"
    # The cookies' Secure flag: the public URL's scheme for the wallet; None: the request's
    # (the admin listener has no URL of its own and is often plain http on loopback).
    secure: bool | None
    max_age_s: int

    @property
    def login_path(self) -> str:
        return self.home + "login"

    async def session(self, request: Request) -> WebSession | None:
        token = request.cookies.get(self.cookie, "")
        return await self.logins.session(self.realm, token) if token else None

    def to_login(self, request: Request) -> RedirectResponse:
        """Sign in first, then back here (a GET's path only)."""
        target = self.login_path
        if request.method == "GET":
            target += "?next=" + quote(request.url.path, safe="/")
        return RedirectResponse(target, status_code=303)

    def safe_next(self, next_path: str) -> str:
        """Where to go after sign-in: one of our own paths, never another site."""
        allowed = (self.home, "/pay/") if self.realm is Realm.APP else (self.home,)
        if (
            next_path.startswith(allowed)
            and not next_path.startswith("//")
            and "\\" not in next_path
            and next_path.isascii()
            and len(next_path) <= 200
        ):
            return next_path
        return self.home

    def is_secure(self, request: Request) -> bool:
        return self.secure if self.secure is not None else request.url.scheme == "https"

    def set_session(self, request: Request, response: Response, token: str) -> None:
        response.set_cookie(
            self.cookie,
            token,
            max_age=self.max_age_s,
            path="/",
            httponly=True,
            secure=self.is_secure(request),
            samesite="strict",
        )
        response.delete_cookie(PRE_SESSION_COOKIE, path=self.login_path)

    def clear_session(self, response: Response) -> None:
        response.delete_cookie(self.cookie, path="/", httponly=True, samesite="strict")

    def pre_session_token(self, request: Request) -> tuple[str, bool]:
        """The sign-in form's CSRF token, and whether it is new (then set it on the answer)."""
        token = request.cookies.get(PRE_SESSION_COOKIE, "")
        if 20 <= len(token) <= 100:
            return token, False
        return secrets.token_urlsafe(24), True

    def set_pre_session(self, request: Request, response: Response, token: str) -> None:
        response.set_cookie(
            PRE_SESSION_COOKIE,
            token,
            max_age=3600,
            path=self.login_path,
            httponly=True,
            secure=self.is_secure(request),
            samesite="strict",
        )


def check_csrf(form: Form, expected: str) -> None:
    """403 ``CSRF_REFUSED`` unless the form carries ``expected``."""
    sent = form.get("csrf_token")
    if not expected or not sent or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise CsrfRefused("this form is not from this session: reload the page and try again")


def new_form_key() -> str:
    """The key a rendered money form is run once under (``services.wallet``)."""
    return secrets.token_urlsafe(18)
