"""The base of lngate's server-rendered pages: one Jinja2 environment (autoescaped, strict
about undefined names), the static assets, and the security headers, installed once per app.

A page module (the checkout, later the wallet and the console) calls ``install(app, prefix)``
to get the app's ``Pages`` and renders with ``pages.render(...)``; its prefix is then covered
by the Content-Security-Policy and the other headers of ``headers``.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import jinja2
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.routing import APIRoute

from lngate.domain.errors import LngateError
from lngate.web.assets import Assets
from lngate.web.formatting import sat_text, utc_ms_text, utc_text
from lngate.web.headers import PAGE_HEADERS, PageHeaders

_STATE_KEY = "lngate_pages"


class Pages:
    """Renders the package's templates (``web/templates``) to HTML responses."""

    def __init__(self, assets: Assets) -> None:
        self.assets = assets
        self.prefixes: set[str] = set()  # the paths PageHeaders covers
        self.env = jinja2.Environment(
            loader=jinja2.PackageLoader("lngate.web", "templates"),
            autoescape=True,  # every value is escaped unless marked safe (only our own SVG is)
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.globals["asset_url"] = assets.url
        self.env.filters["sat"] = sat_text
        self.env.filters["msat"] = lambda amount_msat: f"{amount_msat:,} msat"
        self.env.filters["n"] = lambda count: f"{count:,}"  # whole numbers: sat, counts
        self.env.filters["when"] = utc_text
        self.env.filters["when_ms"] = utc_ms_text

    def render_text(self, template: str, **context: Any) -> str:
        return self.env.get_template(template).render(**context)

    def render(self, template: str, *, status_code: int = 200, **context: Any) -> HTMLResponse:
        return HTMLResponse(
            self.render_text(template, **context), status_code=status_code, headers=PAGE_HEADERS
        )


def page_route(on_refusal: Callable[[LngateError], Response]) -> type[APIRoute]:
    """A route class whose handlers answer a refusal they did not render themselves (a
    missing CSRF token, an unreadable form) as a page, not as the API's JSON."""

    class PageRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def answer(request: Request) -> Response:
                try:
                    return await handler(request)
                except LngateError as exc:
                    return on_refusal(exc)

            return answer

    return PageRoute


def install(app: FastAPI, prefix: str) -> Pages:
    """The app's pages (made, with the assets route and the headers middleware, by the first
    call); ``prefix`` (``/pay/``) gets the page headers on every answer."""
    pages: Pages | None = getattr(app.state, _STATE_KEY, None)
    if pages is None:
        pages = Pages(Assets.load())
        setattr(app.state, _STATE_KEY, pages)
        app.include_router(pages.assets.router())
        app.add_middleware(PageHeaders, prefixes=pages.prefixes)
    pages.prefixes.add(prefix)
    return pages
