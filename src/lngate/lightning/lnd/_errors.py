"""Every LND failure becomes a ``lngate.lightning.errors`` type here, and only here.

LND answers errors as gRPC statuses: over REST a non-2xx response carries
``{"code": <grpc code>, "message": "...", "details": []}``, and a stream carries
``{"error": {"code": ..., "message": ..., "http_code": ..., "http_status": ...}}`` on a line
(the ``http_*`` fields only from older grpc-gateway versions). LND returns most Go errors with
code 2 (Unknown), so the message decides first and the code only after it.
"""

from __future__ import annotations

import enum
import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from lngate.domain.errors import NodeError
from lngate.lightning.errors import (
    AlreadyPaid,
    InsufficientBalance,
    InvalidInvoice,
    InvalidNodeRequest,
    InvoiceExpired,
    InvoiceNotFound,
    NodeTimeout,
    NodeUnreachable,
    NoRoute,
    PermissionDenied,
)

_MESSAGE_MAX_CHARS = 300  # LND messages are short; never echo an unbounded body into an error


class GrpcCode(enum.IntEnum):
    """The gRPC status codes LND puts in ``code`` (google.golang.org/grpc/codes)."""

    OK = 0
    CANCELED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


@dataclass(frozen=True, slots=True)
class RpcStatus:
    """An error status as LND's REST proxy reported it."""

    message: str
    grpc_code: int | None = None
    http_status: int | None = None

    @classmethod
    def from_body(cls, body: object, http_status: int | None) -> RpcStatus:
        """Reads ``{"code", "message"}`` (unary) or a stream's ``{"error": {...}}``: a streaming
        endpoint that refuses a call before its first message (``/v2/router/send`` with a
        self-payment, a paid hash, a refused macaroon) answers non-2xx with that wrapped form."""
        if isinstance(body, Mapping) and isinstance(body.get("error"), Mapping):
            body = body["error"]
        if not isinstance(body, Mapping):
            return cls(message=_clip(str(body)), http_status=http_status)
        code = body.get("code")
        http_code = body.get("http_code")
        return cls(
            message=_clip(str(body.get("message") or body.get("error") or "")),
            grpc_code=code if isinstance(code, int) else None,
            http_status=http_code if isinstance(http_code, int) else http_status,
        )


class LndRpcError(Exception):
    """LND refused a call. Private to the adapter: callers only ever see ``NodeError``s."""

    def __init__(self, status: RpcStatus) -> None:
        super().__init__(f"LND error {status.grpc_code}/{status.http_status}: {status.message}")
        self.status = status


# rpcperms/interceptor.go and server.go: LND's answers while it starts or stops. An lnd that
# restarts goes through all of them (--noseedbackup or not: the wallet is locked for a moment).
_STARTING_OR_STOPPING = (
    "waiting to start, rpc services not available",
    "wallet locked, unlock it to enable full rpc access",
    "the rpc server is in the process of starting up",
    "server is still in the process of starting",
    "server is shutting down",
    "server exiting",
)

# Ordered: the first rule whose pattern occurs in the (lowercased) message wins. The strings are
# LND's own error texts (payments db, routing, invoices registry, wallet, zpay32, macaroons).
_MESSAGE_RULES: tuple[tuple[tuple[str, ...], type[NodeError]], ...] = (
    (("permission denied", "verification failed", "macaroon"), PermissionDenied),
    (
        (
            "invoice is already paid",
            "payment is in transition",
            "payment already exists",
            # CancelInvoice on a settled invoice: it was paid, it can no longer be withdrawn.
            "invoice already settled",
        ),
        AlreadyPaid,
    ),
    (("invoice expired",), InvoiceExpired),
    (("unable to find a path", "no route"), NoRoute),
    (
        (
            "insufficient funds",
            "not enough witness outputs",
            "insufficient local balance",
            "insufficient balance",
        ),
        InsufficientBalance,
    ),
    (
        ("unable to locate invoice", "there are no existing invoices", "invoice not found"),
        InvoiceNotFound,
    ),
    (
        (
            "invalid payment request",
            "invoice not for current active network",
            "checksum failed",
            "invalid bech32",
            "invalid character not part of charset",
            "invalid separator index",
            "invalid index of 1",
            "failed converting data to bytes",
            "string not all lowercase or all uppercase",
        ),
        InvalidInvoice,
    ),
    (
        (
            # routerrpc's checks of a SendPaymentV2 request (code 2, HTTP 500).
            "self-payments not allowed",
            "amount must be specified when paying a zero amount invoice",
            "amount must not be specified when paying a non-zero amount invoice",
            # SendCoins to an address of another network, or not an address at all.
            "is not valid for this network",
            "decoded address is of unknown format",
            "unknown address type",
            # invoicesrpc: a hold invoice's hash taken, settling what holds nothing, and
            # AddHoldInvoice's own checks.
            "invoice with payment hash already exists",
            "invoice still open",
            "invoice already canceled",
            "memo too large",
            "cltv delta",
        ),
        InvalidNodeRequest,
    ),
    (
        # LND starting up (or going down) refuses every call before running it (code 2, HTTP
        # 500): nothing happened, as when the connection is refused.
        _STARTING_OR_STOPPING,
        NodeUnreachable,
    ),
)


def node_error(status: RpcStatus, *, input_is_bolt11: bool = False) -> NodeError:
    """The one mapping of an LND error status onto the port's errors.

    ``input_is_bolt11``: the call's only input was a BOLT11 string (decode), so an otherwise
    unclassified refusal (code 2 or 3) means that string is bad.
    """
    text = f"LND: {status.message}" if status.message else "LND refused the request"
    lowered = status.message.lower()
    for patterns, error_type in _MESSAGE_RULES:
        if any(pattern in lowered for pattern in patterns):
            return error_type(text)
    code, http_status = status.grpc_code, status.http_status
    if code in (GrpcCode.PERMISSION_DENIED, GrpcCode.UNAUTHENTICATED) or http_status in (401, 403):
        return PermissionDenied(text)
    if code == GrpcCode.ALREADY_EXISTS:
        return AlreadyPaid(text)
    if input_is_bolt11 and code in (GrpcCode.UNKNOWN, GrpcCode.INVALID_ARGUMENT):
        return InvalidInvoice(text)
    if lowered == "not found":
        # grpc-gateway's answer for a path it has no route for: a subserver (invoicesrpc,
        # routerrpc) not compiled into this lnd, not a missing invoice.
        return NodeError(f"{text} (is the lnd build missing a subserver?)")
    if code == GrpcCode.NOT_FOUND:
        return InvoiceNotFound(text)
    if code == GrpcCode.DEADLINE_EXCEEDED or http_status == 504:
        return NodeTimeout(text)
    if code == GrpcCode.UNAVAILABLE or http_status in (502, 503):
        return NodeUnreachable(text)
    if code in (GrpcCode.INVALID_ARGUMENT, GrpcCode.FAILED_PRECONDITION, GrpcCode.OUT_OF_RANGE):
        return InvalidNodeRequest(text)
    if http_status is not None and 400 <= http_status < 500:
        return InvalidNodeRequest(text)
    return NodeError(text)


def transport_error(exc: httpx.HTTPError) -> NodeError:
    """Maps an httpx failure. Connect failures (refused, TLS, DNS, connect timeout) mean the
    request never reached LND, which is what ``NodeUnreachable`` promises; a connection lost
    after the request went out leaves the outcome unknown, so it is not ``NodeUnreachable``."""
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return NodeUnreachable(f"LND unreachable: {_describe(exc)}")
    if isinstance(exc, httpx.TimeoutException):
        return NodeTimeout(f"LND did not answer in time: {_describe(exc)}")
    if isinstance(exc, httpx.TransportError):
        return NodeError(f"connection to LND lost, outcome unknown: {_describe(exc)}")
    return NodeError(f"HTTP error talking to LND: {_describe(exc)}")


def is_transient(status: RpcStatus) -> bool:
    """Whether a stream error is LND restarting or shutting down (worth a reconnect) rather
    than a refusal that would only repeat (bad macaroon, bad argument)."""
    if status.grpc_code in (
        GrpcCode.CANCELED,
        GrpcCode.DEADLINE_EXCEEDED,
        GrpcCode.ABORTED,
        GrpcCode.INTERNAL,
        GrpcCode.UNAVAILABLE,
    ) or status.http_status in (502, 503, 504):
        return True
    lowered = status.message.lower()
    return any(
        hint in lowered
        for hint in (
            *_STARTING_OR_STOPPING,
            "shutting down",
            "starting",
            "not yet ready",
            "not available",
            "eof",
        )
    )


@asynccontextmanager
async def node_errors(*, input_is_bolt11: bool = False) -> AsyncIterator[None]:
    """Wraps one adapter call so that nothing but ``NodeError`` leaves it."""
    try:
        yield
    except LndRpcError as exc:
        raise node_error(exc.status, input_is_bolt11=input_is_bolt11) from exc
    except httpx.HTTPError as exc:
        raise transport_error(exc) from exc


def parse_error_body(response_text: str, http_status: int) -> RpcStatus:
    """The status of a non-2xx response, whether or not its body is LND's JSON."""
    try:
        body: Any = json.loads(response_text)
    except ValueError:
        return RpcStatus(message=_clip(response_text.strip()), http_status=http_status)
    return RpcStatus.from_body(body, http_status)


def _describe(exc: BaseException) -> str:
    return _clip(str(exc) or type(exc).__name__)


def _clip(text: str) -> str:
    return text[:_MESSAGE_MAX_CHARS]
