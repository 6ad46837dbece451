"""Request bodies parsed by orjson, for every route.

Starlette's ``json.loads`` accepts lone surrogates (which PostgreSQL and orjson then refuse, a
500 later), recurses without bound on deep nesting (``RecursionError``, also a 500) and turns
non-UTF-8 bytes into a generic error. orjson refuses all three as malformed JSON, at depth 1024,
and is faster. NUL characters are valid JSON but cannot be stored: refused here too, once.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def parse_json_body(body: bytes) -> Any:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        # FastAPI turns json.JSONDecodeError into its "json_invalid" error: MALFORMED_JSON
        raise json.JSONDecodeError(exc.msg, body.decode("latin-1"), exc.pos) from exc
    if b"\\u0000" in body and _has_nul(value):
        raise HTTPException(400, "text in the request body must not contain NUL characters")
    return value


class _OrjsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = parse_json_body(await self.body())
        return self._json


class JsonRoute(APIRoute):
    """Every lngate router uses this route class (``APIRouter(route_class=JsonRoute)``)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def with_orjson(request: Request) -> Response:
            return await handler(_OrjsonRequest(request.scope, request.receive))

        return with_orjson
