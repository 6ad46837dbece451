"""``GET /pay/{id}/events``: the order's status as Server-Sent Events, in the rhythm of
``live.follow`` (an event at once, then on each change of status, until a final one)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import orjson

from lngate.domain.errors import NotFound
from lngate.services.order_records import CheckoutView
from lngate.services.ports import Wakeup
from lngate.web import live
from lngate.web.checkout_view import FINAL_STATUSES, status_json


def status_event(order: CheckoutView) -> bytes:
    return b"event: status\ndata: " + orjson.dumps(status_json(order)) + b"\n\n"


def follow(
    read: Callable[[], Awaitable[CheckoutView]],
    first: CheckoutView,
    wakeup: Wakeup,
    disconnected: Callable[[], Awaitable[bool]],
) -> AsyncIterator[bytes]:
    """The event stream of one order, starting from ``first`` (already read)."""

    async def read_order() -> CheckoutView | None:
        try:
            return await read()
        except NotFound:  # it cannot vanish; if it did, there is nothing more to say
            return None

    return live.follow(
        read_order,
        first,
        wakeup,
        disconnected,
        encode=status_event,
        key=lambda order: (order.status, order.paid_at),
        final=lambda order: order.status in FINAL_STATUSES,
    )
