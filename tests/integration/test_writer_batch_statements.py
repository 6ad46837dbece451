"""The group-commit writer's batch statements, on SQLite and PostgreSQL: an op the statement
left alone (``AS_CLOSURE``) is applied as its closure, once, and its caller gets what the
closure answers, in a batch that is one statement and in a batch mixed with plain closures."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import pytest

from lngate.store.db import Database, Dialect, Params, Row, Tx
from lngate.store.writer import AS_CLOSURE, LedgerWriter, Outcome

TABLE = "writer_batch_test"


class KeyTaken(Exception):
    pass


class Inserts:
    """Inserts every key not taken yet, in one statement; answers the keys it inserted."""

    statements = 0

    def statement(self, ops: Sequence[Insert]) -> tuple[str, Params]:
        self.statements += 1
        params = {f"k{i}": op.key for i, op in enumerate(ops)}
        values = ", ".join(f"(:k{i})" for i in range(len(ops)))
        return (
            f"INSERT INTO {TABLE} (k, via) SELECT column1, 'statement' FROM (VALUES {values}) AS v"
            " WHERE true ON CONFLICT DO NOTHING RETURNING k",
            params,
        )

    def outcomes(self, ops: Sequence[Insert], rows: list[Row]) -> list[Outcome]:
        inserted = {str(row[0]) for row in rows}
        outcomes = []
        for op in ops:
            if op.key in inserted:
                inserted.discard(op.key)  # the same key twice: only the first inserted it
                outcomes.append(Outcome(value="inserted"))
            else:
                outcomes.append(AS_CLOSURE)
        return outcomes


@dataclass(frozen=True)
class Insert:
    key: str
    batch: Inserts

    def __call__(self, tx: Tx) -> str:
        if tx.one(f"SELECT 1 FROM {TABLE} WHERE k = :k", {"k": self.key}) is not None:
            raise KeyTaken(self.key)
        tx.execute(f"INSERT INTO {TABLE} (k, via) VALUES (:k, 'closure')", {"k": self.key})
        return "inserted alone"

    def batch_statement(self, dialect: Dialect) -> Inserts:
        return self.batch


@pytest.fixture
def writer(database_url: str) -> Iterator[tuple[LedgerWriter, Database]]:
    db = Database(database_url)
    with db.transaction() as tx:
        tx.execute(f"DROP TABLE IF EXISTS {TABLE}")
        tx.execute(f"CREATE TABLE {TABLE} (k TEXT PRIMARY KEY, via TEXT NOT NULL)")
    w = LedgerWriter(db)
    w.start()
    try:
        yield w, db
    finally:
        w.stop()
        db.close()


def one_batch(w: LedgerWriter, ops: list[Any]) -> list[Future[Any]]:
    """Submit ``ops`` while the writer is held busy, so that they make one batch."""
    busy, release = threading.Event(), threading.Event()

    def hold(tx: Tx) -> None:
        busy.set()
        release.wait(10)

    held = w.submit(hold)
    busy.wait(10)
    futures = [w.submit(op) for op in ops]
    release.set()
    held.result(10)
    for fut in futures:
        fut.exception(10)
    return futures


def answers(futures: list[Future[Any]]) -> list[str]:
    return [
        type(f.exception()).__name__ if f.exception() is not None else f.result() for f in futures
    ]


def rows(db: Database) -> list[Row]:
    with db.transaction(write=False) as tx:
        return tx.all(f"SELECT k, via FROM {TABLE} ORDER BY k")


def test_ops_the_statement_left_out_are_applied_as_their_closures(
    writer: tuple[LedgerWriter, Database],
) -> None:
    w, db = writer
    inserts = Inserts()
    first = one_batch(w, [Insert("a", inserts)])
    futures = one_batch(w, [Insert("b", inserts), Insert("a", inserts), Insert("b", inserts)])
    assert answers(first) == ["inserted"]
    assert answers(futures) == ["inserted", "KeyTaken", "KeyTaken"]
    assert rows(db) == [("a", "statement"), ("b", "statement")]
    assert inserts.statements == 2 and w.single_statement_batches >= 2


def test_in_a_mixed_batch_they_run_in_the_same_transaction_as_the_closures(
    writer: tuple[LedgerWriter, Database],
) -> None:
    w, db = writer
    inserts = Inserts()
    one_batch(w, [Insert("a", inserts)])

    def plain(tx: Tx) -> str:
        tx.execute(f"INSERT INTO {TABLE} (k, via) VALUES ('c', 'plain')")
        return "plain"

    futures = one_batch(w, [Insert("a", inserts), plain, Insert("d", inserts)])
    assert answers(futures) == ["KeyTaken", "plain", "inserted"]
    assert rows(db) == [("a", "statement"), ("c", "plain"), ("d", "statement")]
