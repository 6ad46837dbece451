"""The user API: account, transfers, history."""

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from lngate.api import schemas
from lngate.api.auth import Authenticator, Caller
from lngate.api.idempotency import required_idempotency
from lngate.api.json_body import JsonRoute
from lngate.api.openapi import error_responses
from lngate.api.params import QueryInt
from lngate.api.responses import MAX_SEQ
from lngate.services.accounts import HISTORY_PAGE_MAX, Accounts
from lngate.services.transfers import Transfers


def user_router(accounts: Accounts, transfers: Transfers, auth: Authenticator) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["user"], route_class=JsonRoute)
    Authed = Annotated[Caller, Depends(auth)]

    @router.get("/account", responses=error_responses(404))
    async def get_account(caller: Authed) -> schemas.Account:
        return schemas.Account.model_validate(await accounts.view(caller.user_id))

    @router.post("/transfers", status_code=201, responses=error_responses(403, 404, 409, 422))
    async def post_transfer(
        body: schemas.TransferRequest,
        caller: Authed,
        idempotency: Annotated[tuple[str, str], Depends(required_idempotency)],
    ) -> schemas.Transfer:
        """Move money to another user at once. A repeat with the same Idempotency-Key answers
        the first transfer again and moves nothing."""
        key, req_hash = idempotency
        receipt = await transfers.transfer(
            caller.user_id,
            body.to,
            body.amount_msat,
            body.memo or "",
            idempotency_key=key,
            request_hash=req_hash,
        )
        return schemas.Transfer.model_validate(receipt)

    @router.get("/history", responses=error_responses(404))
    async def get_history(
        caller: Authed,
        limit: Annotated[QueryInt, Query(ge=1, le=HISTORY_PAGE_MAX)] = 50,
        cursor: Annotated[QueryInt | None, Query(ge=1, le=MAX_SEQ)] = None,
    ) -> schemas.HistoryPage:
        """The caller's ledger entries, newest first."""
        page = await accounts.history(caller.user_id, cursor=cursor, limit=limit)
        return schemas.HistoryPage.model_validate(page)

    return router
