"""Live account events over Server-Sent Events, signed like every /v1 call."""

import asyncio
import functools
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse

from lngate.api.auth import Authenticator, Caller
from lngate.api.responses import MAX_SEQ
from lngate.bootstrap import Core
from lngate.domain.errors import RateLimited
from lngate.store import events

STREAMS_MAX = 1_000
KEEPALIVE_S = 15.0
POLL_S = 0.5  # events written by other processes are found within this long
BATCH = 100


class TooManyStreams(RateLimited):
    code = "TOO_MANY_STREAMS"


def event_router(core: Core, auth: Authenticator) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["events"])
    Authed = Annotated[Caller, Depends(auth)]
    slots = asyncio.Semaphore(STREAMS_MAX)

    @router.get(
        "/events",
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}}},
    )
    async def stream_events(
        request: Request,
        caller: Authed,
        after: Annotated[
            int | None, Query(ge=0, le=MAX_SEQ, description="resume after this event id")
        ] = None,
        last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    ) -> Any:
        """``deposit.settled``, ``deposit.expired``, ``transfer.sent``, ``transfer.received``,
        ``withdrawal.*``. Without ``after`` (or ``Last-Event-ID``) the stream starts now."""
        if slots.locked():
            raise TooManyStreams("too many live event streams; try again later")
        start = after
        if start is None and last_event_id and last_event_id.isdigit():
            start = int(last_event_id)
        if start is None:
            start = await core.read(lambda tx: events.last_seq(tx, caller.user_id))

        async def body() -> AsyncIterator[bytes]:
            async with slots:
                async for chunk in _follow(core, request, caller.user_id, start):
                    yield chunk

        return StreamingResponse(
            body(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    return router


async def _follow(core: Core, request: Request, user_id: str, cursor: int) -> AsyncIterator[bytes]:
    yield b": lngate events\n\n"
    last_sent = time.monotonic()
    while not await request.is_disconnected():
        batch = await core.read(
            functools.partial(events.after, user_id=user_id, after_seq=cursor, limit=BATCH)
        )
        for ev in batch:
            data: dict[str, Any] = {"type": ev.type, "data": ev.data}
            yield f"id: {ev.seq}\nevent: {ev.type}\ndata: ".encode() + orjson.dumps(data) + b"\n\n"
            cursor = ev.seq
            last_sent = time.monotonic()
        if len(batch) == BATCH:
            continue
        await core.commits.wait(POLL_S)
        if time.monotonic() - last_sent > KEEPALIVE_S:
            yield b": keepalive\n\n"
            last_sent = time.monotonic()
