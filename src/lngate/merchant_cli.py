"""``lngate merchant orders|webhooks USERNAME``: what a merchant has, read at the shell."""

from __future__ import annotations

from typing import Annotated

import typer

from lngate.bootstrap import open_core
from lngate.cli_support import config_from_env, fail, print_json
from lngate.domain.errors import LngateError
from lngate.services.orders import PAGE_MAX, MerchantOrders
from lngate.services.webhooks import WebhookEndpoints

merchant_app = typer.Typer(help="Merchants' orders and webhooks (Pay).", no_args_is_help=True)


@merchant_app.command("orders")
def merchant_orders(
    username: str,
    status: Annotated[
        str | None,
        typer.Option(help="open, paid, expired, cancelled or refunded"),
    ] = None,
    limit: Annotated[int, typer.Option(help=f"newest first, at most {PAGE_MAX}")] = 50,
) -> None:
    """The merchant's orders, newest first, as JSON."""
    core = open_core(config_from_env())
    try:
        query = MerchantOrders(core.uow, core.config.effective_public_url)
        page = query.page_sync(username, status=status, limit=limit)
        print_json({"orders": [o.as_json() for o in page.orders]})
    except LngateError as exc:
        fail(exc)
    finally:
        core.close()


@merchant_app.command("webhooks")
def merchant_webhooks(username: str) -> None:
    """The merchant's webhook endpoints (never their secrets), as JSON."""
    core = open_core(config_from_env())
    try:
        endpoints = WebhookEndpoints(core.uow, core.clock, core.server_key, core.config.pay)
        print_json({"webhooks": [e.as_json() for e in endpoints.list_sync(username)]})
    except LngateError as exc:
        fail(exc)
    finally:
        core.close()
