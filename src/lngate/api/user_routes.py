"""The user API: account, transfers, history."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from lngate.api.auth import Authenticator, Caller
from lngate.api.idempotency import required_idempotency
from lngate.api.json_body import JsonRoute
from lngate.api.params import QueryInt
from lngate.api.responses import MAX_SEQ, JsonResponse
from lngate.bootstrap import Core
from lngate.domain.errors import UnknownUser
from lngate.services import accounts, transfers
from lngate.store import users


class TransferRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    to: str = Field(min_length=1, max_length=64, description="the recipient's username")
    amount_msat: StrictInt = Field(description="a positive integer of millisatoshi")
    memo: str | None = Field(default=None, max_length=transfers.MEMO_MAX_CHARS)


class AccountResponse(BaseModel):
    user_id: str
    username: str
    available_msat: int
    pending_msat: int = Field(description="held for withdrawals in progress")
    lightning_address: str
    status: str


class TransferResponse(BaseModel):
    id: str
    from_: str = Field(alias="from")
    to: str
    amount_msat: int
    memo: str
    status: str
    created_at: str


def user_router(core: Core, auth: Authenticator) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["user"], route_class=JsonRoute)
    Authed = Annotated[Caller, Depends(auth)]

    async def caller_user(caller: Caller) -> users.User:
        user = await core.read(lambda tx: users.user_by_id(tx, caller.user_id))
        if user is None:
            raise UnknownUser("the caller no longer exists")
        return user

    @router.get("/account", response_model=AccountResponse)
    async def get_account(caller: Authed) -> Any:
        def view(tx: Any) -> dict[str, Any]:
            user = users.user_by_id(tx, caller.user_id)
            if user is None:
                raise UnknownUser("the caller no longer exists")
            return accounts.account_view(tx, user, core.config.public_host)

        return JsonResponse(await core.read(view))

    @router.post("/transfers", status_code=201, response_model=TransferResponse)
    async def post_transfer(
        body: TransferRequest,
        caller: Authed,
        idempotency: Annotated[tuple[str, str], Depends(required_idempotency)],
    ) -> Any:
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
        return JsonResponse(await core.write(op), status_code=201)

    @router.get("/history")
    async def get_history(
        caller: Authed,
        limit: Annotated[QueryInt, Query(ge=1, le=accounts.HISTORY_PAGE_MAX)] = 50,
        cursor: Annotated[QueryInt | None, Query(ge=1, le=MAX_SEQ)] = None,
    ) -> Any:
        user = await caller_user(caller)
        page = await core.read(lambda tx: accounts.history(tx, user, cursor=cursor, limit=limit))
        return JsonResponse(page)

    return router
