"""Deposits over Lightning: invoices for the caller, and their status."""

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from lngate.api import schemas
from lngate.api.auth import Authenticator, Caller
from lngate.api.idempotency import optional_idempotency
from lngate.api.json_body import JsonRoute
from lngate.api.openapi import error_responses
from lngate.api.params import QueryInt
from lngate.api.responses import MAX_SEQ
from lngate.services.deposits import PAGE_MAX, Deposits


def deposit_router(deposits: Deposits, auth: Authenticator) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["deposits"], route_class=JsonRoute)
    Authed = Annotated[Caller, Depends(auth)]

    @router.post("/deposits", status_code=201, responses=error_responses(403, 404, 409, 422))
    async def post_deposit(
        body: schemas.DepositRequest,
        caller: Authed,
        idempotency: Annotated[tuple[str, str] | None, Depends(optional_idempotency)],
    ) -> schemas.Deposit:
        """A fresh invoice of our node; paying it credits the caller once."""
        created = await deposits.create(
            caller.user_id, body.amount_msat, memo=body.memo or "", idempotency=idempotency
        )
        return schemas.Deposit.model_validate(created)

    @router.get("/deposits/{deposit_id}", responses=error_responses(404))
    async def get_deposit(deposit_id: str, caller: Authed) -> schemas.Deposit:
        return schemas.Deposit.model_validate(await deposits.get(caller.user_id, deposit_id))

    @router.get("/deposits")
    async def list_deposits(
        caller: Authed,
        limit: Annotated[QueryInt, Query(ge=1, le=PAGE_MAX)] = 50,
        cursor: Annotated[QueryInt | None, Query(ge=1, le=MAX_SEQ)] = None,
    ) -> schemas.DepositPage:
        page = await deposits.page(caller.user_id, cursor=cursor, limit=limit)
        return schemas.DepositPage.model_validate(page)

    return router
