"""The security headers of lngate's pages, set in one place for every page under a prefix.

Pages get a strict Content-Security-Policy (only lngate's own scripts, styles and images, no
inline code, no framing, forms post only to lngate); every answer under a page prefix, a JSON
status or an error from the framework too, is neither sniffed, cached nor given a referrer.
Static assets set their own long cache (``assets``).
"""

from __future__ import annotations

from collections.abc import Set
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# Every answer under a page prefix.
COMMON_HEADERS: dict[str, str] = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
# HTML documents besides.
PAGE_HEADERS: dict[str, str] = {
    **COMMON_HEADERS,
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
}


class PageHeaders:
    """Adds the headers to each response whose path starts with one of ``prefixes`` (read at
    each request: pages mounted later add theirs), keeping any the route set itself."""

    def __init__(self, app: ASGIApp, prefixes: Set[str]) -> None:
        self.app = app
        self.prefixes = prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not any(path.startswith(p) for p in self.prefixes):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": with_page_headers(message.get("headers", []))}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def with_page_headers(raw: list[Any]) -> list[Any]:
    """``raw`` (ASGI header pairs) with the page headers it lacks: the CSP for HTML only."""
    present = {bytes(name).lower() for name, _ in raw}
    content_type = next((bytes(v) for n, v in raw if bytes(n).lower() == b"content-type"), b"")
    wanted = PAGE_HEADERS if content_type.startswith(b"text/html") else COMMON_HEADERS
    added = [
        (name.lower().encode(), value.encode())
        for name, value in wanted.items()
        if name.lower().encode() not in present
    ]
    return [*raw, *added]
