"""Withdrawals over Lightning: pay a BOLT11 invoice or a Lightning Address."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from lngate.api.auth import Authenticator, Caller
from lngate.api.idempotency import required_idempotency
from lngate.api.json_body import JsonRoute
from lngate.api.params import QueryInt
from lngate.api.responses import MAX_SEQ, JsonResponse
from lngate.bootstrap import Core
from lngate.services.withdrawals import BOLT11_MAX_CHARS, PAGE_MAX, WithdrawalService


class WithdrawalRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    bolt11: str | None = Field(default=None, max_length=BOLT11_MAX_CHARS)
    lightning_address: str | None = Field(default=None, max_length=320)
    amount_msat: StrictInt | None = Field(
        default=None, description="only for amountless invoices and Lightning Addresses"
    )


class WithdrawalResponse(BaseModel):
    id: str
    status: str
    bolt11: str
    payment_hash: str
    destination: str | None
    amount_msat: int
    exchange_fee_msat: int
    fee_reserve_msat: int
    routing_fee_msat: int | None
    preimage: str | None
    internal: bool
    note: str
    created_at: str
    finished_at: str | None


def withdrawal_router(core: Core, service: WithdrawalService, auth: Authenticator) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["withdrawals"], route_class=JsonRoute)
    Authed = Annotated[Caller, Depends(auth)]

    @router.post("/withdrawals", status_code=201, response_model=WithdrawalResponse)
    async def post_withdrawal(
        body: WithdrawalRequest,
        caller: Authed,
        idempotency: Annotated[tuple[str, str], Depends(required_idempotency)],
    ) -> Any:
        created = await service.request(
            caller.user_id,
            bolt11=body.bolt11,
            lightning_address=body.lightning_address,
            amount_msat=body.amount_msat,
            idempotency=idempotency,
        )
        return JsonResponse(created, status_code=201)

    @router.get("/withdrawals/{withdrawal_id}", response_model=WithdrawalResponse)
    async def get_withdrawal(withdrawal_id: str, caller: Authed) -> Any:
        return JsonResponse(
            await core.read(lambda tx: service.get(tx, caller.user_id, withdrawal_id))
        )

    @router.get("/withdrawals")
    async def list_withdrawals(
        caller: Authed,
        limit: Annotated[QueryInt, Query(ge=1, le=PAGE_MAX)] = 50,
        cursor: Annotated[QueryInt | None, Query(ge=1, le=MAX_SEQ)] = None,
    ) -> Any:
        return JsonResponse(
            await core.read(lambda tx: service.page(tx, caller.user_id, cursor=cursor, limit=limit))
        )

    return router
