"""Request ids, request latency and the edge limits, for every request on a listener.

A plain ASGI middleware: Starlette's ``@app.middleware("http")`` wraps each request in extra
tasks and costs a large share of a small request's time.
"""

from __future__ import annotations

import itertools
import re
import secrets
import time
from typing import Any

from fastapi import FastAPI
from fastapi.telemetry import TelemetryConfig
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lngate.api.request_limits import RequestLimits
from lngate.logs import request_id
from lngate.metrics import Metrics

_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# Unique without a uuid4 per request (about 7 % of a small request's CPU): a random prefix per
# process and a counter.
_ID_PREFIX = secrets.token_hex(6)
_ids = itertools.count(1)

# FastAPI's own OpenTelemetry hooks, off: lngate exports its metrics to Prometheus, and asking
# OpenTelemetry's global providers whether tracing is on costs about 3 % of a small request.
NO_FRAMEWORK_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}


class RequestContext:
    def __init__(self, app: ASGIApp, metrics: Metrics, listener: str) -> None:
        self.app = app
        self.metrics = metrics
        self.listener = listener

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = ""
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                given = value.decode("latin-1")
                break
        rid = given if _SAFE_ID.match(given) else f"{_ID_PREFIX}-{next(_ids):x}"
        token = request_id.set(rid)
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers: list[Any] = list(message.get("headers", []))
                headers.append((b"x-request-id", rid.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id.reset(token)
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            self.metrics.http_latency.labels(self.listener, scope["method"], path).observe(
                time.perf_counter() - started
            )


def install(app: FastAPI, metrics: Metrics, listener: str, *, max_body_bytes: int) -> None:
    # the last added runs first: every request, a refused one too, has an id and a latency
    app.add_middleware(RequestLimits, max_body_bytes=max_body_bytes)
    app.add_middleware(RequestContext, metrics=metrics, listener=listener)
