"""HTTP to LND's REST proxy: TLS with the node's own certificate, the macaroon on every
request, JSON in and out, and line-delimited JSON streams."""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncGenerator, Mapping
from pathlib import Path
from typing import Any

import httpx

from lngate.lightning.lnd._errors import LndRpcError, RpcStatus, parse_error_body
from lngate.lightning.lnd._mapping import Json

MACAROON_HEADER = "Grpc-Metadata-macaroon"


def tls_context(tls_cert_path: Path) -> ssl.SSLContext:
    """Trusts exactly LND's self-signed ``tls.cert`` (it is its own CA and names 127.0.0.1,
    ::1 and localhost), with hostname checking left on."""
    context = ssl.create_default_context(cafile=str(tls_cert_path))
    # Newer Pythons turn on X509_STRICT, which rejects some self-signed certificates that
    # Go's x509 writes; trust is pinned to this one certificate either way.
    context.verify_flags &= ~ssl.VERIFY_X509_STRICT
    return context


class LndClient:
    """One ``httpx.AsyncClient`` for one LND node and one macaroon."""

    def __init__(
        self,
        rest_url: str,
        tls_cert_path: Path | None,
        macaroon_hex: str,
        *,
        timeout_s: float,
        stream_idle_timeout_s: float,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        bytes.fromhex(macaroon_hex)  # ValueError at construction, not a 500 from LND later
        self._timeout = httpx.Timeout(timeout_s)
        # A stream may sit idle for long (no invoice settles for hours): only a dead peer
        # should end it, so its read timeout is the idle bound, not the request timeout.
        self._stream_timeout = httpx.Timeout(timeout_s, read=stream_idle_timeout_s)
        self._http = httpx.AsyncClient(
            base_url=rest_url.rstrip("/"),
            headers={MACAROON_HEADER: macaroon_hex, "Accept": "application/json"},
            verify=tls_context(tls_cert_path) if tls_cert_path is not None else True,
            timeout=self._timeout,
            transport=transport,
        )

    async def get(self, path: str, params: Mapping[str, str] | None = None) -> Json:
        response = await self._http.get(path, params=params)
        return _json_or_raise(response)

    async def post(self, path: str, body: Mapping[str, Any]) -> Json:
        response = await self._http.post(path, json=body)
        return _json_or_raise(response)

    async def stream(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> AsyncGenerator[Json, None]:
        """Yields the ``result`` of each line; an ``error`` line raises ``LndRpcError``.

        The caller closes it (``contextlib.aclosing``) to drop the connection; LND's REST proxy
        sends no response headers before the first message, so the idle read timeout also
        bounds the wait for the first line."""
        async with self._http.stream(
            method, path, params=params, json=body, timeout=self._stream_timeout
        ) as response:
            if response.status_code >= 300:
                await response.aread()
                raise LndRpcError(parse_error_body(response.text, response.status_code))
            async for line in response.aiter_lines():
                if line.strip():
                    yield _stream_result(line)

    async def aclose(self) -> None:
        await self._http.aclose()


def _json_or_raise(response: httpx.Response) -> Json:
    if response.status_code >= 300:
        raise LndRpcError(parse_error_body(response.text, response.status_code))
    try:
        body = response.json()
    except ValueError:
        raise LndRpcError(
            RpcStatus("LND answered with a body that is not JSON", None, response.status_code)
        ) from None
    if not isinstance(body, Mapping):
        raise LndRpcError(RpcStatus("LND answered with JSON that is not an object"))
    return body


def _stream_result(line: str) -> Json:
    try:
        message = json.loads(line)
    except ValueError:
        raise LndRpcError(RpcStatus(f"LND stream line is not JSON: {line[:80]!r}")) from None
    if not isinstance(message, Mapping):
        raise LndRpcError(RpcStatus("LND stream line is not an object"))
    error = message.get("error")
    if error is not None:
        raise LndRpcError(RpcStatus.from_body(error, None))
    result = message.get("result")
    if not isinstance(result, Mapping):
        raise LndRpcError(RpcStatus("LND stream line has neither result nor error"))
    return result
