"""The hosted checkout page of Pay: ``GET /pay/{id}``, its status as JSON and as SSE.

Public and unsigned: an order id is unguessable (``ord_`` + 26 base32 characters), and the
page shows only what a payer needs (``CheckoutView``: no metadata, no merchant ids). An id of
another shape is answered 404 without a read. Every answer under ``/pay/`` carries the page
headers (``headers``), and every refusal of a page is an HTML page, never a JSON body.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

import orjson
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, Response

from lngate.domain.errors import NotFound
from lngate.domain.orders import ORDER_ID
from lngate.services.clock import SYSTEM_CLOCK
from lngate.services.order_records import CheckoutView
from lngate.services.ports import Clock, Wakeup
from lngate.web import checkout_stream
from lngate.web.checkout_view import checkout_page, status_json
from lngate.web.live import EventStream
from lngate.web.pages import Pages, install

PREFIX = "/pay"
STREAMS_MAX = 1_000  # live pages per process; past it a page polls /status instead
_NOT_FOUND_JSON = orjson.dumps({"error": {"code": "NOT_FOUND", "message": "no such order"}})
_BUSY_JSON = orjson.dumps(
    {"error": {"code": "TOO_MANY_STREAMS", "message": "too many live pages; poll the status"}}
)


class CheckoutSource(Protocol):
    """Where the page reads an order (``services.orders.Orders`` in production)."""

    async def checkout(self, order_id: str) -> CheckoutView:
        """The order; ``NotFound`` for an unknown id."""
        ...


def mount_checkout(
    app: FastAPI,
    source: CheckoutSource,
    wakeup: Wakeup,
    *,
    clock: Clock = SYSTEM_CLOCK,
    balance_pay_url: str | None = None,
) -> None:
    """Serve the checkout page on ``app``: the routes, the assets and the page headers.
    ``wakeup`` fires on this process's commits (``core.commits``); ``balance_pay_url`` (the
    wallet's ``/app/pay/``), when the wallet is served, is offered to lngate's own users."""
    pages = install(app, PREFIX + "/")
    router = checkout_router(
        source, wakeup, pages=pages, clock=clock, balance_pay_url=balance_pay_url
    )
    app.include_router(router)


def checkout_router(
    source: CheckoutSource,
    wakeup: Wakeup,
    *,
    pages: Pages,
    clock: Clock = SYSTEM_CLOCK,
    balance_pay_url: str | None = None,
) -> APIRouter:
    router = APIRouter(prefix=PREFIX, include_in_schema=False)
    streams = asyncio.Semaphore(STREAMS_MAX)

    async def find(order_id: str) -> CheckoutView | None:
        if ORDER_ID.fullmatch(order_id) is None:
            return None  # not an order id: no read
        try:
            return await source.checkout(order_id)
        except NotFound:
            return None

    def not_found_page() -> HTMLResponse:
        return pages.render("checkout_not_found.html", status_code=404)

    @router.get("/{order_id}")
    async def checkout_html(order_id: str) -> Response:
        order = await find(order_id)
        if order is None:
            return not_found_page()
        return pages.render(
            "checkout.html",
            page=checkout_page(order, clock.now_ms()),
            balance_pay_url=balance_pay_url,
        )

    @router.get("/{order_id}/status")
    async def checkout_status(order_id: str) -> Response:
        order = await find(order_id)
        if order is None:
            return Response(_NOT_FOUND_JSON, status_code=404, media_type="application/json")
        return Response(orjson.dumps(status_json(order)), media_type="application/json")

    @router.get("/{order_id}/events")
    async def checkout_events(order_id: str, request: Request) -> Response:
        first = await find(order_id)
        if first is None:
            return Response(_NOT_FOUND_JSON, status_code=404, media_type="application/json")
        if streams.locked():  # the browser's script then polls /status
            return Response(_BUSY_JSON, status_code=503, media_type="application/json")
        await streams.acquire()  # not locked: taken at once, so a burst cannot overshoot
        events = checkout_stream.follow(
            lambda: source.checkout(order_id), first, wakeup, request.is_disconnected
        )
        return EventStream(events, on_close=streams.release)

    @router.get("/{anything:path}")
    async def checkout_unknown(anything: str) -> Response:
        return not_found_page()

    return router
