"""Pay over HTTP: a merchant's orders and refunds, and paying an order from a balance."""

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from lngate.api import order_schemas as schemas
from lngate.api.auth import Authenticator, Caller, require_merchant
from lngate.api.idempotency import required_idempotency
from lngate.api.json_body import JsonRoute
from lngate.api.openapi import error_responses
from lngate.api.params import QueryInt
from lngate.api.responses import MAX_SEQ
from lngate.services.orders import PAGE_MAX, Orders
from lngate.services.refunds import Refunds

OrderId = Annotated[str, "an order id: ord_ and 26 base32 characters"]


def order_router(orders: Orders, refunds: Refunds, auth: Authenticator) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["orders"], route_class=JsonRoute)
    Authed = Annotated[Caller, Depends(auth)]

    def merchant(caller: Authed) -> Caller:
        return require_merchant(caller)

    Merchant = Annotated[Caller, Depends(merchant)]
    Idempotency = Annotated[tuple[str, str], Depends(required_idempotency)]

    @router.post(
        "/orders",
        status_code=201,
        responses={
            200: {
                "description": "this merchant_order_id's order, created before",
                "model": schemas.Order,
            },
            **error_responses(403, 409, 422, 423),
        },
    )
    async def post_order(
        body: schemas.OrderRequest, caller: Merchant, response: Response
    ) -> schemas.Order:
        """An open order with a hold invoice of our node; its ``merchant_order_id`` is the
        idempotency key (the same body again: 200 and the same order)."""
        made = await orders.create(
            caller.user_id,
            merchant_order_id=body.merchant_order_id,
            amount_msat=body.amount_msat,
            description=body.description,
            expires_in_s=body.expires_in_s,
            redirect_url=body.redirect_url,
            metadata=body.metadata,
        )
        if not made.created:
            response.status_code = 200
        return schemas.Order.model_validate(made.order)

    @router.get("/orders/{order_id}", responses=error_responses(403, 404))
    async def get_order(order_id: str, caller: Merchant) -> schemas.Order:
        return schemas.Order.model_validate(await orders.get(caller.user_id, order_id))

    @router.get("/orders", responses=error_responses(403))
    async def list_orders(
        caller: Merchant,
        status: Annotated[schemas.OrderStatus | None, Query()] = None,
        merchant_order_id: Annotated[
            str | None, Query(pattern=r"^[A-Za-z0-9_-]{1,64}$", max_length=64)
        ] = None,
        limit: Annotated[QueryInt, Query(ge=1, le=PAGE_MAX)] = 50,
        cursor: Annotated[QueryInt | None, Query(ge=1, le=MAX_SEQ)] = None,
    ) -> schemas.OrderPage:
        page = await orders.page(
            caller.user_id,
            status=status,
            merchant_order_id=merchant_order_id,
            cursor=cursor,
            limit=limit,
        )
        return schemas.OrderPage.model_validate(page)

    @router.post("/orders/{order_id}/cancel", responses=error_responses(403, 404, 409))
    async def cancel_order(order_id: str, caller: Merchant) -> schemas.Order:
        """open -> cancelled; a payment held meanwhile goes back to its payer."""
        return schemas.Order.model_validate(await orders.cancel(caller.user_id, order_id))

    @router.post("/orders/{order_id}/pay", responses=error_responses(403, 404, 409, 422, 423))
    async def pay_order(
        order_id: str, caller: Authed, idempotency: Idempotency
    ) -> schemas.OrderPayment:
        """Pay an open order from the caller's balance: instant, free, once per
        Idempotency-Key; withdrawal limits, freezes and halts apply."""
        paid = await orders.pay_from_balance(caller.user_id, order_id, idempotency=idempotency)
        return schemas.OrderPayment.model_validate(paid)

    @router.post(
        "/orders/{order_id}/refunds",
        status_code=201,
        responses=error_responses(403, 404, 409, 422, 423),
    )
    async def post_refund(
        order_id: str, body: schemas.RefundRequest, caller: Merchant, idempotency: Idempotency
    ) -> schemas.Refund:
        """To the payer's balance (no destination; an order paid from a balance), or out to a
        BOLT11 invoice or Lightning Address as a withdrawal from the merchant's balance."""
        made = await refunds.create(
            caller.user_id,
            order_id,
            amount_msat=body.amount_msat,
            reason=body.reason,
            bolt11=body.bolt11,
            lightning_address=body.lightning_address,
            idempotency=idempotency,
        )
        return schemas.Refund.model_validate(made)

    @router.get("/orders/{order_id}/refunds", responses=error_responses(403, 404))
    async def list_refunds(order_id: str, caller: Merchant) -> schemas.RefundList:
        found = await refunds.of_order(caller.user_id, order_id)
        return schemas.RefundList(refunds=[schemas.Refund.model_validate(r) for r in found])

    return router
