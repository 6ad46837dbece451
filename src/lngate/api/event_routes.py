"""Live account events over Server-Sent Events, signed like every /v1 call."""

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from lngate.api.auth import Authenticator, Caller
from lngate.api.json_body import JsonRoute
from lngate.api.openapi import error_responses
from lngate.api.params import QueryInt
from lngate.api.responses import MAX_SEQ
from lngate.domain.errors import TooManyStreams
from lngate.domain.inputs import ascii_uint
from lngate.services.account_events import AccountEvents

STREAMS_MAX = 1_000
KEEPALIVE_S = 15.0
POLL_S = 0.5  # events written by other processes are found within this long
BATCH = 100

# One event of the stream (OpenAPI 3.1 has the media type's schema describe each event).
EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "event", "data"],
    "properties": {
        "id": {"type": "string", "pattern": "^[0-9]+$", "description": "resume after it"},
        "event": {
            "type": "string",
            "description": "deposit.settled, deposit.expired, deposit.cancelled, transfer.sent, "
            "transfer.received, withdrawal.review, withdrawal.succeeded, withdrawal.failed, "
            "withdrawal.rejected",
        },
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "contentSchema": {
                "type": "object",
                "required": ["type", "data"],
                "properties": {
                    "type": {"type": "string", "description": "the event's name again"},
                    "data": {
                        "type": "object",
                        "description": "the deposit, transfer or withdrawal, as its own "
                        "endpoint answers it",
                    },
                },
            },
        },
    },
}


def event_router(events: AccountEvents, auth: Authenticator, *, streams_per_user: int) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["events"], route_class=JsonRoute)
    Authed = Annotated[Caller, Depends(auth)]
    slots = asyncio.Semaphore(STREAMS_MAX)  # this process's streams, all users
    per_user_max = streams_per_user
    open_per_user: Counter[str] = Counter()

    @router.get(
        "/events",
        response_class=StreamingResponse,
        responses={
            200: {
                "description": "A stream of Server-Sent Events, one per account event",
                "content": {"text/event-stream": {"schema": EVENT_SCHEMA}},
            },
            **error_responses(429),
        },
    )
    async def stream_events(
        request: Request,
        caller: Authed,
        after: Annotated[
            QueryInt | None, Query(ge=0, le=MAX_SEQ, description="resume after this event id")
        ] = None,
        last_event_id: Annotated[
            str | None,
            Header(
                alias="Last-Event-ID",
                description="what a reconnecting EventSource sends: resume after this id",
                json_schema_extra={"pattern": "^[0-9]{1,18}$"},
            ),
        ] = None,
    ) -> Any:
        """``deposit.settled``, ``deposit.expired``, ``transfer.sent``, ``transfer.received``,
        ``withdrawal.*``. Without ``after`` (or ``Last-Event-ID``) the stream starts now."""
        resumed = None
        if last_event_id is not None:  # validated whenever sent, used when after is not
            resumed = ascii_uint(last_event_id, name="Last-Event-ID", max_value=MAX_SEQ)
        start = after if after is not None else resumed
        if slots.locked():
            raise TooManyStreams("too many live event streams; try again later")
        if open_per_user[caller.user_id] >= per_user_max:
            raise TooManyStreams(
                f"this account already has {per_user_max} live event streams; close one"
            )
        if start is None:
            start = await events.latest_seq(caller.user_id)
        # Counted from now, not from the first byte: a burst of requests cannot overshoot.
        open_per_user[caller.user_id] += 1

        async def body() -> AsyncIterator[bytes]:
            async with slots:
                async for chunk in _follow(events, request, caller.user_id, start):
                    yield chunk

        return _EventStream(body(), on_close=lambda: _release(open_per_user, caller.user_id))

    return router


class _EventStream(StreamingResponse):
    """Calls ``on_close`` once the response ends, however it ends (even if never started)."""

    def __init__(self, content: AsyncIterator[bytes], on_close: Callable[[], None]) -> None:
        super().__init__(
            content,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._on_close()


def _release(open_per_user: Counter[str], user_id: str) -> None:
    open_per_user[user_id] -= 1
    if open_per_user[user_id] <= 0:
        del open_per_user[user_id]


async def _follow(
    events: AccountEvents, request: Request, user_id: str, cursor: int
) -> AsyncIterator[bytes]:
    yield b": lngate events\n\n"
    last_sent = time.monotonic()
    while not await request.is_disconnected():
        batch = await events.after(user_id, cursor, BATCH)
        for ev in batch:
            data: dict[str, Any] = {"type": ev.type, "data": ev.data}
            yield f"id: {ev.seq}\nevent: {ev.type}\ndata: ".encode() + orjson.dumps(data) + b"\n\n"
            cursor = ev.seq
            last_sent = time.monotonic()
        if len(batch) == BATCH:
            continue
        await events.wait(POLL_S)
        if time.monotonic() - last_sent > KEEPALIVE_S:
            yield b": keepalive\n\n"
            last_sent = time.monotonic()
