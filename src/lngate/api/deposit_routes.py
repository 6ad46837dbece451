"""Deposits over Lightning: invoices for the caller, and their status."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from lngate.api.auth import Authenticator, Caller
from lngate.api.idempotency import optional_idempotency
from lngate.api.json_body import JsonRoute
from lngate.api.params import QueryInt
from lngate.api.responses import MAX_SEQ, JsonResponse
from lngate.bootstrap import Core
from lngate.lightning.node import Node
from lngate.services import deposits
from lngate.services.transfers import MEMO_MAX_CHARS


class DepositRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount_msat: StrictInt | None = Field(
        default=None, description="omit for an amountless invoice (if the operator allows it)"
    )
    memo: str | None = Field(default=None, max_length=MEMO_MAX_CHARS)


class DepositResponse(BaseModel):
    id: str
    bolt11: str
    payment_hash: str
    amount_msat: int | None
    amount_paid_msat: int | None
    memo: str
    source: str
    status: str
    created_at: str
    expires_at: str
    settled_at: str | None


def deposit_router(core: Core, node: Node, auth: Authenticator) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["deposits"], route_class=JsonRoute)
    Authed = Annotated[Caller, Depends(auth)]

    @router.post("/deposits", status_code=201, response_model=DepositResponse)
    async def post_deposit(
        body: DepositRequest,
        caller: Authed,
        idempotency: Annotated[tuple[str, str] | None, Depends(optional_idempotency)],
    ) -> Any:
        created = await deposits.create_deposit(
            core,
            node,
            caller.user_id,
            body.amount_msat,
            memo=body.memo or "",
            idempotency=idempotency,
        )
        return JsonResponse(created, status_code=201)

    @router.get("/deposits/{deposit_id}", response_model=DepositResponse)
    async def get_deposit(deposit_id: str, caller: Authed) -> Any:
        return JsonResponse(
            await core.read(lambda tx: deposits.get_deposit(tx, caller.user_id, deposit_id))
        )

    @router.get("/deposits")
    async def list_deposits(
        caller: Authed,
        limit: Annotated[QueryInt, Query(ge=1, le=deposits.PAGE_MAX)] = 50,
        cursor: Annotated[QueryInt | None, Query(ge=1, le=MAX_SEQ)] = None,
    ) -> Any:
        return JsonResponse(
            await core.read(
                lambda tx: deposits.list_deposits(tx, caller.user_id, cursor=cursor, limit=limit)
            )
        )

    return router
