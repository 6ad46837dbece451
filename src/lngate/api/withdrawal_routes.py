"""Withdrawals over Lightning: pay a BOLT11 invoice or a Lightning Address."""

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from lngate.api import schemas
from lngate.api.auth import Authenticator, Caller
from lngate.api.idempotency import required_idempotency
from lngate.api.json_body import JsonRoute
from lngate.api.openapi import error_responses
from lngate.api.params import QueryInt
from lngate.api.responses import MAX_SEQ
from lngate.services.withdrawals import PAGE_MAX, WithdrawalRequests


def withdrawal_router(requests: WithdrawalRequests, auth: Authenticator) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["withdrawals"], route_class=JsonRoute)
    Authed = Annotated[Caller, Depends(auth)]

    @router.post(
        "/withdrawals", status_code=201, responses=error_responses(403, 404, 409, 422, 423)
    )
    async def post_withdrawal(
        body: schemas.WithdrawalRequest,
        caller: Authed,
        idempotency: Annotated[tuple[str, str], Depends(required_idempotency)],
    ) -> schemas.Withdrawal:
        """Funds are held at once; the payment worker pays it (``approved``), or an operator
        decides first (``review``). A repeat with the same Idempotency-Key answers the first
        withdrawal as it is now."""
        created = await requests.request(
            caller.user_id,
            bolt11=body.bolt11,
            lightning_address=body.lightning_address,
            amount_msat=body.amount_msat,
            idempotency=idempotency,
        )
        return schemas.Withdrawal.model_validate(created)

    @router.get("/withdrawals/{withdrawal_id}", responses=error_responses(404))
    async def get_withdrawal(withdrawal_id: str, caller: Authed) -> schemas.Withdrawal:
        found = await requests.get(caller.user_id, withdrawal_id)
        return schemas.Withdrawal.model_validate(found)

    @router.get("/withdrawals")
    async def list_withdrawals(
        caller: Authed,
        limit: Annotated[QueryInt, Query(ge=1, le=PAGE_MAX)] = 50,
        cursor: Annotated[QueryInt | None, Query(ge=1, le=MAX_SEQ)] = None,
    ) -> schemas.WithdrawalPage:
        page = await requests.page(caller.user_id, cursor=cursor, limit=limit)
        return schemas.WithdrawalPage.model_validate(page)

    return router
