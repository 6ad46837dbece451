"""Public LNURL-pay endpoints (no signature: wallets on the internet call them)."""

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from lngate.api.json_body import JsonRoute
from lngate.api.responses import JsonResponse
from lngate.bootstrap import Core
from lngate.domain.errors import LngateError
from lngate.lightning.node import Node
from lngate.services import lnurl


def lnurl_router(core: Core, node: Node) -> APIRouter:
    router = APIRouter(tags=["lnurl"], route_class=JsonRoute)

    @router.get("/.well-known/lnurlp/{username}")
    async def well_known(username: str) -> Any:
        try:
            return JsonResponse(await lnurl.lookup(core, username))
        except LngateError as exc:
            status, body = lnurl.lud_error(exc)
            return JsonResponse(body, status_code=status)

    @router.get("/lnurlp/{username}/callback")
    async def pay_callback(
        request: Request,
        username: str,
        amount: Annotated[str | None, Query(description="millisatoshi")] = None,
        comment: Annotated[str | None, Query(description="LUD-12 comment")] = None,
    ) -> Any:
        try:
            # behind a proxy, uvicorn's --forwarded-allow-ips makes this the original client
            client = request.client.host if request.client else "unknown"
            answer = await lnurl.callback(
                core, node, username, amount, comment, client_address=client
            )
            return JsonResponse(answer)
        except LngateError as exc:
            status, body = lnurl.lud_error(exc)
            return JsonResponse(body, status_code=status)

    return router
