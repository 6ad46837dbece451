"""Ending what would keep a shutdown waiting for ever, on each listener (``lngate serve``).

Uvicorn's graceful shutdown waits for every open request to finish, and two kinds never do by
themselves: a live event stream (it runs until the client hangs up) and a request whose client
sent part of its body and then nothing. ``Drain`` is the outermost ASGI layer: at shutdown it
ends those two, and leaves the requests in flight to finish in the server's grace period.
"""

from __future__ import annotations

import asyncio

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lngate.api.errors import error_body


class _Exchange:
    """One HTTP request and its response, as ``Drain`` sees them pass."""

    __slots__ = (
        "_receive",
        "_send",
        "drain",
        "finished",
        "receiving",
        "sending",
        "started",
        "streaming",
    )

    def __init__(self, drain: Drain, receive: Receive, send: Send) -> None:
        self.drain = drain
        self._receive = receive
        self._send = send
        self.started = False  # the response's status line is sent
        self.streaming = False  # a part of the body is sent and more is to come
        self.finished = False  # the response is complete, sent by the app or by the drain
        self.receiving = 0  # calls waiting for the request body (or for a disconnect)
        self.sending = False

    def stalled(self) -> bool:
        """Waiting for the client, perhaps for ever: a stream, or a request body not all sent."""
        return not self.finished and (self.streaming or (self.receiving > 0 and not self.started))

    async def receive(self) -> Message:
        self.receiving += 1
        try:
            return await self._receive()
        finally:
            self.receiving -= 1

    async def send(self, message: Message) -> None:
        if self.finished:
            return  # the drain has ended this response; what the app still sends goes nowhere
        self.sending = True
        try:
            await self._send(message)
        finally:
            self.sending = False
        if message["type"] == "http.response.start":
            self.started = True
        elif message["type"] == "http.response.body":
            self.streaming = bool(message.get("more_body", False))
            self.finished = not self.streaming
        if self.drain.stopping and self.stalled():
            await self.end()  # a stream that started after ``stop``, or an ``end`` put off

    async def end(self) -> None:
        """Finish the response for the app: a stream with its last (empty) chunk, a request
        still being sent with a 503. The client then counts as gone for the app too: the
        server's ``receive`` answers ``http.disconnect`` once the response is complete."""
        if self.sending or self.finished:
            return  # ``send`` comes back here once the app's own send is done
        self.finished = True
        if not self.started:
            payload = orjson.dumps(error_body("SHUTTING_DOWN", "the server is shutting down"))
            await self._send(
                {
                    "type": "http.response.start",
                    "status": 503,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(payload)).encode()),
                        (b"connection", b"close"),
                    ],
                }
            )
            await self._send({"type": "http.response.body", "body": payload})
        else:
            await self._send({"type": "http.response.body", "body": b"", "more_body": False})


class Drain:
    """The outermost ASGI layer of a listener, for a shutdown that ends.

    Uvicorn's graceful shutdown waits for every open request to finish, and two kinds never
    do by themselves: a live event stream (it runs until the client hangs up) and a request
    whose client sent part of its body and then nothing. ``stop`` ends those; the requests
    in flight are left to finish in ``SHUTDOWN_GRACE_S``.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.stopping = False
        self._live: set[_Exchange] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        exchange = _Exchange(self, receive, send)
        self._live.add(exchange)
        try:
            await self.app(scope, exchange.receive, exchange.send)
        finally:
            self._live.discard(exchange)

    async def stop(self) -> None:
        """End the stalled exchanges; a stream that starts after this ends at its first chunk."""
        self.stopping = True
        await asyncio.gather(*(x.end() for x in list(self._live) if x.stalled()))
