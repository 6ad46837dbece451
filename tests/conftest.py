"""Shared fixtures: a database of each kind, a core over it, and a real HTTP server."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
import uvicorn

from lngate.api.admin_app import create_admin_app
from lngate.api.app import create_app
from lngate.bootstrap import Core, accounts_for, open_core, use_cases
from lngate.config import Config
from lngate.lightning.simnet import SimnetNetwork, SimnetNode
from lngate.server import webhook_sender
from lngate.services.accounts import Credentials
from lngate.store.db import Database
from lngate.store.migrate import migrate
from lngate.workers.invoice_watcher import InvoiceWatcher
from lngate.workers.order_watcher import OrderWatcher
from lngate.workers.payment_sender import PaymentWorker
from lngate.workers.reconciler import Reconciler

POSTGRES_URL = os.environ.get("LNGATE_TEST_POSTGRES_URL", "")
REQUIRE_POSTGRES = os.environ.get("LNGATE_REQUIRE_POSTGRES") == "1"


def _fresh_postgres_database() -> tuple[str, str]:
    name = f"lngate_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    return name, POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"


def _drop_postgres_database(name: str) -> None:
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each test that takes this runs once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'lngate.sqlite3'}"
        return
    if not POSTGRES_URL:
        if REQUIRE_POSTGRES:
            pytest.fail("LNGATE_TEST_POSTGRES_URL is not set (run scripts/test.sh)")
        pytest.skip("PostgreSQL not configured: set LNGATE_TEST_POSTGRES_URL")
    name, url = _fresh_postgres_database()
    try:
        yield url
    finally:
        _drop_postgres_database(name)


@pytest.fixture
def config(tmp_path: Path, database_url: str) -> Config:
    db = Database(database_url)
    migrate(db)  # PostgreSQL is not migrated automatically; do what an operator does
    db.close()
    port = free_port()
    return Config(
        data_dir=tmp_path / "data",
        database_url=database_url,
        log_json=False,
        port=port,
        public_url=f"http://127.0.0.1:{port}",
    )


@contextmanager
def started_core(config: Config) -> Iterator[Core]:
    """A core over ``config`` with its writer running, closed afterwards."""
    c = open_core(config)
    c.start_writer()
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def core(config: Config) -> Iterator[Core]:
    with started_core(config) as c:
        yield c


def funded_user(core: Core, name: str, amount_msat: int = 0) -> Credentials:
    """A new user with ``amount_msat`` credited by an (audited) adjustment."""
    accounts = accounts_for(core)
    creds = accounts.create_user_sync(name)
    if amount_msat:
        accounts.adjust_sync(name, amount_msat, reason="test funding", actor="test")
    return creds


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _ThreadedServer:
    """One uvicorn server for ``app`` on a real loopback socket, in a background thread."""

    def __init__(self, app: object, port: int) -> None:
        cfg = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",  # type: ignore[arg-type]
            access_log=False,
            loop="asyncio",
        )
        self.server = uvicorn.Server(cfg)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


class LiveServer:
    """The real app on a real socket with the simnet exchange node, the invoice watcher and the
    payment worker (``watcher=False``: no workers), and optionally the admin listener and the
    reconciler."""

    def __init__(
        self, core: Core, *, watcher: bool = True, admin: bool = False, reconciler: bool = False
    ) -> None:
        self.core = core
        self.port = core.config.port
        self.url = f"http://127.0.0.1:{self.port}"
        self.network = SimnetNetwork(core.config.simnet_dir)
        self.node = SimnetNode(self.network)
        watcher_node = SimnetNode(self.network)
        self.watcher = InvoiceWatcher(
            use_cases(core, watcher_node).deposits, watcher_node, sweep_interval_s=0.2
        )
        payment_node = SimnetNode(self.network)
        self.payments = PaymentWorker(
            use_cases(core, payment_node).payouts,
            payment_node,
            core.withdrawal_work,
            latency=core.metrics.withdrawal_latency,
            poll_s=0.05,
            track_every_s=0.05,
        )
        self.reconciler = Reconciler(
            use_cases(core, SimnetNode(self.network)).solvency,
            interval_s=core.config.reconcile_interval_s,
        )
        self.orders = OrderWatcher(
            use_cases(core, watcher_node).orders,
            watcher_node,
            core.commits,
            discover_interval_s=0.1,
            sweep_interval_s=0.2,
        )
        self.webhooks = webhook_sender(core, use_cases(core, watcher_node).webhook_dispatch)
        workers = (
            [self.watcher.run, self.payments.run, self.orders.run, self.webhooks.run]
            if watcher
            else []
        )
        if reconciler:
            workers.append(self.reconciler.run)
        cases = use_cases(core, self.node)
        self._servers = [_ThreadedServer(create_app(core, cases, workers=workers), self.port)]
        self.admin_url = ""
        if admin:
            admin_port = free_port()
            self.admin_url = f"http://127.0.0.1:{admin_port}"
            admin_app = create_admin_app(core, cases)
            self._servers.append(_ThreadedServer(admin_app, admin_port))

    def __enter__(self) -> LiveServer:
        for server in self._servers:
            server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for server in self._servers:
            server.stop()
        self.network.close()


@pytest.fixture
def live_server(core: Core) -> Iterator[LiveServer]:
    with LiveServer(core) as server:
        yield server
