"""Group commit: one writer thread applies queued write operations in batches.

Each operation runs in its own savepoint inside the batch's transaction, so a refused operation
does not undo its neighbours; the whole batch commits once (one fsync for many transfers) and
only then does each caller get its result. This is how TigerBeetle batches, and here it is what
lifts SQLite from ~2,000 to ~5,000 transfers/s (see NOTES.md). On PostgreSQL several processes
each run a writer; the database's row locks keep them correct.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

import psycopg

from lngate.store.db import Database, Tx

log = logging.getLogger(__name__)

T = TypeVar("T")
Op = Callable[[Tx], T]

MAX_BATCH = 256
MAX_QUEUE = 20_000
MAX_ATTEMPTS_ALONE = 5


class WriterStopped(RuntimeError):
    pass


def is_transient(exc: BaseException) -> bool:
    """Errors that say 'try again' rather than 'this operation is wrong'."""
    if isinstance(exc, sqlite3.OperationalError):
        return "locked" in str(exc) or "busy" in str(exc)
    return isinstance(
        exc,
        psycopg.errors.DeadlockDetected
        | psycopg.errors.SerializationFailure
        | psycopg.errors.LockNotAvailable
        | psycopg.OperationalError,
    )


class LedgerWriter:
    def __init__(self, db: Database, *, max_batch: int = MAX_BATCH) -> None:
        assert 1 <= max_batch <= 10_000
        self._db = db
        self._max_batch = max_batch
        self._queue: queue.Queue[tuple[Op[Any], Future[Any]] | None] = queue.Queue(MAX_QUEUE)
        self._thread: threading.Thread | None = None
        self._conn: Any = None
        self.batches = 0
        self.operations = 0
        # Called (on the writer thread) after every commit: wakes in-process listeners.
        self.on_commit: Callable[[], None] | None = None

    def start(self) -> None:
        assert self._thread is None
        self._conn = self._db.connect()
        self._thread = threading.Thread(target=self._loop, name="ledger-writer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join(timeout=30)
        self._thread = None

    def submit(self, op: Op[T]) -> Future[T]:
        if self._thread is None:
            raise WriterStopped("the ledger writer is not running")
        fut: Future[T] = Future()
        self._queue.put((op, fut), timeout=30)
        return fut

    async def run(self, op: Op[T]) -> T:
        """Queue ``op`` and wait for the batch that applies it to commit."""
        return await asyncio.wrap_future(self.submit(op))

    def run_sync(self, op: Op[T]) -> T:
        return self.submit(op).result()

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            stopping = False
            while len(batch) < self._max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stopping = True
                    break
                batch.append(nxt)
            self._commit(batch)
            if stopping:
                return

    def _commit(self, queued: list[tuple[Op[Any], Future[Any]]]) -> None:
        # A caller that gave up (its task was cancelled) before its op ran: the op is skipped.
        # A future marked running can no longer be cancelled, so setting its result is safe.
        batch = [(op, fut) for op, fut in queued if fut.set_running_or_notify_cancel()]
        if not batch:
            return
        outcomes: list[tuple[Future[Any], Any, BaseException | None]] = []
        retry_alone: list[tuple[Op[Any], Future[Any]]] = []
        try:
            with self._db.transaction_on(self._conn) as tx:
                for op, fut in batch:
                    try:
                        with tx.savepoint():
                            outcomes.append((fut, op(tx), None))
                    except Exception as exc:
                        if is_transient(exc):
                            retry_alone.append((op, fut))
                        else:
                            outcomes.append((fut, None, exc))
        except Exception:  # the batch could not commit: nothing in it happened
            log.warning("batch of %d failed to commit; retrying one by one", len(batch))
            self._reconnect()
            for op, fut in batch:
                self._run_alone(op, fut)
            return
        self.batches += 1
        self.operations += len(outcomes)
        if self.on_commit is not None:
            self.on_commit()
        for fut, result, error in outcomes:
            if error is None:
                fut.set_result(result)
            else:
                fut.set_exception(error)
        for op, fut in retry_alone:
            self._run_alone(op, fut)

    def _run_alone(self, op: Op[Any], fut: Future[Any]) -> None:
        last: BaseException | None = None
        for _ in range(MAX_ATTEMPTS_ALONE):
            try:
                with self._db.transaction_on(self._conn) as tx:
                    result = op(tx)
            except Exception as exc:
                last = exc
                if not is_transient(exc):
                    break
                self._reconnect()
                continue
            fut.set_result(result)
            if self.on_commit is not None:
                self.on_commit()
            return
        assert last is not None
        fut.set_exception(last)

    def _reconnect(self) -> None:
        with contextlib.suppress(Exception):  # best effort: it may be gone
            self._conn.close()
        self._conn = self._db.connect()
