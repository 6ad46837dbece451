"""The user API: account, transfers, history."""

import functools
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from lngate.api import schemas
from lngate.api.auth import Authenticator, Caller
from lngate.api.idempotency import required_idempotency
from lngate.api.json_body import JsonRoute
from lngate.api.openapi import error_responses
from lngate.api.params import QueryInt
from lngate.api.responses import MAX_SEQ
from lngate.bootstrap import Core
from lngate.services import accounts, transfers


def user_router(core: Core, auth: Authenticator) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["user"], route_class=JsonRoute)
    Authed = Annotated[Caller, Depends(auth)]

    async def caller_user(caller: Caller) -> accounts.User:
        return await core.read(functools.partial(accounts.caller, user_id=caller.user_id))

    @router.get("/account", responses=error_responses(404))
    async def get_account(caller: Authed) -> schemas.Account:
        def view(tx: Any) -> dict[str, Any]:
            user = accounts.caller(tx, caller.user_id)
            return accounts.account_view(tx, user, core.config.public_host)

        return schemas.Account.model_validate(await core.read(view))

    @router.post("/transfers", status_code=201, responses=error_responses(403, 404, 409, 422))
    async def post_transfer(
        body: schemas.TransferRequest,
        caller: Authed,
        idempotency: Annotated[tuple[str, str], Depends(required_idempotency)],
    ) -> schemas.Transfer:
        """Move money to another user at once. A repeat with the same Idempotency-Key answers
        the first transfer again and moves nothing."""
        key, req_hash = idempotency
        op = transfers.transfer_op(
            caller.user_id,
            body.to,
            body.amount_msat,
            body.memo or "",
            idempotency_key=key,
            request_hash=req_hash,
            max_amount_msat=core.config.limits.transfer_max_msat,
        )
        return schemas.Transfer.model_validate(await core.write(op))

    @router.get("/history", responses=error_responses(404))
    async def get_history(
        caller: Authed,
        limit: Annotated[QueryInt, Query(ge=1, le=accounts.HISTORY_PAGE_MAX)] = 50,
        cursor: Annotated[QueryInt | None, Query(ge=1, le=MAX_SEQ)] = None,
    ) -> schemas.HistoryPage:
        """The caller's ledger entries, newest first."""
        user = await caller_user(caller)
        page = await core.read(lambda tx: accounts.history(tx, user, cursor=cursor, limit=limit))
        return schemas.HistoryPage.model_validate(page)

    return router
