"""The public ASGI application, and the background workers it hosts on the embedded default."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

from fastapi import FastAPI

from lngate import __version__
from lngate.api import errors, middleware, openapi, schemas
from lngate.api.auth import Authenticator
from lngate.api.deposit_routes import deposit_router
from lngate.api.event_routes import event_router
from lngate.api.lnurl_routes import lnurl_router
from lngate.api.order_routes import order_router
from lngate.api.responses import JsonResponse
from lngate.api.user_routes import user_router
from lngate.api.webhook_routes import webhook_router
from lngate.api.withdrawal_routes import withdrawal_router
from lngate.bootstrap import Core, UseCases
from lngate.domain.users import Role
from lngate.security.replay_guards import replay_guard_for
from lngate.web.checkout import mount_checkout
from lngate.web.wallet import mount_wallet

log = logging.getLogger(__name__)

Worker = Callable[[asyncio.Event], Awaitable[None]]


def create_app(core: Core, cases: UseCases, *, workers: Sequence[Worker] = ()) -> FastAPI:
    """The API over the use cases ``cases`` (built by ``bootstrap.use_cases`` with the
    invoice-only node credential); ``workers`` run for the app's lifetime."""

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        stop = asyncio.Event()
        tasks = [asyncio.create_task(_supervised(w, stop)) for w in workers]
        try:
            yield
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            auth.replays.close()

    app = FastAPI(
        title="lngate",
        version=__version__,
        description="A Lightning gateway for custodial exchanges. Every /v1 request is signed: "
        "see the README.",
        default_response_class=JsonResponse,
        docs_url="/docs",
        redoc_url=None,
        lifespan=lifespan,
        generate_unique_id_function=openapi.operation_id,
        telemetry=middleware.NO_FRAMEWORK_TELEMETRY,
    )
    errors.install(app)
    openapi.install(app)
    middleware.install(app, core.metrics, "public", max_body_bytes=core.config.max_body_bytes)
    window_ms = core.config.receive_window_ms
    replays = replay_guard_for(core.db, window_ms)
    roles = frozenset({Role.USER, Role.MERCHANT})
    auth = Authenticator(cases.api_keys, replays, roles, window_ms=window_ms, clock=core.clock)
    app.state.core = core
    app.state.auth = auth
    app.include_router(user_router(cases.accounts, cases.transfers, auth))
    app.include_router(deposit_router(cases.deposits, auth))
    streams_per_user = core.config.event_streams_per_user
    app.include_router(event_router(cases.account_events, auth, streams_per_user=streams_per_user))
    app.include_router(lnurl_router(cases.lightning_addresses))
    app.include_router(withdrawal_router(cases.withdrawal_requests, auth))
    app.include_router(order_router(cases.orders, cases.refunds, auth))
    app.include_router(webhook_router(cases.webhooks, auth))
    # The hosted checkout page (public, unsigned): /pay/{id}, its status and its events.
    mount_checkout(app, cases.orders, core.commits, clock=core.clock, balance_pay_url="/app/pay/")
    # The web wallet (/app/): pages signed in with a password, a session cookie and CSRF tokens.
    mount_wallet(
        app,
        cases.wallet,
        cases.web_logins,
        core.commits,
        status_of=errors.status_for,
        secure_cookies=core.config.effective_public_url.startswith("https://"),
        session_max_s=core.config.web.session_max_s,
        clock=core.clock,
    )

    @app.get("/health", tags=["meta"])
    async def get_health() -> schemas.Health:
        return schemas.Health(status="ok", version=__version__)

    return app


async def _supervised(worker: Worker, stop: asyncio.Event) -> None:
    """Run a worker until stop; a crash is logged and the worker restarted (bounded backoff)."""
    delay_s = 1.0
    while not stop.is_set():
        try:
            await worker(stop)
        except Exception:
            log.exception("worker %r crashed; restarting in %.0fs", worker, delay_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay_s)
            delay_s = min(delay_s * 2, 60.0)
