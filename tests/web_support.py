"""A page-level client for the wallet and the console: a cookie jar, the CSRF token of the page
last seen, and the forms people post (URL-encoded, as browsers send them)."""

from __future__ import annotations

import html
import re
import time
from typing import Any

import httpx

from lngate.security import totp

_CSRF = re.compile(r'name="csrf_token" value="([^"]*)"')
_FORM_KEY = re.compile(r'name="form_key" value="([^"]*)"')
PASSWORD = "correct horse battery staple"


def csrf_of(page: str) -> str:
    match = _CSRF.search(page)
    if match is None:
        raise AssertionError("the page has no form with a CSRF token")
    return html.unescape(match.group(1))


def form_key_of(page: str) -> str:
    match = _FORM_KEY.search(page)
    if match is None:
        raise AssertionError("the page has no money form")
    return match.group(1)


def code(secret: str, *, steps_ahead: int = 0) -> str:
    """The authenticator app's code now, or ``steps_ahead`` steps on (one step of drift is
    allowed): a second code in one test need not wait for the clock to tick."""
    return totp.code_at(secret, int(time.time()) + steps_ahead * totp.STEP_S)


class Pages:
    """One browser's view of a listener: ``home`` is ``/app/`` or ``/console/``."""

    def __init__(self, base_url: str, home: str = "/app/") -> None:
        self.http = httpx.AsyncClient(base_url=base_url, follow_redirects=False, timeout=20)
        self.home = home
        self.last = ""

    async def __aenter__(self) -> Pages:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()

    async def get(self, path: str, **params: Any) -> httpx.Response:
        r = await self.http.get(path, params=params or None)
        if r.headers.get("content-type", "").startswith("text/html"):
            self.last = r.text
        return r

    async def post(
        self, path: str, fields: dict[str, str], *, csrf: bool = True, follow: bool = False
    ) -> httpx.Response:
        body = dict(fields)
        if csrf and "csrf_token" not in body:
            body["csrf_token"] = csrf_of(self.last)
        r = await self.http.post(path, data=body)
        if follow and r.status_code == 303:
            r = await self.get(r.headers["location"])
        elif r.headers.get("content-type", "").startswith("text/html"):
            self.last = r.text
        return r

    async def sign_in(
        self, username: str, password: str = PASSWORD, totp: str = ""
    ) -> httpx.Response:
        await self.get(self.home + "login")
        fields = {"username": username, "password": password, "next": ""}
        if totp:
            fields["totp"] = totp
        return await self.post(self.home + "login", fields)
