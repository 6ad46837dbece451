"""Live pages over Server-Sent Events: the one rhythm every page stream follows (the checkout's
order, the wallet's balance, deposits and withdrawals).

One event at once, then one on each change, until a final state. The record is read again
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
from typing import Any, TypeVar

import orjson
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from lngate.services.ports import Wakeup

POLL_S = 1.0
MIN_GAP_S = 0.2
HEARTBEAT_S = 15.0
LIFETIME_S = 300.0
RETRY_MS = 3_000  # how long EventSource waits before it reconnects

T = TypeVar("T")
State = dict[
    str, Any
]  # {"fields": {name: text}, "final": bool, ...}: what the wallet's script reads


def state_event(state: State) -> bytes:
    return b"event: state\ndata: " + orjson.dumps(state) + b"\n\n"


async def follow(
    read: Callable[[], Awaitable[T | None]],
    first: T,
    wakeup: Wakeup,
    disconnected: Callable[[], Awaitable[bool]],
    *,
    encode: Callable[[T], bytes],
    key: Callable[[T], object],  # what a change is a change of
    final: Callable[[T], bool],
    lifetime_s: float = LIFETIME_S,
) -> AsyncIterator[bytes]:
    """The events of one record, starting from ``first`` (already read): ``encode`` each one
    whose ``key`` changed, until it is ``final``; ``read`` answering None (the record is gone)
    ends the stream."""
    yield f"retry: {RETRY_MS}\n\n".encode() + encode(first)
    if final(first):
        return
    last = key(first)
    started = last_read = last_sent = time.monotonic()
    while time.monotonic() - started < lifetime_s:
        await wakeup.wait(POLL_S)
        gap = MIN_GAP_S - (time.monotonic() - last_read)
        if gap > 0:
            await asyncio.sleep(gap)
        if await disconnected():
            return
        last_read = time.monotonic()
        record = await read()
        if record is None:
            return
        if key(record) != last:
            last = key(record)
            yield encode(record)
            last_sent = time.monotonic()
            if final(record):
                return
        elif time.monotonic() - last_sent >= HEARTBEAT_S:
            yield b": heartbeat\n\n"
            last_sent = time.monotonic()


def follow_states(
    read: Callable[[], Awaitable[State]],
    first: State,
    wakeup: Wakeup,
    disconnected: Callable[[], Awaitable[bool]],
) -> AsyncIterator[bytes]:
    """``follow`` for the wallet's pages: each state whole is the event and the key."""
    return follow(
        read,
        first,
        wakeup,
        disconnected,
        encode=state_event,
        key=lambda state: state,
        final=lambda state: bool(state.get("final")),
    )


class EventStream(StreamingResponse):
    """An SSE response that calls ``on_close`` once it ends, however it ends (even if it
    never started: a client gone before the first byte still gives its slot back)."""

    def __init__(self, content: AsyncIterator[bytes], on_close: Callable[[], None]) -> None:
        super().__init__(
            content, media_type="text/event-stream", headers={"X-Accel-Buffering": "no"}
        )
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._on_close()
