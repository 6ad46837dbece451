"""Group commit: one writer thread applies queued write operations in batches.

Each operation runs in its own savepoint inside the batch's transaction, so a refused operation
does not undo its neighbours; the whole batch commits once (one fsync for many transfers) and
only then does each caller get its result. This is how TigerBeetle batches, and here it is what
lifts SQLite from ~2,000 to ~5,000 transfers/s (see NOTES.md). On PostgreSQL several processes
each run a writer; the database's row locks keep them correct.

On PostgreSQL every statement is a network round trip, and a savepoint costs two more, so an op
may also declare itself *batchable* (``Batchable``): it names a ``BatchStatement`` that applies
many ops of its kind in one statement (a server-side function) with the same outcome for each
as running the op alone. A batch made only of such ops is that one statement, outside any
explicit transaction: it commits in the round trip that runs it. In a mixed batch the
statement runs first in a savepoint, then the other ops as before. SQLite has no round trips
to save and keeps the closures.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import psycopg

from lngate.store.db import Database, Dialect, Params, Row, Tx

log = logging.getLogger(__name__)

T = TypeVar("T")
Op = Callable[[Tx], T]

MAX_BATCH = 256
MAX_QUEUE = 20_000
MAX_ATTEMPTS_ALONE = 5


class WriterStopped(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one op of a batch statement gave: its result, or the error it raised; or, with
    ``as_closure``, nothing at all: the statement left this op alone (an insert that met a
    conflict, say), and the writer applies it as its closure, after the statement."""

    value: Any = None
    error: BaseException | None = None
    as_closure: bool = False


AS_CLOSURE = Outcome(as_closure=True)


class BatchStatement(Protocol):
    """Applies many ops of one kind in one SQL statement, with the outcome each op would have
    had alone. One statement, so that outside a transaction it is atomic and commits at once."""

    def statement(self, ops: Sequence[Any]) -> tuple[str, Params]: ...

    def outcomes(self, ops: Sequence[Any], rows: list[Row]) -> list[Outcome]:
        """One outcome per op, in order, from the statement's rows."""
        ...


class Batchable(Protocol):
    """An op that can also be applied by a ``BatchStatement`` (on some dialects). It stays a
    closure too: that is how it runs on SQLite, alone, or when its batch statement fails."""

    def __call__(self, tx: Tx) -> Any: ...

    def batch_statement(self, dialect: Dialect) -> BatchStatement | None:
        """The statement that can apply this op on ``dialect``; None: run it as a closure."""
        ...


Queued = tuple[Op[Any], Future[Any]]
Delivery = tuple[Future[Any], Any, BaseException | None]


def _batch_statement(op: Op[Any], dialect: Dialect) -> BatchStatement | None:
    declare = getattr(op, "batch_statement", None)
    return None if declare is None else declare(dialect)


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
    def __init__(
        self,
        db: Database,
        *,
        max_batch: int = MAX_BATCH,
        name: str = "ledger-writer",
        synchronous_commit: bool = True,
    ) -> None:
        assert 1 <= max_batch <= 10_000
        self._db = db
        self._max_batch = max_batch
        self._name = name
        self._synchronous_commit = synchronous_commit
        self._queue: queue.Queue[tuple[Op[Any], Future[Any]] | None] = queue.Queue(MAX_QUEUE)
        self._thread: threading.Thread | None = None
        self._conn: Any = None
        self.batches = 0
        self.operations = 0
        self.single_statement_batches = 0  # batches that were one statement, one round trip
        # Called (on the writer thread) after every commit: wakes in-process listeners.
        self.on_commit: Callable[[], None] | None = None

    def start(self) -> None:
        assert self._thread is None
        self._conn = self._connect()
        self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
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

    def _commit(self, queued: list[Queued]) -> None:
        # A caller that gave up (its task was cancelled) before its op ran: the op is skipped.
        # A future marked running can no longer be cancelled, so setting its result is safe.
        batch = [(op, fut) for op, fut in queued if fut.set_running_or_notify_cancel()]
        if not batch:
            return
        # Every op of a batch was queued before any of them got a result (results are handed
        # out after the commit), so they are concurrent and any order among them is a valid
        # serial order: grouping the batchable ones first changes no answer anyone could see.
        groups, closures = self._partition(batch)
        if len(groups) == 1 and not closures:
            statement, items = next(iter(groups.items()))
            if self._commit_one_statement(statement, items):
                return
            groups, closures = {}, items
        self._commit_transaction(groups, closures)

    def _partition(
        self, batch: list[Queued]
    ) -> tuple[dict[BatchStatement, list[Queued]], list[Queued]]:
        groups: dict[BatchStatement, list[Queued]] = {}
        closures: list[Queued] = []
        for op, fut in batch:
            statement = _batch_statement(op, self._db.dialect)
            if statement is None:
                closures.append((op, fut))
            else:
                groups.setdefault(statement, []).append((op, fut))
        return groups, closures

    def _commit_one_statement(self, statement: BatchStatement, items: list[Queued]) -> bool:
        """The whole batch as one statement that commits itself; False if it did not run (the
        statement is atomic: then nothing of it happened)."""
        ops = [op for op, _ in items]
        try:
            sql, params = statement.statement(ops)
            rows = self._db.single_statements_on(self._conn).all(sql, params)
            results = statement.outcomes(ops, rows)
        except Exception as exc:
            log.warning(
                "batch statement of %d failed (%s); applying them one by one", len(ops), exc
            )
            if isinstance(exc, psycopg.OperationalError):
                self._reconnect()
            return False
        self.single_statement_batches += 1
        pairs = list(zip(items, results, strict=True))
        self._delivered([(fut, r.value, r.error) for (_, fut), r in pairs if not r.as_closure])
        for op, fut in [item for item, r in pairs if r.as_closure]:
            self._run_alone(op, fut)  # after the statement: a valid order among concurrent ops
        return True

    def _commit_transaction(
        self, groups: dict[BatchStatement, list[Queued]], closures: list[Queued]
    ) -> None:
        everything = [item for items in groups.values() for item in items] + closures
        outcomes: list[Delivery] = []
        retry_alone: list[Queued] = []
        try:
            with self._db.transaction_on(self._conn) as tx:
                for statement, items in groups.items():
                    closures = [
                        *self._apply_statement(tx, statement, items, outcomes, retry_alone),
                        *closures,
                    ]
                for op, fut in closures:
                    try:
                        with tx.savepoint():
                            outcomes.append((fut, op(tx), None))
                    except Exception as exc:
                        if is_transient(exc):
                            retry_alone.append((op, fut))
                        else:
                            outcomes.append((fut, None, exc))
        except Exception:  # the batch could not commit: nothing in it happened
            log.warning("batch of %d failed to commit; retrying one by one", len(everything))
            self._reconnect()
            for op, fut in everything:
                self._run_alone(op, fut)
            return
        self._delivered(outcomes)
        for op, fut in retry_alone:
            self._run_alone(op, fut)

    def _apply_statement(
        self,
        tx: Tx,
        statement: BatchStatement,
        items: list[Queued],
        outcomes: list[Delivery],
        retry_alone: list[Queued],
    ) -> list[Queued]:
        """A batch statement inside the batch's transaction; answers the ops still to apply as
        closures (all of them if the statement failed)."""
        ops = [op for op, _ in items]
        try:
            with tx.savepoint():
                sql, params = statement.statement(ops)
                results = statement.outcomes(ops, tx.all(sql, params))
        except Exception as exc:
            if is_transient(exc):
                retry_alone.extend(items)
                return []
            log.warning(
                "batch statement of %d failed (%s); applying them one by one", len(ops), exc
            )
            return items
        pairs = list(zip(items, results, strict=True))
        outcomes.extend((fut, r.value, r.error) for (_, fut), r in pairs if not r.as_closure)
        return [item for item, r in pairs if r.as_closure]

    def _delivered(self, outcomes: list[Delivery]) -> None:
        """After a commit: count it, wake listeners, hand each caller its result."""
        self.batches += 1
        self.operations += len(outcomes)
        if self.on_commit is not None:
            self.on_commit()
        for fut, result, error in outcomes:
            if error is None:
                fut.set_result(result)
            else:
                fut.set_exception(error)

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
        self._conn = self._connect()

    def _connect(self) -> Any:
        return self._db.connect(synchronous_commit=self._synchronous_commit)
