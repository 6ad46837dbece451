"""Limits that apply to every request before any work: the body size, and no NUL in the target.

The body is read here, at most ``max_body_bytes`` of it, before routing and authentication: an
unsigned 100 MB body is refused after 64 KiB, not parsed. A ``Content-Length`` above the limit
is refused without reading at all. The app then receives the body as one message.
"""

from __future__ import annotations

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lngate.api.errors import error_body

DEFAULT_MAX_BODY_BYTES = 64 * 1024


class RequestLimits:
    def __init__(self, app: ASGIApp, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # "%00" decodes to NUL in a path parameter or query value: no id or name holds one,
        # and PostgreSQL refuses it in a query (a 500 further in).
        if b"%00" in scope.get("raw_path", b"") or b"%00" in scope.get("query_string", b""):
            await _refuse(scope, send, 400, "INVALID_REQUEST", "the URL must not contain NUL (%00)")
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            await _refuse(scope, send, 413, "PAYLOAD_TOO_LARGE", self._too_large())
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await _refuse(scope, send, 413, "PAYLOAD_TOO_LARGE", self._too_large())
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if delivered:
                return await receive()  # later calls wait for the disconnect (SSE)
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    def _too_large(self) -> str:
        return f"the request body is larger than {self.max_body_bytes} bytes"


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            # the HTTP parser has already refused a malformed length
            return int(value) if value.isdigit() and len(value) <= 18 else None
    return None


_LNURL_PATHS = ("/lnurlp/", "/.well-known/lnurlp/")


async def _refuse(scope: Scope, send: Send, status: int, code: str, message: str) -> None:
    # wallets calling the public LNURL endpoints read LUD-06's form, everyone else ours
    lnurl = scope.get("path", "").startswith(_LNURL_PATHS)
    body = {"status": "ERROR", "reason": message} if lnurl else error_body(code, message)
    payload = orjson.dumps(body)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
