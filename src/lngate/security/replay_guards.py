"""Replay guards behind one interface: in memory for one process, in the database for many.

A signature may be used once inside the receive window. One process can remember what it has
seen (``MemoryReplayGuard``); several API processes must share that memory, or a replay sent
to another process is accepted: ``DatabaseReplayGuard`` keeps it in the ``replay_guard`` table
(migration 0008), whose primary key refuses the second use in whichever process it arrives.

Its inserts go through a group-commit writer of their own (on PostgreSQL one statement per
batch) on a connection with ``synchronous_commit = off``: a replay check waits neither for the
ledger's batches nor for a WAL flush. What that trades: if the PostgreSQL server itself crashes,
signatures seen in its last moments (at most ~3 x ``wal_writer_delay``) may be forgotten, so a
replay of one of them inside its remaining window could pass once; a crashed process loses
nothing. Money-moving requests stay protected by their Idempotency-Key, which is durable.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from lngate.security.signing import ReplayGuard
from lngate.store import replay_guard as table
from lngate.store.db import Database, Dialect, Params, Row, Tx
from lngate.store.writer import LedgerWriter, Outcome

log = logging.getLogger(__name__)

FORGET_EVERY_S = 1.0


class SharedReplayGuard(Protocol):
    async def first_use(self, signature: str, now_ms: int) -> bool:
        """True the first time ``signature`` (hex) is seen inside the window."""
        ...

    def close(self) -> None:
        """Release what the guard holds (its writer thread and connection); idempotent."""
        ...


class MemoryReplayGuard:
    """One process's memory (the embedded SQLite default, where one process serves)."""

    def __init__(self, window_ms: int) -> None:
        self._guard = ReplayGuard(window_ms)

    async def first_use(self, signature: str, now_ms: int) -> bool:
        return self._guard.first_use(signature, now_ms)

    def close(self) -> None:
        pass  # memory only


@dataclass(frozen=True, slots=True)
class _Seen:
    """A write op: remember one signature (a closure, or batched by ``_SeenBatch``)."""

    signature: bytes
    now_ms: int
    batch: _SeenBatch

    def __call__(self, tx: Tx) -> bool:
        return table.first_use(tx, self.signature, self.now_ms, self.batch.ttl_ms)

    def batch_statement(self, dialect: Dialect) -> _SeenBatch | None:
        return self.batch if dialect is Dialect.POSTGRES else None


class _SeenBatch:
    def __init__(self, ttl_ms: int) -> None:
        self.ttl_ms = ttl_ms

    def statement(self, ops: Sequence[_Seen]) -> tuple[str, Params]:
        # distinct: an upsert may not touch one row twice in a statement
        distinct = list(dict.fromkeys(op.signature for op in ops))
        return table.first_uses_statement(distinct, max(op.now_ms for op in ops), self.ttl_ms)

    def outcomes(self, ops: Sequence[_Seen], rows: list[Row]) -> list[Outcome]:
        new = {bytes(row[0]) for row in rows}
        outcomes = []
        for op in ops:
            first = op.signature in new
            new.discard(
                op.signature
            )  # the same signature twice in one batch: the second is a replay
            outcomes.append(Outcome(value=first))
        return outcomes


class DatabaseReplayGuard:
    """The guard every process shares, in the database."""

    def __init__(self, db: Database, window_ms: int) -> None:
        # Kept twice the window, like the memory guard: a timestamp may lie a window ahead.
        self._batch = _SeenBatch(ttl_ms=2 * window_ms)
        self._writer = LedgerWriter(db, name="replay-guard", synchronous_commit=False)
        self._lock = threading.Lock()
        self._started = False
        self._forget_at = 0.0

    async def first_use(self, signature: str, now_ms: int) -> bool:
        self._ensure_started()
        self._forget_now_and_then(now_ms)
        first: bool = await self._writer.run(_Seen(bytes.fromhex(signature), now_ms, self._batch))
        return first

    async def forget_expired(self, now_ms: int) -> int:
        """Delete (a bounded number of) rows that expired by ``now_ms``; returns how many."""
        self._ensure_started()
        forgotten: int = await self._writer.run(lambda tx: table.forget_expired(tx, now_ms))
        return forgotten

    def close(self) -> None:
        with self._lock:
            if self._started:
                self._writer.stop()
                self._started = False

    def _ensure_started(self) -> None:
        if self._started:
            return
        with self._lock:
            if not self._started:
                self._writer.start()
                self._started = True

    def _forget_now_and_then(self, now_ms: int) -> None:
        """Expired rows are deleted about once a second per process, off the request's path."""
        at = time.monotonic()
        if at < self._forget_at:
            return
        self._forget_at = at + FORGET_EVERY_S
        done = self._writer.submit(lambda tx: table.forget_expired(tx, now_ms))
        done.add_done_callback(_log_failure)


def _log_failure(fut: object) -> None:
    exc = fut.exception()  # type: ignore[attr-defined]
    if exc is not None:
        log.warning("cleaning up the replay guard failed: %s", exc)


def replay_guard_for(db: Database, window_ms: int) -> SharedReplayGuard:
    """The database guard on PostgreSQL, where several processes may serve; memory on SQLite,
    which is served by one process (``lngate serve --processes`` refuses SQLite)."""
    if db.dialect is Dialect.POSTGRES:
        return DatabaseReplayGuard(db, window_ms)
    return MemoryReplayGuard(window_ms)
