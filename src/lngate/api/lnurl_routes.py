"""Public LNURL-pay endpoints (no signature: wallets on the internet call them).

Refusals are LUD-06 bodies (``{"status": "ERROR", "reason": ...}``), not lngate's error body:
an unknown name is a 404 and a rate limit a 429; other refusals are a 200 that wallets read.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from lngate.api import schemas
from lngate.api.json_body import JsonRoute
from lngate.api.responses import JsonResponse
from lngate.domain.errors import LngateError
from lngate.services.lnurl import LightningAddresses, lud_error

# LUD-06 bodies, for the refusals at the edge (a URL with NUL, a body too large) too.
_LUD_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": schemas.LudError, "description": "a URL with NUL (%00)"},
    404: {"model": schemas.LudError, "description": "no user of that name"},
    413: {"model": schemas.LudError, "description": "a request body over the limit"},
    429: {"model": schemas.LudError, "description": "too many callbacks from this address"},
}


def lnurl_router(addresses: LightningAddresses) -> APIRouter:
    router = APIRouter(tags=["lnurl"], route_class=JsonRoute)

    @router.get(
        "/.well-known/lnurlp/{username}",
        response_model=schemas.PayRequest | schemas.LudError,
        responses={s: _LUD_ERRORS[s] for s in (400, 404, 413)},
    )
    async def lnurl_pay_request(username: str) -> Any:
        """LUD-16: the pay request behind ``username@host``."""
        try:
            found = await addresses.lookup(username)
            return schemas.PayRequest.model_validate(found.as_json())
        except LngateError as exc:
            return _lud_error(exc)

    @router.get(
        "/lnurlp/{username}/callback",
        response_model=schemas.PayRequestInvoice | schemas.LudError,
        responses=_LUD_ERRORS,
    )
    async def lnurl_pay_callback(
        request: Request,
        username: str,
        amount: Annotated[str | None, Query(description="millisatoshi")] = None,
        comment: Annotated[str | None, Query(description="LUD-12 comment")] = None,
    ) -> Any:
        """LUD-06: a fresh invoice for ``amount``."""
        try:
            # behind a proxy, uvicorn's --forwarded-allow-ips makes this the original client
            client = request.client.host if request.client else "unknown"
            answer = await addresses.callback(username, amount, comment, client_address=client)
            return schemas.PayRequestInvoice.model_validate(answer.as_json())
        except LngateError as exc:
            return _lud_error(exc)

    return router


def _lud_error(exc: LngateError) -> JsonResponse:
    status, body = lud_error(exc)
    return JsonResponse(schemas.LudError.model_validate(body).model_dump(), status_code=status)
