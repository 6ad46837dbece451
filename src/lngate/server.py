"""``lngate serve`` and ``lngate worker``: processes built from the core, a node and workers."""

from __future__ import annotations

import asyncio
import logging
import signal

import uvicorn

from lngate.api.app import Worker, create_app
from lngate.bootstrap import Core, open_core, open_node
from lngate.config import Config
from lngate.workers.invoice_watcher import InvoiceWatcher
from lngate.workers.payment_sender import PaymentWorker

log = logging.getLogger(__name__)


def background_workers(core: Core, config: Config) -> list[Worker]:
    """The workers one process runs beside the API on the embedded default."""
    watcher_node = open_node(config, spending=False)
    payment_node = open_node(config, spending=True)  # the only holder of the spending credential
    return [InvoiceWatcher(core, watcher_node).run, PaymentWorker(core, payment_node).run]


def run_server(config: Config, *, with_workers: bool = True) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    core = open_core(config)
    core.start_writer()
    try:
        node = open_node(config, spending=False)
        workers = background_workers(core, config) if with_workers else []
        app = create_app(core, node, workers=workers)
        log.info(
            "lngate serving on http://%s:%d (database %s, node %s)",
            config.host,
            config.port,
            core.db.dialect.value,
            config.node_backend,
        )
        uvicorn.run(
            app,
            host=config.host,
            port=config.port,
            log_level="warning",
            access_log=False,
            loop="uvloop",
            http="httptools",
        )
    finally:
        core.close()


def run_workers(config: Config) -> None:
    """Workers alone, as a separate process (production runs several API processes apart)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
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
