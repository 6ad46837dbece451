"""A small Python client for lngate's API that signs every request for you.

from lngate.client import Client
with Client("http://127.0.0.1:8000", api_key, api_secret) as c:
    print(c.get("/v1/account").json())
    c.post("/v1/transfers", {"to": "bob", "amount_msat": 1000}, idempotency_key="t-1")
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from collections import OrderedDict
from typing import Any

import httpx

from lngate.security.signing import KEY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

__all__ = ["AsyncClient", "Client", "signed_headers"]


_REPEATS_MAX = 10_000
_clock_lock = threading.Lock()
_last_use_ms: OrderedDict[str, int] = OrderedDict()  # request digest -> timestamp last signed


def timestamp_for(method: str, path_with_query: str, body: bytes) -> int:
    """Now, in Unix ms; for a repeat of an identical request, strictly after its last timestamp.

    Identical requests (same method, path and body) signed in the same millisecond would carry
    the same signature, and the server refuses the second as a replay. Only repeats are moved
    forward, so a client signing thousands of distinct requests a second never drifts ahead of
    the clock (and out of the server's receive window).
    """
    digest = hashlib.sha256(method.encode() + b" " + path_with_query.encode() + b"\n" + body)
    key = digest.hexdigest()
    now_ms = int(time.time() * 1000)
    with _clock_lock:
        timestamp_ms = max(now_ms, _last_use_ms.get(key, 0) + 1)
        _last_use_ms[key] = timestamp_ms
        _last_use_ms.move_to_end(key)
        if len(_last_use_ms) > _REPEATS_MAX:
            _last_use_ms.popitem(last=False)
    return timestamp_ms


def signed_headers(
    api_key: str,
    api_secret: str,
    method: str,
    path_with_query: str,
    body: bytes = b"",
    *,
    timestamp_ms: int | None = None,
) -> dict[str, str]:
    """The three auth headers for one request. Sign exactly the bytes you send."""
    if timestamp_ms is None:
        timestamp_ms = timestamp_for(method, path_with_query, body)
    return {
        KEY_HEADER: api_key,
        TIMESTAMP_HEADER: str(timestamp_ms),
        SIGNATURE_HEADER: sign(api_secret, timestamp_ms, method, path_with_query, body),
    }


def _prepare(
    api_key: str, api_secret: str, method: str, path: str, payload: Any, idempotency_key: str | None
) -> tuple[bytes, dict[str, str]]:
    body = b"" if payload is None else json.dumps(payload, separators=(",", ":")).encode()
    headers = signed_headers(api_key, api_secret, method, path, body)
    if payload is not None:
        headers["Content-Type"] = "application/json"
    if method == "POST":
        headers["Idempotency-Key"] = idempotency_key or str(uuid.uuid4())
    return body, headers


class Client:
    def __init__(self, base_url: str, api_key: str, api_secret: str, timeout_s: float = 30) -> None:
        self._http = httpx.Client(base_url=base_url, timeout=timeout_s)
        self._key, self._secret = api_key, api_secret

    def request(
        self, method: str, path: str, payload: Any = None, *, idempotency_key: str | None = None
    ) -> httpx.Response:
        body, headers = _prepare(self._key, self._secret, method, path, payload, idempotency_key)
        return self._http.request(method, path, content=body, headers=headers)

    def get(self, path: str) -> httpx.Response:
        return self.request("GET", path)

    def post(
        self, path: str, payload: Any, *, idempotency_key: str | None = None
    ) -> httpx.Response:
        return self.request("POST", path, payload, idempotency_key=idempotency_key)

    def delete(self, path: str) -> httpx.Response:
        return self.request("DELETE", path)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        api_secret: str,
        timeout_s: float = 30,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(base_url=base_url, timeout=timeout_s, transport=transport)
        self._key, self._secret = api_key, api_secret

    async def request(
        self, method: str, path: str, payload: Any = None, *, idempotency_key: str | None = None
    ) -> httpx.Response:
        body, headers = _prepare(self._key, self._secret, method, path, payload, idempotency_key)
        return await self._http.request(method, path, content=body, headers=headers)

    async def get(self, path: str) -> httpx.Response:
        return await self.request("GET", path)

    async def post(
        self, path: str, payload: Any, *, idempotency_key: str | None = None
    ) -> httpx.Response:
        return await self.request("POST", path, payload, idempotency_key=idempotency_key)

    async def delete(self, path: str) -> httpx.Response:
        return await self.request("DELETE", path)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
