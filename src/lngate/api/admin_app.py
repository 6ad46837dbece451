"""The admin API: its own listener (127.0.0.1:8001 by default), admin keys only, never mounted
on the public listener. Every action that changes something is audited."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from lngate import __version__
from lngate.api import errors, middleware
from lngate.api.auth import Authenticator, Caller
from lngate.api.json_body import JsonRoute
from lngate.api.params import QueryInt
from lngate.api.responses import MAX_SEQ, JsonResponse
from lngate.bootstrap import Core
from lngate.domain.errors import NotFound
from lngate.domain.withdrawals import WithdrawalStatus
from lngate.lightning.node import Node
from lngate.services import admin, halt, solvency, treasury, withdrawals
from lngate.services.withdrawal_settlement import withdrawal_json
from lngate.store import audit, system_state
from lngate.store import withdrawals as withdrawal_store
from lngate.store.users import Role


class Reason(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=1000)


class ChannelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    peer: str = Field(min_length=66, max_length=200, description="pubkey or pubkey@host:port")
    amount_sat: StrictInt = Field(gt=0)
    push_sat: StrictInt = Field(default=0, ge=0)


class Resume(Reason):
    acknowledge_shortfall_msat: int | None = Field(
        default=None, ge=0, description="a shortfall you have investigated and accept"
    )


def create_admin_app(core: Core, node: Node) -> FastAPI:
    """``node`` is the treasury's credential: reading wallet balances and opening channels need
    on-chain rights that the public API's invoice-only credential lacks."""

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            auth.replays.close()

    app = FastAPI(
        lifespan=lifespan,
        title="lngate admin",
        version=__version__,
        description="Operator API. Signed with admin keys (`lngate admin key create NAME`).",
        default_response_class=JsonResponse,
        docs_url="/docs",
        redoc_url=None,
    )
    errors.install(app)
    middleware.install(app, core.metrics, "admin", max_body_bytes=core.config.max_body_bytes)
    core.metrics.watch_books(core)
    auth = Authenticator(core, frozenset({Role.ADMIN}))
    app.include_router(_router(core, node, auth))

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        # the books collector reads the database itself: off the event loop, no outer transaction
        body = await asyncio.to_thread(generate_latest, core.metrics.registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return app


def _actor(caller: Caller) -> str:
    return f"admin:{caller.user_id}"


def _router(core: Core, node: Node, auth: Authenticator) -> APIRouter:
    r = APIRouter(prefix="/admin/v1", tags=["admin"], route_class=JsonRoute)
    Admin = Annotated[Caller, Depends(auth)]

    @r.get("/withdrawals")
    async def list_withdrawals(
        _: Admin,
        status: Annotated[WithdrawalStatus, Query()] = WithdrawalStatus.REVIEW,
        limit: Annotated[QueryInt, Query(ge=1, le=500)] = 100,
    ) -> Any:
        rows = await core.read(lambda tx: withdrawal_store.with_status(tx, status, limit))
        return JsonResponse([withdrawal_json(w) for w in rows])

    @r.post("/withdrawals/{withdrawal_id}/approve")
    async def approve(withdrawal_id: str, body: Reason, caller: Admin) -> Any:
        done = await core.write(withdrawals.approve_op(withdrawal_id, _actor(caller), body.reason))
        if done is None:
            raise NotFound("no withdrawal with that id is waiting for review")
        core.withdrawal_work.fire()
        return JsonResponse(done)

    @r.post("/withdrawals/{withdrawal_id}/reject")
    async def reject(withdrawal_id: str, body: Reason, caller: Admin) -> Any:
        done = await core.write(
            withdrawals.reject_with_audit_op(withdrawal_id, _actor(caller), body.reason)
        )
        if done is None:
            raise NotFound("no withdrawal with that id is waiting for review")
        return JsonResponse(done)

    @r.post("/halt")
    async def halt_withdrawals(body: Reason, caller: Admin) -> Any:
        changed = await core.write(
            lambda tx: halt.halt(tx, reason=body.reason, actor=_actor(caller))
        )
        return JsonResponse({"halted": True, "changed": changed})

    @r.post("/resume")
    async def resume_withdrawals(body: Resume, caller: Admin) -> Any:
        changed = await core.write(
            lambda tx: halt.resume(
                tx,
                reason=body.reason,
                actor=_actor(caller),
                acknowledge_shortfall_msat=body.acknowledge_shortfall_msat,
            )
        )
        core.withdrawal_work.fire()
        return JsonResponse({"halted": False, "changed": changed})

    @r.get("/status")
    async def status(_: Admin) -> Any:
        return JsonResponse({"withdrawals_halted": await core.read(halt.halted)})

    @r.get("/reconciliation")
    async def reports(_: Admin, limit: Annotated[QueryInt, Query(ge=1, le=100)] = 10) -> Any:
        return JsonResponse(await core.read(lambda tx: system_state.reports(tx, limit)))

    @r.post("/reconciliation")
    async def reconcile_now(caller: Admin) -> Any:
        return JsonResponse(await solvency.reconcile(core, node, actor=_actor(caller)))

    @r.get("/users/{username}")
    async def get_user(username: str, _: Admin) -> Any:
        return JsonResponse(
            await core.read(lambda tx: admin.user_view(tx, username, core.config.public_host))
        )

    @r.post("/users/{username}/freeze")
    async def freeze(username: str, body: Reason, caller: Admin) -> Any:
        op = admin.set_frozen_op(username, True, reason=body.reason, actor=_actor(caller))
        return JsonResponse({"frozen": True, "changed": await core.write(op)})

    @r.post("/users/{username}/unfreeze")
    async def unfreeze(username: str, body: Reason, caller: Admin) -> Any:
        op = admin.set_frozen_op(username, False, reason=body.reason, actor=_actor(caller))
        return JsonResponse({"frozen": False, "changed": await core.write(op)})

    @r.get("/treasury")
    async def treasury_status(_: Admin) -> Any:
        return JsonResponse((await treasury.treasury_status(core, node)).as_json())

    @r.get("/channels")
    async def channels(_: Admin) -> Any:
        return JsonResponse(await treasury.list_channels(core, node))

    @r.post("/channels")
    async def open_channel(body: ChannelRequest, caller: Admin) -> Any:
        opened = await treasury.open_channel_to_cold(
            core, node, body.peer, body.amount_sat, push_sat=body.push_sat
        )
        await core.write(
            lambda tx: audit.append(
                tx,
                actor=_actor(caller),
                action="channel.open",
                subject=f"peer:{body.peer}",
                reason="admin API",
                details=opened.as_json(),
            )
        )
        return JsonResponse(opened.as_json())

    @r.get("/audit")
    async def audit_log(
        _: Admin,
        after: Annotated[QueryInt, Query(ge=0, le=MAX_SEQ)] = 0,
        limit: Annotated[QueryInt, Query(ge=1, le=admin.AUDIT_PAGE_MAX)] = 100,
    ) -> Any:
        return JsonResponse(
            await core.read(lambda tx: admin.audit_page(tx, after=after, limit=limit))
        )

    return r
