"""``GET /pay/{id}/events``: the order's status as Server-Sent Events.

One event at once, then one on each change, until a final status. The order is read again
when this process commits something (the wake-up) or every ``POLL_S`` (another process's
commit), never more often than ``MIN_GAP_S``: a busy exchange commits thousands of times a
second and each open page must not read the database on each. A stream lasts at most
``LIFETIME_S`` (the browser's EventSource reconnects on its own), so connections cannot pile
up, and a comment every ``HEARTBEAT_S`` keeps proxies from closing an idle one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import orjson

from lngate.domain.errors import NotFound
from lngate.services.order_records import CheckoutView
from lngate.services.ports import Wakeup
from lngate.web.checkout_view import FINAL_STATUSES, status_json

POLL_S = 1.0
MIN_GAP_S = 0.2
HEARTBEAT_S = 15.0
LIFETIME_S = 300.0
RETRY_MS = 3_000  # how long EventSource waits before it reconnects


def status_event(order: CheckoutView) -> bytes:
    return b"event: status\ndata: " + orjson.dumps(status_json(order)) + b"\n\n"


async def follow(
    read: Callable[[], Awaitable[CheckoutView]],
    first: CheckoutView,
    wakeup: Wakeup,
    disconnected: Callable[[], Awaitable[bool]],
    *,
    lifetime_s: float = LIFETIME_S,
) -> AsyncIterator[bytes]:
    """The event stream of one order, starting from ``first`` (already read)."""
    yield f"retry: {RETRY_MS}\n\n".encode() + status_event(first)
    last = (first.status, first.paid_at)
    if first.status in FINAL_STATUSES:
        return
    started = last_read = last_sent = time.monotonic()
    while time.monotonic() - started < lifetime_s:
        await wakeup.wait(POLL_S)
        gap = MIN_GAP_S - (time.monotonic() - last_read)
        if gap > 0:
            await asyncio.sleep(gap)
        if await disconnected():
            return
        last_read = time.monotonic()
        try:
            order = await read()
        except NotFound:  # it cannot vanish; if it did, there is nothing more to say
            return
        if (order.status, order.paid_at) != last:
            last = (order.status, order.paid_at)
            yield status_event(order)
            last_sent = time.monotonic()
            if order.status in FINAL_STATUSES:
                return
        elif time.monotonic() - last_sent >= HEARTBEAT_S:
            yield b": heartbeat\n\n"
            last_sent = time.monotonic()
