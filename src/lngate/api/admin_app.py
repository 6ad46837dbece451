"""The admin API: its own listener (127.0.0.1:8001 by default), admin keys only, never mounted
on the public listener. Every action that changes something is audited."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Query
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from lngate import __version__
from lngate.api import errors, middleware, openapi, schemas
from lngate.api.auth import Authenticator, Caller
from lngate.api.books_metrics import BooksCollector
from lngate.api.json_body import JsonRoute
from lngate.api.openapi import error_responses
from lngate.api.params import QueryInt
from lngate.api.responses import MAX_SEQ, JsonResponse
from lngate.bootstrap import Core, open_signer_probe
from lngate.domain.errors import NotFound
from lngate.domain.users import Role
from lngate.domain.withdrawals import WithdrawalStatus
from lngate.lightning.lnd.signer import SignerProbe
from lngate.lightning.node import Node
from lngate.services import admin, halt, solvency, treasury, withdrawals
from lngate.services.withdrawal_settlement import withdrawal_json


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
        generate_unique_id_function=openapi.operation_id,
    )
    errors.install(app)
    openapi.install(app)
    middleware.install(app, core.metrics, "admin", max_body_bytes=core.config.max_body_bytes)
    signer = open_signer_probe(core.config)
    core.metrics.watch("books", BooksCollector(core, signer))
    auth = Authenticator(core, frozenset({Role.ADMIN}))
    app.include_router(_router(core, node, auth, signer))

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        # the books collector reads the database itself: off the event loop, no outer transaction
        body = await asyncio.to_thread(generate_latest, core.metrics.registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return app


def _actor(caller: Caller) -> str:
    return f"admin:{caller.user_id}"


def _router(core: Core, node: Node, auth: Authenticator, signer: SignerProbe | None) -> APIRouter:
    r = APIRouter(prefix="/admin/v1", tags=["admin"], route_class=JsonRoute)
    Admin = Annotated[Caller, Depends(auth)]

    @r.get("/withdrawals")
    async def list_review_queue(
        _: Admin,
        status: Annotated[WithdrawalStatus, Query()] = WithdrawalStatus.REVIEW,
        limit: Annotated[QueryInt, Query(ge=1, le=500)] = 100,
    ) -> list[schemas.Withdrawal]:
        """Withdrawals in ``status``: by default, those waiting for an operator."""
        rows = await core.read(lambda tx: admin.review_queue(tx, status, limit))
        return [schemas.Withdrawal.model_validate(withdrawal_json(w)) for w in rows]

    @r.post("/withdrawals/{withdrawal_id}/approve", responses=error_responses(404))
    async def approve_withdrawal(
        withdrawal_id: str, body: schemas.Reason, caller: Admin
    ) -> schemas.Withdrawal:
        done = await core.write(withdrawals.approve_op(withdrawal_id, _actor(caller), body.reason))
        if done is None:
            raise NotFound("no withdrawal with that id is waiting for review")
        core.withdrawal_work.fire()
        return schemas.Withdrawal.model_validate(done)

    @r.post("/withdrawals/{withdrawal_id}/reject", responses=error_responses(404, 422))
    async def reject_withdrawal(
        withdrawal_id: str, body: schemas.Reason, caller: Admin
    ) -> schemas.Withdrawal:
        """The hold is released: the funds are the user's again."""
        done = await core.write(
            withdrawals.reject_with_audit_op(withdrawal_id, _actor(caller), body.reason)
        )
        if done is None:
            raise NotFound("no withdrawal with that id is waiting for review")
        return schemas.Withdrawal.model_validate(done)

    @r.post("/halt")
    async def halt_withdrawals(body: schemas.Reason, caller: Admin) -> schemas.HaltChange:
        changed = await core.write(
            lambda tx: halt.halt(tx, reason=body.reason, actor=_actor(caller))
        )
        return schemas.HaltChange(halted=True, changed=changed)

    @r.post("/resume")
    async def resume_withdrawals(body: schemas.Resume, caller: Admin) -> schemas.HaltChange:
        changed = await core.write(
            lambda tx: halt.resume(
                tx,
                reason=body.reason,
                actor=_actor(caller),
                acknowledge_shortfall_msat=body.acknowledge_shortfall_msat,
            )
        )
        core.withdrawal_work.fire()
        return schemas.HaltChange(halted=False, changed=changed)

    @r.get("/status")
    async def get_status(_: Admin) -> schemas.AdminStatus:
        health = await signer.acheck() if signer is not None else None
        state = await core.read(halt.halted)
        return schemas.AdminStatus.model_validate(
            {
                "withdrawals_halted": state,
                "signer": health.as_json() if health is not None else None,
            }
        )

    @r.get("/reconciliation")
    async def list_reconciliations(
        _: Admin, limit: Annotated[QueryInt, Query(ge=1, le=100)] = 10
    ) -> list[schemas.StoredReconciliation]:
        """The latest reconciliation reports, newest first."""
        rows = await core.read(lambda tx: admin.reconciliation_reports(tx, limit))
        return [schemas.StoredReconciliation.model_validate(row) for row in rows]

    @r.post("/reconciliation", responses=error_responses(422))
    async def reconcile(caller: Admin) -> schemas.Reconciliation:
        """Check the books against the node now; a failure halts withdrawals."""
        report = await solvency.reconcile(core, node, actor=_actor(caller))
        return schemas.Reconciliation.model_validate(report)

    @r.get("/users/{username}", responses=error_responses(404))
    async def get_user(username: str, _: Admin) -> schemas.AdminUser:
        view = await core.read(lambda tx: admin.user_view(tx, username, core.config.public_host))
        return schemas.AdminUser.model_validate(view)

    @r.post("/users/{username}/freeze", responses=error_responses(404))
    async def freeze_user(
        username: str, body: schemas.Reason, caller: Admin
    ) -> schemas.FreezeChange:
        """No withdrawals and no transfers out; deposits still arrive."""
        op = admin.set_frozen_op(username, True, reason=body.reason, actor=_actor(caller))
        return schemas.FreezeChange(frozen=True, changed=await core.write(op))

    @r.post("/users/{username}/unfreeze", responses=error_responses(404))
    async def unfreeze_user(
        username: str, body: schemas.Reason, caller: Admin
    ) -> schemas.FreezeChange:
        op = admin.set_frozen_op(username, False, reason=body.reason, actor=_actor(caller))
        return schemas.FreezeChange(frozen=False, changed=await core.write(op))

    @r.get("/treasury", responses=error_responses(422))
    async def get_treasury(_: Admin) -> schemas.Treasury:
        status = await treasury.treasury_status(core, node)
        return schemas.Treasury.model_validate(status.as_json())

    @r.get("/channels", responses=error_responses(422))
    async def list_channels(_: Admin) -> list[schemas.Channel]:
        channels = await treasury.list_channels(core, node)
        return [schemas.Channel.model_validate(c) for c in channels]

    @r.post("/channels", responses=error_responses(422))
    async def open_channel(body: schemas.ChannelRequest, caller: Admin) -> schemas.ChannelOpened:
        """A channel whose cooperative close can only pay a fresh cold address."""
        opened = await treasury.open_channel_to_cold(
            core,
            node,
            body.peer,
            body.amount_sat,
            push_sat=body.push_sat,
            actor=_actor(caller),
            reason="admin API",
        )
        return schemas.ChannelOpened.model_validate(opened)

    @r.get("/audit")
    async def get_audit(
        _: Admin,
        after: Annotated[QueryInt, Query(ge=0, le=MAX_SEQ)] = 0,
        limit: Annotated[QueryInt, Query(ge=1, le=admin.AUDIT_PAGE_MAX)] = 100,
    ) -> schemas.AuditPage:
        """The audit log, oldest first, each record chained to the one before it."""
        page = await core.read(lambda tx: admin.audit_page(tx, after=after, limit=limit))
        return schemas.AuditPage.model_validate(page)

    return r
