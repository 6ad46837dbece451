"""The one place that wires lngate together: config -> database, writer, keys, node."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from lngate.config import Config
from lngate.domain.ledger import SYSTEM_ACCOUNT_CODES, AccountFlags
from lngate.lightning.node import Node
from lngate.metrics import Metrics
from lngate.security.secrets import ServerKey
from lngate.store.db import Database, Dialect, Tx
from lngate.store.ledger import ensure_account
from lngate.store.migrate import migrate
from lngate.store.writer import LedgerWriter

if TYPE_CHECKING:
    from lngate.lightning.lnd.signer import SignerProbe

T = TypeVar("T")


class CommitSignal:
    """Wakes coroutines (on any event loop) when this process's writer commits, so live
    streams answer at once; writes by other processes are found by their polling."""

    def __init__(self) -> None:
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self._lock = threading.Lock()

    def fire(self) -> None:
        with self._lock:
            waiters = list(self._waiters)
        for loop, event in waiters:
            with contextlib.suppress(RuntimeError):  # that loop has closed
                loop.call_soon_threadsafe(event.set)

    async def wait(self, timeout_s: float) -> None:
        entry = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._waiters.add(entry)
        try:
            await asyncio.wait_for(entry[1].wait(), timeout_s)
        except TimeoutError:
            pass
        finally:
            with self._lock:
                self._waiters.discard(entry)


READ_THREADS = 8


@dataclass
class Core:
    """What every service needs: config, database, the group-commit writer, the server key."""

    config: Config
    db: Database
    server_key: ServerKey
    writer: LedgerWriter | None = None
    system_accounts: dict[str, int] = field(default_factory=dict)
    commits: CommitSignal = field(default_factory=CommitSignal)
    # Wakes the payment worker in this process when there is withdrawal work (others poll).
    withdrawal_work: CommitSignal = field(default_factory=CommitSignal)
    metrics: Metrics = field(default_factory=Metrics)
    _reads: ThreadPoolExecutor | None = None

    async def write(self, op: Callable[[Tx], T]) -> T:
        """Apply a write operation through the group-commit writer."""
        assert self.writer is not None, "start the writer before async writes"
        return await self.writer.run(op)

    def write_sync(self, op: Callable[[Tx], T]) -> T:
        """For CLI commands: through the writer when one runs, else in a transaction of our own."""
        if self.writer is not None:
            return self.writer.run_sync(op)
        with self.db.transaction() as tx:
            return op(tx)

    async def read(self, fn: Callable[[Tx], T]) -> T:
        """Run a read-only function on a reader thread, in one consistent snapshot."""
        if self._reads is None:
            self._reads = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="reader")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._reads, self.read_sync, fn)

    def read_sync(self, fn: Callable[[Tx], T]) -> T:
        with self.db.transaction(write=False) as tx:
            return fn(tx)

    def start_writer(self) -> None:
        if self.writer is None:
            self.writer = LedgerWriter(self.db)
            self.writer.on_commit = self.commits.fire
            self.writer.start()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.stop()
            self.writer = None
        if self._reads is not None:
            self._reads.shutdown(wait=True)
            self._reads = None
        self.db.close()


def open_node(config: Config, *, spending: bool) -> Node:
    """The configured Lightning node. ``spending`` asks for the credential that can pay: only
    the payment worker should; the API process gets the invoice-only one."""
    if config.node_backend == "simnet":
        from lngate.lightning.simnet import SimnetNode

        return SimnetNode.open(config.simnet_dir)
    if config.node_backend == "lnd":
        from lngate.lightning.lnd import LndNode

        if config.lnd is None:
            raise ValueError("node backend 'lnd' needs an [lnd] section in the config file")
        macaroon = config.lnd.spending_macaroon if spending else config.lnd.invoice_macaroon
        if macaroon is None:
            raise ValueError("[lnd] spending_macaroon is required for the payment worker")
        return LndNode.from_files(
            config.lnd.rest_url, config.lnd.tls_cert, macaroon, signer=open_signer_probe(config)
        )
    raise ValueError(f"unknown node backend {config.node_backend!r} (simnet or lnd)")


def open_signer_probe(config: Config) -> SignerProbe | None:
    """The check of a watch-only LND's remote signer, when the config names one
    (``[lnd] signer_rpc_host``, ``signer_tls_cert``); None otherwise."""
    if config.node_backend != "lnd" or config.lnd is None:
        return None
    from lngate.lightning.lnd.signer import signer_probe

    return signer_probe(config.lnd.signer_rpc_host, config.lnd.signer_tls_cert)


def open_core(config: Config, *, auto_migrate: bool | None = None) -> Core:
    """Open the database (migrating the embedded default automatically) and load the keys.

    PostgreSQL is migrated by ``lngate migrate`` (an operator step) unless asked otherwise.
    """
    config.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(config.effective_database_url)
    if auto_migrate is None:
        auto_migrate = db.dialect is Dialect.SQLITE
    if auto_migrate:
        migrate(db)
    core = Core(config=config, db=db, server_key=ServerKey.load_or_create(config.server_key_path))
    with db.transaction() as tx:
        for kind, code in SYSTEM_ACCOUNT_CODES.items():
            core.system_accounts[kind.value] = ensure_account(tx, code, kind, AccountFlags.NONE)
    return core
