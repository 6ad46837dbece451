"""The one place where typed errors become HTTP responses.

Body: ``{"error": {"code": "...", "message": "..."}}``. Every refusal is a 4xx; a node that
cannot be reached is a 503 (the service is unavailable, the request was fine); anything else
is a 500, and a 500 is a bug.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException as StarletteHTTPException

from lngate.api.responses import JsonResponse
from lngate.domain import errors as e

log = logging.getLogger(__name__)

# Every class of the tree, each with its status: exhaustive (tests/unit/test_error_table.py), so a
# new error cannot silently become a 400. A node that cannot be reached is a 503: the request was
# fine and nothing changed.
STATUS: dict[type[e.LngateError], int] = {
    e.InvalidRequest: 400,
    e.InvalidAmount: 400,
    e.AmountRequired: 400,
    e.AmountNotAllowed: 400,
    e.AmountOutOfRange: 400,
    e.WrongNetwork: 400,
    e.BlockedDestination: 400,
    e.OwnNodeInvoice: 400,
    e.InternalInvoicePaid: 400,
    e.ColdImportRefused: 400,
    e.PrivateKeyRefused: 400,
    e.NoColdAddress: 400,
    e.LnurlFailed: 400,
    e.DestinationNotAllowed: 400,
    e.InvoiceExpired: 400,
    e.InvalidNodeRequest: 400,
    e.InvalidInvoice: 400,
    e.AuthError: 401,
    e.TotpRequired: 401,
    e.CsrfRefused: 403,
    e.AccountFrozen: 403,
    e.NotAMerchant: 403,
    e.NotFound: 404,
    e.UnknownUser: 404,
    e.Conflict: 409,
    e.IdempotencyConflict: 409,
    e.AlreadyExists: 409,
    e.DuplicatePaymentHash: 409,
    e.MerchantOrderIdReused: 409,
    e.OrderNotOpen: 409,
    e.InsufficientFunds: 422,
    e.RefundExceedsPaid: 422,
    e.LimitExceeded: 422,
    e.LedgerRefused: 422,
    e.NodeError: 422,
    e.NodeBadResponse: 422,
    e.NoRoute: 422,
    e.InsufficientBalance: 422,
    e.AlreadyPaid: 422,
    e.PermissionDenied: 422,
    e.InvoiceNotFound: 422,
    e.WithdrawalsHalted: 423,
    e.RateLimited: 429,
    e.TooManyStreams: 429,
    e.NodeUnreachable: 503,
    e.NodeTimeout: 503,
    e.InvariantBroken: 500,  # a bug, as every 500 is
}

# Codes the HTTP layer answers itself: framework refusals, validation, edge limits, bugs.
HTTP_LAYER_CODES = (
    (400, "INVALID_REQUEST"),
    (400, "MALFORMED_JSON"),
    (400, "INVALID_AMOUNT"),
    (404, "NOT_FOUND"),
    (405, "METHOD_NOT_ALLOWED"),
    (413, "PAYLOAD_TOO_LARGE"),
    (500, "INTERNAL"),
    (503, "SHUTTING_DOWN"),
)
_HTTP_CODES = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 413: "PAYLOAD_TOO_LARGE"}


def codes_by_status() -> dict[int, list[str]]:
    """Every status the API answers with an error body, and the codes it carries (for OpenAPI)."""
    found: dict[int, set[str]] = {}
    for cls, status in STATUS.items():
        found.setdefault(status, set()).add(cls.code)
    for status, code in HTTP_LAYER_CODES:
        found.setdefault(status, set()).add(code)
    return {status: sorted(codes) for status, codes in sorted(found.items())}


def status_for(exc: e.LngateError) -> int:
    """The class's own status; a subclass defined outside the tree (a bug the table test
    catches) answers as its nearest mapped ancestor."""
    for cls in type(exc).__mro__:
        status = STATUS.get(cls)
        if status is not None:
            return status
    return 500


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def error_response(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse(error_body(code, message), status_code=status)


def _validation_code(exc: RequestValidationError) -> tuple[str, str]:
    errs = exc.errors()
    if any(err.get("type") == "json_invalid" for err in errs):
        return "MALFORMED_JSON", "the request body is not valid JSON"
    first = errs[0] if errs else {}
    loc = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
    if any("amount" in str(p) for err in errs for p in err.get("loc", ())):
        return "INVALID_AMOUNT", f"{loc}: must be a positive integer number of msat"
    return "INVALID_REQUEST", f"{loc}: {first.get('msg', 'invalid')}" if loc else "invalid request"


def _allowed_methods(request: Request) -> str:
    """Every method any route of this path answers: Starlette's own ``Allow`` names only the
    methods of the first route whose path matched (``GET`` and ``POST`` of one path are two
    routes). HEAD, which Starlette adds to each GET, is left out as the OpenAPI leaves it."""
    path = request.scope.get("path", "")
    methods: set[str] = set()
    for context in iter_route_contexts(request.app.router.routes):
        regex = getattr(context, "path_regex", None)  # FastAPI includes routers lazily
        if context.methods and regex is not None and regex.match(path):
            methods |= context.methods
    return ", ".join(sorted(methods - {"HEAD"}))


def install(app: FastAPI) -> None:
    @app.exception_handler(e.LngateError)
    async def _lngate(request: Request, exc: e.LngateError) -> JsonResponse:
        if isinstance(exc, e.InvariantBroken):  # a bug, with its transaction undone
            return _internal_error(request, exc)
        status = status_for(exc)
        # Refusals are logged where the request id and caller are known; a frozen account's
        # attempt is a warning for the operators.
        level = logging.WARNING if isinstance(exc, e.AccountFrozen) else logging.INFO
        log.log(
            level,
            "refused %s %s: %s (%s)",
            request.method,
            request.url.path,
            exc.code,
            exc.message,
            extra={"user_id": getattr(request.state, "user_id", None), "status": status},
        )
        return error_response(status, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JsonResponse:
        code, message = _validation_code(exc)
        return error_response(400, code, message)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JsonResponse:
        # Raised by the framework: an unknown path or method, a body that cannot be parsed.
        response = error_response(
            exc.status_code, _HTTP_CODES.get(exc.status_code, "INVALID_REQUEST"), str(exc.detail)
        )
        response.headers.update(exc.headers or {})
        if exc.status_code == 405:
            response.headers["Allow"] = _allowed_methods(request)
        return response

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JsonResponse:
        return _internal_error(request, exc)


def _internal_error(request: Request, exc: Exception) -> JsonResponse:
    """A bug: logged with its traceback; the client learns nothing of its insides."""
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "INTERNAL", "internal error (this is a bug; it was logged)")
