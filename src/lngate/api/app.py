"""The public ASGI application."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from lngate import __version__
from lngate.api import errors
from lngate.api.auth import Authenticator
from lngate.api.responses import JsonResponse
from lngate.api.user_routes import user_router
from lngate.bootstrap import Core


def create_app(core: Core) -> FastAPI:
    app = FastAPI(
        title="lngate",
        version=__version__,
        description="A Lightning gateway for custodial exchanges. Every /v1 request is signed: "
        "see the README.",
        default_response_class=JsonResponse,
        docs_url="/docs",
        redoc_url=None,
    )
    errors.install(app)
    auth = Authenticator(core)
    app.state.core = core
    app.state.auth = auth
    app.include_router(user_router(core, auth))

    @app.get("/health", tags=["meta"])
    async def health() -> Any:
        return {"status": "ok", "version": __version__}

    return app
