"""The unit-of-work adapters: the group-commit writer for the service processes, and direct
transactions for tools that run one operation at a time."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from lngate.store.db import Database, Tx
from lngate.store.writer import LedgerWriter

T = TypeVar("T")

READ_THREADS = 8


class _Reads:
    """Read-only transactions on a small pool of reader threads, so a slow query never blocks
    the event loop."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._pool: ThreadPoolExecutor | None = None

    async def read(self, fn: Callable[[Tx], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._readers(), self.read_sync, fn)

    async def read_one_statement(self, fn: Callable[[Tx], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(
            self._readers(), self._read_one_statement_sync, fn
        )

    def _readers(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="reader")
        return self._pool

    def read_sync(self, fn: Callable[[Tx], T]) -> T:
        with self._db.transaction(write=False) as tx:
            return fn(tx)

    def _read_one_statement_sync(self, fn: Callable[[Tx], T]) -> T:
        return fn(self._db.single_statement())

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


class GroupCommitUnitOfWork(_Reads):
    """Writes through the group-commit writer once it is started (``start``); before that, and
    for ``write_sync`` from a tool with no writer, in a transaction of their own."""

    def __init__(self, db: Database, *, on_commit: Callable[[], None] | None = None) -> None:
        super().__init__(db)
        self._on_commit = on_commit
        self.writer: LedgerWriter | None = None

    def start(self) -> None:
        if self.writer is None:
            self.writer = LedgerWriter(self._db)
            self.writer.on_commit = self._on_commit
            self.writer.start()

    async def write(self, fn: Callable[[Tx], T]) -> T:
        if self.writer is None:
            raise RuntimeError("start the writer before async writes")
        return await self.writer.run(fn)

    def write_sync(self, fn: Callable[[Tx], T]) -> T:
        if self.writer is not None:
            return self.writer.run_sync(fn)
        with self._db.transaction() as tx:
            return fn(tx)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.stop()
            self.writer = None
        super().close()


class DirectUnitOfWork(_Reads):
    """Each write in a transaction of its own, on the calling thread: for tools and tests
    that want no writer thread."""

    async def write(self, fn: Callable[[Tx], T]) -> T:
        return self.write_sync(fn)

    def write_sync(self, fn: Callable[[Tx], T]) -> T:
        with self._db.transaction() as tx:
            return fn(tx)
