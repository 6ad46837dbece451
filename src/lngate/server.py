"""``lngate serve``: the API, served by uvicorn, with the core opened and closed around it."""

from __future__ import annotations

import logging

import uvicorn

from lngate.api.app import create_app
from lngate.bootstrap import open_core
from lngate.config import Config

log = logging.getLogger(__name__)


def run_server(config: Config) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    core = open_core(config)
    core.start_writer()
    try:
        app = create_app(core)
        log.info(
            "lngate serving on http://%s:%d (database %s)",
            config.host,
            config.port,
            core.db.dialect.value,
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
