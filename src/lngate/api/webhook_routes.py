"""A merchant's webhook endpoints over HTTP (merchant keys; signed like every /v1 call)."""

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from lngate.api import webhook_schemas as schemas
from lngate.api.auth import Authenticator, Caller, require_merchant
from lngate.api.json_body import JsonRoute
from lngate.api.openapi import error_responses
from lngate.api.params import QueryInt
from lngate.api.responses import MAX_SEQ
from lngate.services.webhooks import DELIVERY_PAGE_MAX, WebhookEndpoints


def webhook_router(endpoints: WebhookEndpoints, auth: Authenticator) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["webhooks"], route_class=JsonRoute)
    Authed = Annotated[Caller, Depends(auth)]

    def merchant(caller: Authed) -> Caller:
        return require_merchant(caller)

    Merchant = Annotated[Caller, Depends(merchant)]

    @router.post("/webhooks", status_code=201, responses=error_responses(403))
    async def post_webhook(
        body: schemas.WebhookRequest, caller: Merchant
    ) -> schemas.CreatedWebhookEndpoint:
        """An endpoint told about the events listed, its signing secret shown this once."""
        made = await endpoints.create(caller.user_id, body.url, body.events)
        view = made.endpoint.as_json()
        return schemas.CreatedWebhookEndpoint.model_validate(view | {"secret": made.secret})

    @router.get("/webhooks", responses=error_responses(403))
    async def list_webhooks(caller: Merchant) -> schemas.WebhookEndpointList:
        found = await endpoints.list(caller.user_id)
        return schemas.WebhookEndpointList(
            webhooks=[schemas.WebhookEndpoint.model_validate(e.as_json()) for e in found]
        )

    @router.delete("/webhooks/{webhook_id}", status_code=204, responses=error_responses(403, 404))
    async def delete_webhook(webhook_id: str, caller: Merchant) -> Response:
        """Nothing more is sent to it; deliveries still due are dropped."""
        await endpoints.delete(caller.user_id, webhook_id)
        return Response(status_code=204)

    @router.get("/webhooks/{webhook_id}/deliveries", responses=error_responses(403, 404))
    async def list_deliveries(
        webhook_id: str,
        caller: Merchant,
        limit: Annotated[QueryInt, Query(ge=1, le=DELIVERY_PAGE_MAX)] = 50,
        cursor: Annotated[QueryInt | None, Query(ge=1, le=MAX_SEQ)] = None,
    ) -> schemas.WebhookDeliveryPage:
        """The endpoint's delivery log, newest first."""
        page = await endpoints.deliveries(caller.user_id, webhook_id, cursor=cursor, limit=limit)
        return schemas.WebhookDeliveryPage.model_validate(page)

    @router.post(
        "/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver",
        responses=error_responses(403, 404),
    )
    async def redeliver(
        webhook_id: str, delivery_id: str, caller: Merchant
    ) -> schemas.WebhookDelivery:
        """Send again now (the same webhook-id and body), with a fresh retry schedule."""
        again = await endpoints.redeliver(caller.user_id, webhook_id, delivery_id)
        return schemas.WebhookDelivery.model_validate(again)

    return router
