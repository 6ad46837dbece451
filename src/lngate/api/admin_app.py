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
from lngate.bootstrap import Core, UseCases
from lngate.domain.errors import NotFound
from lngate.domain.users import Role
from lngate.domain.withdrawals import WithdrawalStatus
from lngate.security.replay_guards import replay_guard_for
from lngate.services.admin import AUDIT_PAGE_MAX, REPORTS_PAGE_MAX
from lngate.web.console import ConsoleCases, mount_console


def create_admin_app(core: Core, cases: UseCases) -> FastAPI:
    """``cases`` are built over the treasury's node credential: reading wallet balances and
    opening channels need on-chain rights that the public API's invoice-only one lacks."""

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
        telemetry=middleware.NO_FRAMEWORK_TELEMETRY,
    )
    errors.install(app)
    openapi.install(app)
    middleware.install(app, core.metrics, "admin", max_body_bytes=core.config.max_body_bytes)
    core.metrics.watch("books", BooksCollector(cases.monitoring))
    window_ms = core.config.receive_window_ms
    replays = replay_guard_for(core.db, window_ms)
    roles = frozenset({Role.ADMIN})
    auth = Authenticator(cases.api_keys, replays, roles, window_ms=window_ms, clock=core.clock)
    app.include_router(_router(cases, auth))
    # The operator console (/console/): the same use cases, signed in with password and TOTP.
    console = ConsoleCases(
        logins=cases.web_logins,
        review=cases.withdrawal_review,
        admin=cases.admin,
        solvency=cases.solvency,
        treasury=cases.treasury_status,
        channels=cases.channels,
    )
    mount_console(
        app,
        console,
        status_of=errors.status_for,
        secure_cookies=None,  # the admin listener's own scheme, not the public URL's
        session_max_s=core.config.web.session_max_s,
        clock=core.clock,
    )

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        # the books collector reads the database itself: off the event loop, no outer transaction
        body = await asyncio.to_thread(generate_latest, core.metrics.registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return app


def _actor(caller: Caller) -> str:
    return f"admin:{caller.user_id}"


def _router(cases: UseCases, auth: Authenticator) -> APIRouter:
    r = APIRouter(prefix="/admin/v1", tags=["admin"], route_class=JsonRoute)
    Admin = Annotated[Caller, Depends(auth)]

    @r.get("/withdrawals")
    async def list_review_queue(
        _: Admin,
        status: Annotated[WithdrawalStatus, Query()] = WithdrawalStatus.REVIEW,
        limit: Annotated[QueryInt, Query(ge=1, le=500)] = 100,
    ) -> list[schemas.Withdrawal]:
        """Withdrawals in ``status``: by default, those waiting for an operator."""
        rows = await cases.withdrawal_review.queue(status, limit)
        return [schemas.Withdrawal.model_validate(w) for w in rows]

    @r.post("/withdrawals/{withdrawal_id}/approve", responses=error_responses(404))
    async def approve_withdrawal(
        withdrawal_id: str, body: schemas.Reason, caller: Admin
    ) -> schemas.Withdrawal:
        done = await cases.withdrawal_review.approve(withdrawal_id, _actor(caller), body.reason)
        if done is None:
            raise NotFound("no withdrawal with that id is waiting for review")
        return schemas.Withdrawal.model_validate(done)

    @r.post("/withdrawals/{withdrawal_id}/reject", responses=error_responses(404, 422))
    async def reject_withdrawal(
        withdrawal_id: str, body: schemas.Reason, caller: Admin
    ) -> schemas.Withdrawal:
        """The hold is released: the funds are the user's again."""
        done = await cases.withdrawal_review.reject(withdrawal_id, _actor(caller), body.reason)
        if done is None:
            raise NotFound("no withdrawal with that id is waiting for review")
        return schemas.Withdrawal.model_validate(done)

    @r.post("/halt")
    async def halt_withdrawals(body: schemas.Reason, caller: Admin) -> schemas.HaltChange:
        changed = await cases.admin.halt(reason=body.reason, actor=_actor(caller))
        return schemas.HaltChange.model_validate(changed)

    @r.post("/resume")
    async def resume_withdrawals(body: schemas.Resume, caller: Admin) -> schemas.HaltChange:
        changed = await cases.admin.resume(
            reason=body.reason,
            actor=_actor(caller),
            acknowledge_shortfall_msat=body.acknowledge_shortfall_msat,
        )
        return schemas.HaltChange.model_validate(changed)

    @r.get("/status")
    async def get_status(_: Admin) -> schemas.AdminStatus:
        return schemas.AdminStatus.model_validate(await cases.admin.status())

    @r.get("/reconciliation")
    async def list_reconciliations(
        _: Admin, limit: Annotated[QueryInt, Query(ge=1, le=REPORTS_PAGE_MAX)] = 10
    ) -> list[schemas.StoredReconciliation]:
        """The latest reconciliation reports, newest first."""
        reports = await cases.admin.reconciliation_reports(limit)
        return [schemas.StoredReconciliation.model_validate(report) for report in reports]

    @r.post("/reconciliation", responses=error_responses(422))
    async def reconcile(caller: Admin) -> schemas.Reconciliation:
        """Check the books against the node now; a failure halts withdrawals."""
        report = await cases.solvency.reconcile(actor=_actor(caller))
        return schemas.Reconciliation.model_validate(report)

    @r.get("/users/{username}", responses=error_responses(404))
    async def get_user(username: str, _: Admin) -> schemas.AdminUser:
        return schemas.AdminUser.model_validate(await cases.admin.user(username))

    @r.post("/users/{username}/freeze", responses=error_responses(404))
    async def freeze_user(
        username: str, body: schemas.Reason, caller: Admin
    ) -> schemas.FreezeChange:
        """No withdrawals and no transfers out; deposits still arrive."""
        change = await cases.admin.freeze(username, reason=body.reason, actor=_actor(caller))
        return schemas.FreezeChange.model_validate(change)

    @r.post("/users/{username}/unfreeze", responses=error_responses(404))
    async def unfreeze_user(
        username: str, body: schemas.Reason, caller: Admin
    ) -> schemas.FreezeChange:
        change = await cases.admin.unfreeze(username, reason=body.reason, actor=_actor(caller))
        return schemas.FreezeChange.model_validate(change)

    @r.get("/treasury", responses=error_responses(422))
    async def get_treasury(_: Admin) -> schemas.Treasury:
        return schemas.Treasury.model_validate(await cases.treasury_status.report())

    @r.get("/channels", responses=error_responses(422))
    async def list_channels(_: Admin) -> list[schemas.Channel]:
        return [schemas.Channel.model_validate(c) for c in await cases.channels.list()]

    @r.post("/channels", responses=error_responses(422))
    async def open_channel(body: schemas.ChannelRequest, caller: Admin) -> schemas.ChannelOpened:
        """A channel whose cooperative close can only pay a fresh cold address."""
        opened = await cases.channels.open_to_cold(
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
        limit: Annotated[QueryInt, Query(ge=1, le=AUDIT_PAGE_MAX)] = 100,
    ) -> schemas.AuditPage:
        """The audit log, oldest first, each record chained to the one before it."""
        return schemas.AuditPage.model_validate(
            await cases.admin.audit_page(after=after, limit=limit)
        )

    return r
