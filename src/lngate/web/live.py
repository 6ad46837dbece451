"""Live parts of the wallet's pages over Server-Sent Events: a balance, a deposit, a withdrawal.

The same rhythm as the checkout's stream (``checkout_stream``): the state at once, then again
on each change until it is final; read when this process commits (the wake-up) or every
``POLL_S``, never more often than ``MIN_GAP_S``; a heartbeat comment keeps proxies patient and
a stream ends after ``LIFETIME_S`` (EventSource reconnects by itself).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from lngate.services.ports import Wakeup

POLL_S = 1.0
MIN_GAP_S = 0.2
HEARTBEAT_S = 15.0
LIFETIME_S = 300.0
RETRY_MS = 3_000

State = dict[str, Any]  # {"fields": {name: text}, "final": bool, ...}: what the page's script reads


def state_event(state: State) -> bytes:
    return b"event: state\ndata: " + orjson.dumps(state) + b"\n\n"


async def follow(
    read: Callable[[], Awaitable[State]],
    wakeup: Wakeup,
    disconnected: Callable[[], Awaitable[bool]],
    *,
    lifetime_s: float = LIFETIME_S,
) -> AsyncIterator[bytes]:
    last = await read()
    yield f"retry: {RETRY_MS}\n\n".encode() + state_event(last)
    if last.get("final"):
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
        state = await read()
        if state != last:
            last = state
            yield state_event(state)
            last_sent = time.monotonic()
            if state.get("final"):
                return
        elif time.monotonic() - last_sent >= HEARTBEAT_S:
            yield b": heartbeat\n\n"
            last_sent = time.monotonic()


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
