"""``lngate serve`` and ``lngate worker``: processes built from the core, a node and workers.

``serve`` runs the public API (127.0.0.1:8000), the admin API and metrics on their own listener
(127.0.0.1:8001; ``admin_port = 0`` turns it off) and, on the embedded default, the workers.

It binds both ports itself before anything else, so a port it cannot have is one line on
stderr. On SIGTERM or SIGINT it stops accepting, ends what would otherwise keep it waiting for
ever (see ``Drain``), gives the requests in flight ``SHUTDOWN_GRACE_S`` to finish, stops the
workers and the writer, and exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import socket
from collections.abc import Iterator
from typing import Any

import uvicorn

from lngate.api.admin_app import create_admin_app
from lngate.api.app import Worker, create_app
from lngate.api.drain import Drain
from lngate.bootstrap import Core, NodeRole, open_core, open_node, use_cases
from lngate.config import Config
from lngate.logs import configure_logging
from lngate.processes import listen_or_exit
from lngate.services.config_audit import ConfigAudit
from lngate.services.webhook_delivery import WebhookDispatch
from lngate.workers.invoice_watcher import InvoiceWatcher
from lngate.workers.order_watcher import OrderWatcher
from lngate.workers.payment_sender import PaymentWorker
from lngate.workers.reconciler import Reconciler
from lngate.workers.treasury import TreasuryWorker
from lngate.workers.webhook_sender import WebhookSender

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_S = 5  # for the requests in flight at SIGTERM; then uvicorn cancels them


def background_workers(core: Core, config: Config) -> list[Worker]:
    """The workers one process runs beside the API on the embedded default, each with its own
    node connection and the credential its role needs."""
    watcher_node = open_node(config, NodeRole.INVOICE_WATCHER)
    payment_node = open_node(config, NodeRole.PAYMENT_WORKER)
    treasury_node = open_node(config, NodeRole.TREASURY)
    books_node = open_node(config, NodeRole.RECONCILER)
    treasury = use_cases(core, treasury_node)
    watching = use_cases(core, watcher_node)
    return [
        InvoiceWatcher(watching.deposits, watcher_node, clock=core.clock).run,
        OrderWatcher(watching.orders, watcher_node, core.commits).run,
        PaymentWorker(
            use_cases(core, payment_node).payouts,
            payment_node,
            core.withdrawal_work,
            latency=core.metrics.withdrawal_latency,
        ).run,
        Reconciler(
            use_cases(core, books_node).solvency, interval_s=config.reconcile_interval_s
        ).run,
        TreasuryWorker(
            treasury.cold_storage, treasury.onchain_books, treasury_node, config.treasury
        ).run,
        webhook_sender(core, watching.webhook_dispatch).run,
    ]


def webhook_sender(core: Core, dispatch: WebhookDispatch) -> WebhookSender:
    pay = core.config.pay
    return WebhookSender(
        dispatch,
        core.commits,
        timeout_s=pay.webhook_timeout_s,
        max_response_bytes=pay.webhook_max_response_bytes,
        allow_private_hosts=pay.webhook_allow_private_hosts,
        latency=core.metrics.webhook_latency,
        disabled=core.metrics.webhook_endpoints_disabled,
    )


class _Server(uvicorn.Server):
    """Two servers share one loop: signals are handled once, for both, by ``serve_all``."""

    def __init__(self, config: uvicorn.Config, drain: Drain) -> None:
        super().__init__(config)
        self.drain = drain

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # Scheduled now, run at uvicorn's first pause: after it has closed the listeners.
        draining = asyncio.create_task(self.drain.stop())
        try:
            await super().shutdown(sockets)
        finally:
            draining.cancel()  # a client that reads nothing can keep a send waiting


def run_server(config: Config, *, with_workers: bool = True, reuse_port: bool = False) -> None:
    """``reuse_port``: bind the public port with SO_REUSEPORT, so that several API processes
    share it (``lngate serve --processes N``, see ``lngate.processes``). A port that cannot be
    had is ``SystemExit`` with one line, before the database is opened."""
    configure_logging(json=config.log_json)
    listeners = [listen_or_exit(config.host, config.port, reuse_port=reuse_port)]
    try:
        if config.admin_port:
            listeners.append(listen_or_exit(config.admin_host, config.admin_port))
        core = open_core(config)
        core.start_writer()
        try:
            ConfigAudit(core.uow, config).record_change_sync()
            asyncio.run(_serve_all(core, config, with_workers, listeners))
        finally:
            core.close()
    finally:
        for sock in (s for socks in listeners for s in socks):
            sock.close()


async def _serve_all(
    core: Core, config: Config, with_workers: bool, listeners: list[list[socket.socket]]
) -> None:
    """``listeners``: the public listener's sockets, then the admin listener's if it is on."""
    node = open_node(config, NodeRole.PUBLIC_API)
    workers = background_workers(core, config) if with_workers else []
    public = create_app(core, use_cases(core, node), workers=workers)
    servers = [_uvicorn(public, config.host, config.port)]
    if config.admin_port:
        admin = create_admin_app(core, use_cases(core, open_node(config, NodeRole.TREASURY)))
        servers.append(_uvicorn(admin, config.admin_host, config.admin_port))

    def stop_all() -> None:
        for server in servers:
            server.should_exit = True

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop_all)
    # What exists now (the code, the apps, their templates: some 120,000 objects) lives as long
    # as the process: out of the collector's sight, a full collection walks only what requests
    # made since. Without this each one took 60-90 ms of the event loop.
    gc.collect()
    gc.freeze()
    log.info(
        "lngate serving on http://%s:%d (admin on %s), database %s, node %s",
        config.host,
        config.port,
        f"http://{config.admin_host}:{config.admin_port}" if config.admin_port else "off",
        core.db.dialect.value,
        config.node_backend,
    )
    try:
        await asyncio.gather(
            *(s.serve(sockets=socks) for s, socks in zip(servers, listeners, strict=True))
        )
    finally:
        await node.close()


def _uvicorn(app: Any, host: str, port: int) -> _Server:
    drain = Drain(app)
    return _Server(
        uvicorn.Config(
            drain,
            host=host,  # for uvicorn's messages: it serves on the sockets bound here
            port=port,
            log_level="warning",
            access_log=False,
            loop="uvloop",
            http="httptools",
            timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
        ),
        drain,
    )


def run_workers(config: Config) -> None:
    """Workers alone, as a separate process (production runs several API processes apart)."""
    configure_logging(json=config.log_json)
    core = open_core(config)
    core.start_writer()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await asyncio.gather(*(w(stop) for w in background_workers(core, config)))

    try:
        asyncio.run(main())
    finally:
        core.close()
